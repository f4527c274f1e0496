import { Logger } from '@nestjs/common';
import { startShopApp } from './shop.app.js';

// `node .build/sample/main.js`: serves until Ctrl-C and prints each trace as it completes.
// `npm run sample` instead drives the app from scripts/sample.mjs and checks its traces.
const { app, url } = await startShopApp({
  port: Number(process.env.PORT ?? 3000),
  host: process.env.HOST ?? '127.0.0.1',
  printEachTrace: true,
});
// SIGINT/SIGTERM close the app, which flushes the last spans before the process exits.
app.enableShutdownHooks();
Logger.log(`Shop listening on ${url}; try: curl -H 'baggage: tenant.id=acme' ${url}/orders/order-1`, 'Sample');
