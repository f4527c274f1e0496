import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { OtelConsoleLogger, OtelServerRMQ } from 'otel-nest';
import { config } from '../shared/config.js';
import { InventoryModule } from './inventory.module.js';

// Started with `node --import ../instrumentation.js`, so PostgreSQL and Redis calls are traced.
const app = await NestFactory.createMicroservice(InventoryModule, {
  logger: new OtelConsoleLogger(),
  strategy: new OtelServerRMQ(config.rabbitmq),
});
app.enableShutdownHooks();
await app.listen();
Logger.log(`ready: RabbitMQ queue "${config.rabbitmq.queue}"`, 'Inventory');
