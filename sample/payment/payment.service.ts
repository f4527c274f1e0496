import { Injectable, Logger } from '@nestjs/common';
import { RpcException } from '@nestjs/microservices';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { TraceService, Traced } from 'otel-nest';
import { DECLINED_CARD, type Charge, type ChargeRequest } from '../shared/contracts.js';

/** A stand-in payment provider: approves every card but the test card {@link DECLINED_CARD}. */
@Injectable()
export class PaymentService {
  private readonly charges = new Map<string, Charge>();
  private readonly logger = new Logger('PaymentService');

  constructor(private readonly trace: TraceService) {}

  @Traced('payment.authorize', { attributes: ({ orderId, amountCents }: ChargeRequest) => ({ 'order.id': orderId, 'payment.amount_cents': amountCents }) })
  async charge({ orderId, amountCents, cardNumber }: ChargeRequest): Promise<Charge> {
    await sleep(15); // the card network
    this.trace.setAttribute('payment.card.last4', cardNumber.slice(-4));
    if (cardNumber === DECLINED_CARD) {
      this.logger.warn(`card ending ${cardNumber.slice(-4)} declined for order ${orderId}`);
      throw new RpcException({ code: 'card_declined', message: 'The card was declined.' });
    }
    const charge: Charge = { paymentId: randomUUID(), orderId, amountCents };
    this.charges.set(orderId, charge);
    this.logger.log(`charged ${amountCents} cents for order ${orderId}`);
    return charge;
  }

  /** Idempotent: refunding an order that was never charged (declined, or refunded before) does nothing. */
  refund(orderId: string): { refunded: boolean } {
    return { refunded: this.charges.delete(orderId) };
  }
}
