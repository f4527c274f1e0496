import { Module } from '@nestjs/common';
import { OtelModule } from 'otel-nest';
import { BAGGAGE_TO_ATTRIBUTES } from '../shared/contracts.js';
import { PaymentController } from './payment.controller.js';
import { PaymentService } from './payment.service.js';

@Module({
  imports: [OtelModule.forRoot({ serviceName: 'payment', baggageToAttributes: BAGGAGE_TO_ATTRIBUTES })],
  controllers: [PaymentController],
  providers: [PaymentService],
})
export class PaymentModule {}
