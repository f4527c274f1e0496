import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { OtelConsoleLogger, OtelServerGrpc } from 'otel-nest';
import { config } from '../shared/config.js';
import { OrdersGrpc } from '../shared/contracts.js';
import { OrdersModule } from './orders.module.js';

// Started with `node --import ../instrumentation.js`, so PostgreSQL queries are traced.
const url = `${config.host}:${config.orders.port}`;
const app = await NestFactory.createMicroservice(OrdersModule, {
  logger: new OtelConsoleLogger(),
  strategy: new OtelServerGrpc({ package: OrdersGrpc.package, protoPath: OrdersGrpc.protoPath, url }),
});
app.enableShutdownHooks();
await app.listen();
Logger.log(`ready: gRPC ${url} (${OrdersGrpc.package}.${OrdersGrpc.service})`, 'Orders');
