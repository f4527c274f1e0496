import { Inject, Injectable } from '@nestjs/common';
import type { ClientProxy } from '@nestjs/microservices';
import { SagaStep, type SagaCompensationContext, type SagaStepContext } from 'otel-nest/saga';
import type { Observable } from 'rxjs';
import {
  INVENTORY_CLIENT,
  PAYMENT_CLIENT,
  Patterns,
  type Charge,
  type ChargeRequest,
  type Order,
  type PlaceOrder,
  type Reservation,
} from '../shared/contracts.js';
import { OrdersRepository } from './orders.repository.js';

export const PLACE_ORDER = 'place-order';

/** What the steps return, by step name. */
export interface PlaceOrderResults {
  create: Order;
  reserve: Reservation;
  charge: Charge;
  confirm: Order;
}

type Step = SagaStepContext<PlaceOrder, PlaceOrderResults>;

/**
 * The place-order saga: record the order → reserve the stock (inventory, RabbitMQ) → charge the
 * card (payment, NATS) → confirm. When a step fails, the steps before it are undone in reverse
 * order. Each step and each compensation is a span; the remote calls nest under them.
 */
@Injectable()
export class PlaceOrderSaga {
  constructor(
    private readonly orders: OrdersRepository,
    @Inject(INVENTORY_CLIENT) private readonly inventory: ClientProxy,
    @Inject(PAYMENT_CLIENT) private readonly payment: ClientProxy,
  ) {}

  @SagaStep({ saga: PLACE_ORDER, order: 1, compensate: 'reject' })
  create(order: PlaceOrder): Promise<Order> {
    return this.orders.insert(order);
  }

  reject(order: PlaceOrder, ctx: SagaCompensationContext<PlaceOrder, Order>): Promise<void> {
    return this.orders.reject(order.orderId, `${ctx.failedStep}: ${errorMessage(ctx.error)}`);
  }

  @SagaStep({ saga: PLACE_ORDER, order: 2, compensate: 'release', timeoutMs: 5_000 })
  reserve({ orderId, sku, quantity }: PlaceOrder): Observable<Reservation> {
    return this.inventory.send(Patterns.reserve, { orderId, sku, quantity });
  }

  release(_order: PlaceOrder, ctx: SagaCompensationContext<PlaceOrder, Reservation>): Observable<unknown> {
    return this.inventory.send(Patterns.release, ctx.result);
  }

  // A charge that timed out may still have gone through, so a failed charge is refunded too
  // (the payment service answers a refund of an unknown charge with "nothing to refund").
  @SagaStep({ saga: PLACE_ORDER, order: 3, compensate: 'refund', compensateOnFailure: true, timeoutMs: 5_000 })
  charge({ orderId, cardNumber }: PlaceOrder, ctx: Step): Observable<Charge> {
    const request: ChargeRequest = { orderId, cardNumber, amountCents: ctx.results.reserve.amountCents };
    return this.payment.send(Patterns.charge, request);
  }

  refund({ orderId }: PlaceOrder): Observable<unknown> {
    return this.payment.send(Patterns.refund, { orderId });
  }

  @SagaStep({ saga: PLACE_ORDER, order: 4 })
  confirm({ orderId }: PlaceOrder, ctx: Step): Promise<Order> {
    return this.orders.confirm(orderId, ctx.results.charge.amountCents, ctx.results.charge.paymentId);
  }
}

/** RPC errors arrive as the plain objects the remote service threw in its RpcException. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) {
    return error.message;
  }
  const message = (error as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : JSON.stringify(error);
}
