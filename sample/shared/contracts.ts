/** What the services send each other: client tokens, the gRPC API, message patterns, topics and payloads. */
import { fileURLToPath } from 'node:url';

export const ORDERS_CLIENT = 'ORDERS';
export const INVENTORY_CLIENT = 'INVENTORY';
export const PAYMENT_CLIENT = 'PAYMENT';
export const ORDER_EVENTS_CLIENT = 'ORDER_EVENTS';

/**
 * The orders service's gRPC API, called by the gateway. The proto is read at startup from beside the
 * compiled sample (`npm run sample` and the Dockerfile copy `sample/proto/` there).
 */
export const OrdersGrpc = {
  package: 'orders.v1',
  service: 'OrderService',
  protoPath: fileURLToPath(new URL('../proto/orders.proto', import.meta.url)),
  /** `rpc.method` and span name of the call that places an order. */
  placeOrder: 'orders.v1.OrderService/PlaceOrder',
  /** Trailer of a failed PlaceOrder call with the id of the order the saga rejected. */
  orderIdTrailer: 'order-id',
} as const;

/** Request-reply patterns: inventory over RabbitMQ, payment over NATS (subjects). */
export const Patterns = {
  reserve: 'inventory.reserve',
  release: 'inventory.release',
  charge: 'payment.charge',
  refund: 'payment.refund',
} as const;

/** Kafka topics the orders service publishes and the notification service consumes. */
export const Topics = {
  orderCreated: 'order.created',
  orderFailed: 'order.failed',
} as const;

/** Baggage keys every service copies onto its spans: who asked, and which saga run this is. */
export const BAGGAGE_TO_ATTRIBUTES = ['tenant.id', 'user.id', 'saga.id', 'saga.name'];

/** The payment service declines this test card, every time (the compensation path on demand). */
export const DECLINED_CARD = '4000000000000002';

export interface PlaceOrder {
  orderId: string;
  tenantId: string;
  userId: string;
  sku: string;
  quantity: number;
  cardNumber: string;
}

export interface Reservation {
  orderId: string;
  sku: string;
  quantity: number;
  amountCents: number;
}

export interface ChargeRequest {
  orderId: string;
  amountCents: number;
  cardNumber: string;
}

export interface Charge {
  paymentId: string;
  orderId: string;
  amountCents: number;
}

/** What the gateway sends to PlaceOrder: the validated order and the caller. */
export type PlaceOrderRequest = Omit<PlaceOrder, 'orderId'>;

export type OrderStatus = 'pending' | 'confirmed' | 'rejected';

export interface Order {
  id: string;
  tenantId: string;
  userId: string;
  sku: string;
  quantity: number;
  status: OrderStatus;
  amountCents: number | null;
  paymentId: string | null;
  /** Why a rejected order failed: the failed saga step and its error. */
  reason: string | null;
}

/** The value of `order.created` and `order.failed` records (keyed by order id). */
export interface OrderEvent {
  orderId: string;
  userId: string;
  status: OrderStatus;
  reason: string | null;
}
