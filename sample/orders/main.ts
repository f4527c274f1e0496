import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { config } from '../shared/config.js';
import { OrdersModule } from './orders.module.js';

// Started with `node --import ../instrumentation.js`, so PostgreSQL queries are traced.
const app = await NestFactory.create(OrdersModule);
app.enableShutdownHooks();
await app.listen(config.orders.port, config.host);
Logger.log(`ready: http://${config.host}:${config.orders.port}`, 'Orders');
