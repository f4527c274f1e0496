import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { OtelConsoleLogger, OtelServerKafka } from 'otel-nest';
import { config } from '../shared/config.js';
import { NotificationModule } from './notification.module.js';

const app = await NestFactory.createMicroservice(NotificationModule, {
  logger: new OtelConsoleLogger(),
  strategy: new OtelServerKafka({
    client: { clientId: 'notification', brokers: config.kafka.brokers },
    consumer: { groupId: 'notification', maxWaitTimeInMs: config.kafka.maxWaitTimeInMs },
    subscribe: { fromBeginning: true },
    // Event consumers link to the producer's span, as the messaging conventions recommend. The
    // sample also makes it the parent, so the order's trace shows the notification it caused.
    otel: { eventConsume: 'parent+link' },
  }),
});
app.enableShutdownHooks();
await app.listen();
Logger.log(`ready: Kafka ${config.kafka.brokers.join(',')}`, 'Notification');
