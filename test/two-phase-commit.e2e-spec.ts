import 'reflect-metadata';
import {
  Body,
  ConflictException,
  Controller,
  HttpCode,
  Inject,
  Module,
  Post,
  type INestApplication,
  type INestMicroservice,
} from '@nestjs/common';
import { ClientsModule, type ClientProxy } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  OtelSagaModule,
  remoteParticipant,
  TwoPhaseCommitAbortedError,
  TwoPhaseCommitCoordinator,
  type TwoPhaseCommitParticipant,
} from '../lib/saga/index.js';
import { OtelTestingModule, childrenOf, expectSpan, findSpans, getSpan, spanRecorder, traceOf } from '../lib/testing/index.js';
import { OtelClientNats } from '../lib/transports/nats/index.js';
import { otelRmqClient } from '../lib/transports/rmq/index.js';
import { plainRequest } from './support/http-request.js';
import {
  BAGGAGE_TO_ATTRIBUTES,
  handlerCalls,
  NATS_OPTIONS,
  PATTERNS,
  RMQ_OPTIONS,
  startInventoryService,
  startPaymentService,
  type OrderInput,
} from './support/saga-services.js';

const INVENTORY = 'INVENTORY';
const PAYMENT = 'PAYMENT';

@Controller('orders')
class AtomicOrdersController {
  private readonly participants: TwoPhaseCommitParticipant<OrderInput>[];

  constructor(
    private readonly coordinator: TwoPhaseCommitCoordinator,
    @Inject(INVENTORY) inventory: ClientProxy,
    @Inject(PAYMENT) payment: ClientProxy,
  ) {
    this.participants = [
      remoteParticipant<OrderInput>(inventory, {
        name: 'inventory',
        prepare: PATTERNS.inventoryPrepare,
        commit: PATTERNS.inventoryCommit,
        rollback: PATTERNS.inventoryRollback,
      }),
      remoteParticipant<OrderInput>(payment, {
        name: 'payment',
        prepare: PATTERNS.paymentPrepare,
        commit: PATTERNS.paymentCommit,
        rollback: PATTERNS.paymentRollback,
      }),
    ];
  }

  @Post('atomic')
  @HttpCode(201)
  async place(@Body() order: OrderInput): Promise<unknown> {
    try {
      const result = await this.coordinator.run('place-order', {
        txId: `tx-${order.orderId}`,
        payload: order,
        participants: this.participants,
        prepareTimeoutMs: 10_000,
      });
      return { txId: result.txId, outcome: result.outcome, votes: result.votes };
    } catch (error) {
      if (error instanceof TwoPhaseCommitAbortedError) {
        throw new ConflictException({ txId: error.txId, outcome: error.outcome, votes: error.votes, message: error.message });
      }
      throw error;
    }
  }
}

const post = (url: string, body: unknown) =>
  plainRequest(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

function hop(spans: readonly ReadableSpan[], system: 'rabbitmq' | 'nats', pattern: string) {
  const attributes = { 'messaging.system': system, 'nestjs.pattern': pattern };
  return {
    send: getSpan(spans, { kind: SpanKind.PRODUCER, attributes }),
    process: getSpan(spans, { kind: SpanKind.CONSUMER, attributes }),
  };
}

const byName = (spans: ReadableSpan[]) => spans.map((span) => span.name).sort();

describe('a two-phase commit across services: inventory over RabbitMQ, payment over NATS', () => {
  let inventory: INestMicroservice;
  let payment: INestMicroservice;
  let orders: INestApplication;
  let url: string;

  beforeAll(async () => {
    inventory = await startInventoryService();
    payment = await startPaymentService();

    @Module({
      imports: [
        OtelTestingModule.forRoot({ baggageToAttributes: BAGGAGE_TO_ATTRIBUTES }),
        OtelSagaModule,
        ClientsModule.register([
          otelRmqClient(INVENTORY, RMQ_OPTIONS),
          { name: PAYMENT, customClass: OtelClientNats, options: NATS_OPTIONS },
        ]),
      ],
      controllers: [AtomicOrdersController],
    })
    class OrdersModule {}
    orders = (await Test.createTestingModule({ imports: [OrdersModule] }).compile()).createNestApplication({ logger: false });
    await orders.listen(0, '127.0.0.1');
    url = `${(await orders.getUrl()).replace('[::1]', '127.0.0.1')}/orders/atomic`;
  });

  afterAll(async () => {
    await orders?.close();
    await payment?.close();
    await inventory?.close();
  });

  beforeEach(() => {
    spanRecorder.reset();
    handlerCalls.length = 0;
  });

  it('all vote yes: both services prepare in parallel, then commit; one trace with tx.id on the remote spans', async () => {
    const response = await post(url, { orderId: 'o-1', amount: 30, sku: 'sku-1' });
    expect(response.status).toBe(201);
    expect(response.json()).toEqual({
      txId: 'tx-o-1',
      outcome: 'committed',
      votes: [
        { participant: 'inventory', vote: 'yes' },
        { participant: 'payment', vote: 'yes' },
      ],
    });

    const spans = await spanRecorder.waitForSpans(
      (all) => findSpans(all, { kind: SpanKind.CONSUMER }).length >= 4 && findSpans(all, '2pc place-order').length === 1 && findSpans(all, { kind: SpanKind.SERVER }).length === 1,
    );
    const server = getSpan(spans, { kind: SpanKind.SERVER });
    const root = getSpan(spans, '2pc place-order');
    const prepare = getSpan(spans, '2pc.prepare');
    const commit = getSpan(spans, '2pc.commit');
    expectSpan(root, spans)
      .toHaveParent(server)
      .toHaveStatus(SpanStatusCode.UNSET)
      .toHaveAttributes({ 'tx.id': 'tx-o-1', 'tx.name': 'place-order', 'tx.outcome': 'committed', 'tx.participant.count': 2 })
      .toHaveEvent('2pc.decision', { 'tx.decision': 'commit', 'tx.votes.yes': 2, 'tx.votes.no': 0 });
    expect(childrenOf(spans, root).map((span) => span.name)).toEqual(['2pc.prepare', '2pc.commit']);
    expect(byName(childrenOf(spans, prepare))).toEqual(['2pc.prepare inventory', '2pc.prepare payment']);
    expect(byName(childrenOf(spans, commit))).toEqual(['2pc.commit inventory', '2pc.commit payment']);

    const hops = [
      ['2pc.prepare inventory', hop(spans, 'rabbitmq', PATTERNS.inventoryPrepare)],
      ['2pc.prepare payment', hop(spans, 'nats', PATTERNS.paymentPrepare)],
      ['2pc.commit inventory', hop(spans, 'rabbitmq', PATTERNS.inventoryCommit)],
      ['2pc.commit payment', hop(spans, 'nats', PATTERNS.paymentCommit)],
    ] as const;
    for (const [parent, { send, process }] of hops) {
      expectSpan(getSpan(spans, parent), spans).toHaveAttributes({ 'tx.id': 'tx-o-1' });
      expectSpan(send, spans).toHaveParent(getSpan(spans, parent));
      expectSpan(process, spans).toHaveParent(send).toHaveAttributes({ 'tx.id': 'tx-o-1', 'tx.name': 'place-order' });
    }
    // Both prepares were in flight at once: each started before the other ended.
    const [a, b] = [getSpan(spans, '2pc.prepare inventory'), getSpan(spans, '2pc.prepare payment')];
    const ms = (t: [number, number]) => t[0] * 1e3 + t[1] / 1e6;
    expect(ms(a.startTime)).toBeLessThanOrEqual(ms(b.endTime));
    expect(ms(b.startTime)).toBeLessThanOrEqual(ms(a.endTime));
    expect(traceOf(spans, server)).toHaveLength(1 + 1 + 1 + 2 + 1 + 2 + 8);

    expect(handlerCalls.map(({ service, op, txId, txName }) => `${service} ${op} ${txId} ${txName}`).sort()).toEqual([
      'inventory commit tx-o-1 place-order',
      'inventory prepare tx-o-1 place-order',
      'payment commit tx-o-1 place-order',
      'payment prepare tx-o-1 place-order',
    ]);
  });

  it('payment votes no: both services are rolled back, nothing commits, and the whole abort is traced', async () => {
    const response = await post(url, { orderId: 'o-2', amount: 900, sku: 'sku-2' });
    expect(response.status).toBe(409);
    expect(response.json()).toEqual({
      txId: 'tx-o-2',
      outcome: 'rolled_back',
      votes: [
        { participant: 'inventory', vote: 'yes' },
        { participant: 'payment', vote: 'no', reason: 'insufficient funds' },
      ],
      message: 'Two-phase commit "place-order" was aborted ("payment" voted no: insufficient funds); every participant was rolled back.',
    });

    const spans = await spanRecorder.waitForSpans(
      (all) => findSpans(all, { kind: SpanKind.CONSUMER }).length >= 4 && findSpans(all, '2pc place-order').length === 1 && findSpans(all, { kind: SpanKind.SERVER }).length === 1,
    );
    const server = getSpan(spans, { kind: SpanKind.SERVER });
    const root = getSpan(spans, '2pc place-order');
    const rollback = getSpan(spans, '2pc.rollback');
    expectSpan(root, spans)
      .toHaveParent(server)
      .toHaveStatus(SpanStatusCode.ERROR, /was aborted \("payment" voted no: insufficient funds\)/)
      .toHaveAttributes({ 'tx.outcome': 'rolled_back', 'tx.decision': 'rollback', 'error.type': 'TwoPhaseCommitAbortedError' })
      .toHaveEvent('2pc.decision', { 'tx.decision': 'rollback', 'tx.votes.yes': 1, 'tx.votes.no': 1 });
    expect(childrenOf(spans, root).map((span) => span.name)).toEqual(['2pc.prepare', '2pc.rollback']);
    expect(findSpans(spans, /^2pc\.commit/)).toEqual([]);
    expectSpan(getSpan(spans, '2pc.prepare payment'), spans)
      .toHaveStatus(SpanStatusCode.UNSET)
      .toHaveAttributes({ 'tx.vote': 'no', 'tx.vote.reason': 'insufficient funds' });
    expectSpan(getSpan(spans, '2pc.prepare inventory'), spans).toHaveAttributes({ 'tx.vote': 'yes' });
    expect(byName(childrenOf(spans, rollback))).toEqual(['2pc.rollback inventory', '2pc.rollback payment']);
    for (const [parent, { send, process }] of [
      ['2pc.rollback inventory', hop(spans, 'rabbitmq', PATTERNS.inventoryRollback)],
      ['2pc.rollback payment', hop(spans, 'nats', PATTERNS.paymentRollback)],
    ] as const) {
      expectSpan(getSpan(spans, parent), spans).toHaveAttributes({ 'tx.participant.outcome': 'rolled_back' });
      expectSpan(send, spans).toHaveParent(getSpan(spans, parent));
      expectSpan(process, spans).toHaveParent(send).toHaveAttributes({ 'tx.id': 'tx-o-2', 'tx.name': 'place-order' });
    }
    const traceId = server.spanContext().traceId;
    expect(handlerCalls.every((call) => call.traceId === traceId && call.txId === 'tx-o-2')).toBe(true);
    expect(handlerCalls.map(({ service, op }) => `${service} ${op}`).sort()).toEqual([
      'inventory prepare',
      'inventory rollback',
      'payment prepare',
      'payment rollback',
    ]);
  });
});
