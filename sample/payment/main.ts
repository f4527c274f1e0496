import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { OtelConsoleLogger, OtelServerNats } from 'otel-nest';
import { config } from '../shared/config.js';
import { PaymentModule } from './payment.module.js';

const app = await NestFactory.createMicroservice(PaymentModule, {
  logger: new OtelConsoleLogger(),
  // A queue group: several payment instances share the requests.
  strategy: new OtelServerNats({ ...config.nats, queue: 'payment' }),
});
app.enableShutdownHooks();
await app.listen();
Logger.log(`ready: NATS ${config.nats.servers.join(',')}`, 'Payment');
