import { Controller } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { Patterns, type Charge, type ChargeRequest } from '../shared/contracts.js';
import { PaymentService } from './payment.service.js';

@Controller()
export class PaymentController {
  constructor(private readonly payments: PaymentService) {}

  @MessagePattern(Patterns.charge)
  charge(@Payload() request: ChargeRequest): Promise<Charge> {
    return this.payments.charge(request);
  }

  @MessagePattern(Patterns.refund)
  refund(@Payload() { orderId }: { orderId: string }): { refunded: boolean } {
    return this.payments.refund(orderId);
  }
}
