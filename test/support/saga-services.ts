import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { Controller, Injectable, Module, type INestMicroservice } from '@nestjs/common';
import { MessagePattern, Payload, RpcException } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { TraceService } from '../../lib/index.js';
import { SAGA_BAGGAGE_KEYS, TWO_PHASE_COMMIT_BAGGAGE_KEYS, type RemoteTwoPhaseCommitMessage } from '../../lib/saga/index.js';
import { OtelTestingModule } from '../../lib/testing/index.js';
import { OtelServerNats } from '../../lib/transports/nats/index.js';
import { OtelServerRMQ } from '../../lib/transports/rmq/index.js';

/**
 * Two remote services for the saga and two-phase commit end-to-end tests, on the real brokers:
 * inventory over RabbitMQ, payment over NATS. Each records what its handlers saw (the saga and
 * transaction baggage, the trace id), so tests can check what crossed the wire.
 */

const RUN = randomUUID().slice(0, 8);

export const NATS_OPTIONS = { servers: ['nats://127.0.0.1:4222'] };
/** One queue per run: other runs on the same broker never see these messages. */
export const INVENTORY_QUEUE = `otel-nest-e2e-${RUN}-inventory`;
export const RMQ_OPTIONS = {
  urls: ['amqp://guest:guest@127.0.0.1:5672'],
  queue: INVENTORY_QUEUE,
  queueOptions: { durable: false, autoDelete: true },
};

/** Message patterns. RabbitMQ patterns live in the run's own queue; NATS subjects carry the run id. */
export const PATTERNS = {
  reserve: 'inventory.reserve',
  release: 'inventory.release',
  inventoryPrepare: 'inventory.prepare',
  inventoryCommit: 'inventory.commit',
  inventoryRollback: 'inventory.rollback',
  charge: `otel-nest-e2e.${RUN}.payment.charge`,
  refund: `otel-nest-e2e.${RUN}.payment.refund`,
  paymentPrepare: `otel-nest-e2e.${RUN}.payment.prepare`,
  paymentCommit: `otel-nest-e2e.${RUN}.payment.commit`,
  paymentRollback: `otel-nest-e2e.${RUN}.payment.rollback`,
} as const;

/** Every app of these tests copies both sagas' and transactions' baggage onto its spans. */
export const BAGGAGE_TO_ATTRIBUTES = [...SAGA_BAGGAGE_KEYS, ...TWO_PHASE_COMMIT_BAGGAGE_KEYS];

/** Payments above this amount are declined (saga) or voted no (two-phase commit). */
export const PAYMENT_LIMIT = 100;

export interface OrderInput {
  orderId: string;
  amount: number;
  sku: string;
}

export interface Reservation {
  reservationId: string;
  sku: string;
}

export interface Payment {
  paymentId: string;
  amount: number;
}

/** One handler call, as the remote service saw it. */
export interface HandlerCall {
  service: 'inventory' | 'payment';
  op: string;
  /** The order (saga) or the payload's order id (two-phase commit). */
  orderId?: string;
  sagaId?: string;
  sagaName?: string;
  txId?: string;
  txName?: string;
  traceId?: string;
}

/** Every handler call of both services, in order. */
export const handlerCalls: HandlerCall[] = [];

@Injectable()
class CallRecorder {
  constructor(private readonly traces: TraceService) {}

  record(service: HandlerCall['service'], op: string, orderId: string | undefined): void {
    handlerCalls.push({
      service,
      op,
      orderId,
      sagaId: this.traces.getBaggage('saga.id'),
      sagaName: this.traces.getBaggage('saga.name'),
      txId: this.traces.getBaggage('tx.id'),
      txName: this.traces.getBaggage('tx.name'),
      traceId: this.traces.getTraceId(),
    });
  }
}

@Controller()
class InventoryController {
  constructor(private readonly calls: CallRecorder) {}

  @MessagePattern(PATTERNS.reserve)
  reserve(@Payload() order: OrderInput): Reservation {
    this.calls.record('inventory', 'reserve', order.orderId);
    return { reservationId: `res-${order.orderId}`, sku: order.sku };
  }

  /** Idempotent: releasing an unknown reservation is a no-op. */
  @MessagePattern(PATTERNS.release)
  release(@Payload() data: { input: OrderInput; result?: Reservation }): { released: string | null } {
    this.calls.record('inventory', 'release', data.input.orderId);
    return { released: data.result?.reservationId ?? null };
  }

  @MessagePattern(PATTERNS.inventoryPrepare)
  prepare(@Payload() message: RemoteTwoPhaseCommitMessage<OrderInput>): { vote: 'yes' } {
    this.calls.record('inventory', 'prepare', message.payload.orderId);
    return { vote: 'yes' };
  }

  @MessagePattern(PATTERNS.inventoryCommit)
  commit(@Payload() message: RemoteTwoPhaseCommitMessage<OrderInput>): { committed: string } {
    this.calls.record('inventory', 'commit', message.payload.orderId);
    return { committed: message.txId };
  }

  @MessagePattern(PATTERNS.inventoryRollback)
  rollback(@Payload() message: RemoteTwoPhaseCommitMessage<OrderInput>): { rolledBack: string } {
    this.calls.record('inventory', 'rollback', message.payload.orderId);
    return { rolledBack: message.txId };
  }
}

@Controller()
class PaymentController {
  constructor(private readonly calls: CallRecorder) {}

  @MessagePattern(PATTERNS.charge)
  charge(@Payload() order: OrderInput & { reservationId: string }): Payment {
    this.calls.record('payment', 'charge', order.orderId);
    if (order.amount > PAYMENT_LIMIT) {
      throw new RpcException({ code: 'card_declined', message: `card declined for ${order.amount}` });
    }
    return { paymentId: `pay-${order.orderId}`, amount: order.amount };
  }

  /** Idempotent: voids an authorization that may or may not exist (the charge failed or not). */
  @MessagePattern(PATTERNS.refund)
  refund(@Payload() data: { input: OrderInput; result?: Payment }): { refunded: string | null } {
    this.calls.record('payment', 'refund', data.input.orderId);
    return { refunded: data.result?.paymentId ?? null };
  }

  @MessagePattern(PATTERNS.paymentPrepare)
  prepare(@Payload() message: RemoteTwoPhaseCommitMessage<OrderInput>): { vote: 'yes' | 'no'; reason?: string } {
    this.calls.record('payment', 'prepare', message.payload.orderId);
    return message.payload.amount > PAYMENT_LIMIT ? { vote: 'no', reason: 'insufficient funds' } : { vote: 'yes' };
  }

  @MessagePattern(PATTERNS.paymentCommit)
  commit(@Payload() message: RemoteTwoPhaseCommitMessage<OrderInput>): { committed: string } {
    this.calls.record('payment', 'commit', message.payload.orderId);
    return { committed: message.txId };
  }

  @MessagePattern(PATTERNS.paymentRollback)
  rollback(@Payload() message: RemoteTwoPhaseCommitMessage<OrderInput>): { rolledBack: string } {
    this.calls.record('payment', 'rollback', message.payload.orderId);
    return { rolledBack: message.txId };
  }
}

/** The inventory service: a Nest microservice on RabbitMQ (OtelServerRMQ). */
export async function startInventoryService(): Promise<INestMicroservice> {
  @Module({
    imports: [OtelTestingModule.forRoot({ baggageToAttributes: BAGGAGE_TO_ATTRIBUTES })],
    controllers: [InventoryController],
    providers: [CallRecorder],
  })
  class InventoryModule {}
  const app = (await Test.createTestingModule({ imports: [InventoryModule] }).compile()).createNestMicroservice({
    strategy: new OtelServerRMQ(RMQ_OPTIONS),
  });
  await app.listen();
  return app;
}

/** The payment service: a Nest microservice on NATS (OtelServerNats). */
export async function startPaymentService(): Promise<INestMicroservice> {
  @Module({
    imports: [OtelTestingModule.forRoot({ baggageToAttributes: BAGGAGE_TO_ATTRIBUTES })],
    controllers: [PaymentController],
    providers: [CallRecorder],
  })
  class PaymentModule {}
  const server = new OtelServerNats(NATS_OPTIONS);
  const app = (await Test.createTestingModule({ imports: [PaymentModule] }).compile()).createNestMicroservice({
    strategy: server,
  });
  await app.listen();
  // The server's SUBs must reach the broker before other connections publish.
  await server.unwrap<{ flush(): Promise<void> }>().flush();
  return app;
}
