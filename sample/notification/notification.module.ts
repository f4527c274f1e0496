import { Module } from '@nestjs/common';
import { OtelModule } from 'otel-nest';
import { BAGGAGE_TO_ATTRIBUTES } from '../shared/contracts.js';
import { NotificationController } from './notification.controller.js';
import { NotificationService } from './notification.service.js';

@Module({
  imports: [OtelModule.forRoot({ serviceName: 'notification', baggageToAttributes: BAGGAGE_TO_ATTRIBUTES })],
  controllers: [NotificationController],
  providers: [NotificationService],
})
export class NotificationModule {}
