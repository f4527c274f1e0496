import 'reflect-metadata';
import {
  Body,
  ConflictException,
  Controller,
  HttpCode,
  Inject,
  Injectable,
  Module,
  Post,
  type INestApplication,
  type INestMicroservice,
} from '@nestjs/common';
import { ClientsModule, type ClientProxy } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import type { Observable } from 'rxjs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SagaStep } from '../lib/saga/index.js';
import {
  defineSaga,
  OtelSagaModule,
  remoteStep,
  SagaFailedError,
  SagaOrchestrator,
  type SagaCompensationContext,
  type SagaStepContext,
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
  type Payment,
  type Reservation,
} from './support/saga-services.js';

const INVENTORY = 'INVENTORY';
const PAYMENT = 'PAYMENT';

type Results = { reserve: Reservation; charge: Payment };

/**
 * The order saga of the orders service: reserve stock (inventory, over RabbitMQ), charge the card
 * (payment, over NATS), confirm (local). A charge whose reply failed may still have authorized the
 * card, so it is compensated too when it fails (compensateOnFailure).
 */
@Injectable()
class OrderSteps {
  constructor(
    @Inject(INVENTORY) private readonly inventory: ClientProxy,
    @Inject(PAYMENT) private readonly payment: ClientProxy,
  ) {}

  @SagaStep({ saga: 'order', order: 1, compensate: 'release', timeoutMs: 10_000 })
  reserve(input: OrderInput): Observable<Reservation> {
    return this.inventory.send(PATTERNS.reserve, input);
  }

  release(input: OrderInput, ctx: SagaCompensationContext<OrderInput, Reservation>): Observable<unknown> {
    return this.inventory.send(PATTERNS.release, { input, result: ctx.result });
  }

  @SagaStep({ saga: 'order', order: 2, compensate: 'refund', compensateOnFailure: true, timeoutMs: 10_000 })
  charge(input: OrderInput, ctx: SagaStepContext<OrderInput, Results>): Observable<Payment> {
    return this.payment.send(PATTERNS.charge, { ...input, reservationId: ctx.results.reserve.reservationId });
  }

  refund(input: OrderInput, ctx: SagaCompensationContext<OrderInput, Payment>): Observable<unknown> {
    return this.payment.send(PATTERNS.refund, { input, result: ctx.result });
  }

  @SagaStep({ saga: 'order', order: 3 })
  confirm(input: OrderInput, ctx: SagaStepContext<OrderInput, Results>): { orderId: string; paymentId: string } {
    return { orderId: input.orderId, paymentId: ctx.results.charge.paymentId };
  }
}

@Controller('orders')
class OrdersController {
  constructor(private readonly sagas: SagaOrchestrator) {}

  @Post()
  @HttpCode(201)
  async place(@Body() order: OrderInput): Promise<unknown> {
    try {
      const result = await this.sagas.run<OrderInput, Results & { confirm: unknown }>('order', order, {
        sagaId: `saga-${order.orderId}`,
      });
      return { sagaId: result.sagaId, outcome: result.outcome, confirmation: result.context.results.confirm };
    } catch (error) {
      if (error instanceof SagaFailedError) {
        throw new ConflictException({
          sagaId: error.sagaId,
          outcome: error.outcome,
          failedStep: error.failedStep,
          compensations: error.compensations.map(({ step, outcome }) => ({ step, outcome })),
        });
      }
      throw error;
    }
  }
}

const post = (url: string, body: unknown) =>
  plainRequest(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

/** The remote spans of one message: its PRODUCER (in the orders service) and CONSUMER (remote). */
function hop(spans: readonly ReadableSpan[], system: 'rabbitmq' | 'nats', pattern: string) {
  const attributes = { 'messaging.system': system, 'nestjs.pattern': pattern };
  return {
    send: getSpan(spans, { kind: SpanKind.PRODUCER, attributes }),
    process: getSpan(spans, { kind: SpanKind.CONSUMER, attributes }),
  };
}

describe('an order saga across services: inventory over RabbitMQ, payment over NATS', () => {
  let inventory: INestMicroservice;
  let payment: INestMicroservice;
  let orders: INestApplication;
  let ordersUrl: string;

  beforeAll(async () => {
    inventory = await startInventoryService();
    payment = await startPaymentService();

    @Module({
      imports: [
        OtelTestingModule.forRoot({ baggageToAttributes: BAGGAGE_TO_ATTRIBUTES }),
        OtelSagaModule.forRoot(),
        ClientsModule.register([
          otelRmqClient(INVENTORY, RMQ_OPTIONS),
          { name: PAYMENT, customClass: OtelClientNats, options: NATS_OPTIONS },
        ]),
      ],
      controllers: [OrdersController],
      providers: [OrderSteps],
    })
    class OrdersModule {}
    orders = (await Test.createTestingModule({ imports: [OrdersModule] }).compile()).createNestApplication({ logger: false });
    await orders.listen(0, '127.0.0.1');
    ordersUrl = `${(await orders.getUrl()).replace('[::1]', '127.0.0.1')}/orders`;
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

  it('completes: one trace from the HTTP request through every step into both services, saga.id on the remote spans', async () => {
    const response = await post(ordersUrl, { orderId: 'o-1', amount: 40, sku: 'sku-1' });
    expect(response.status).toBe(201);
    expect(response.json()).toEqual({
      sagaId: 'saga-o-1',
      outcome: 'completed',
      confirmation: { orderId: 'o-1', paymentId: 'pay-o-1' },
    });

    const spans = await spanRecorder.waitForSpans(
      (all) => findSpans(all, { kind: SpanKind.CONSUMER }).length >= 2 && findSpans(all, 'saga order').length === 1 && findSpans(all, { kind: SpanKind.SERVER }).length === 1,
    );
    const server = getSpan(spans, { kind: SpanKind.SERVER });
    const saga = getSpan(spans, 'saga order');
    const reserve = getSpan(spans, 'saga.step reserve');
    const charge = getSpan(spans, 'saga.step charge');
    const confirm = getSpan(spans, 'saga.step confirm');
    const inventoryHop = hop(spans, 'rabbitmq', PATTERNS.reserve);
    const paymentHop = hop(spans, 'nats', PATTERNS.charge);

    expectSpan(server, spans).toHaveName('POST /orders');
    expectSpan(saga, spans)
      .toHaveParent(server)
      .toHaveKind(SpanKind.INTERNAL)
      .toHaveStatus(SpanStatusCode.UNSET)
      .toHaveAttributes({ 'saga.name': 'order', 'saga.id': 'saga-o-1', 'saga.outcome': 'completed', 'saga.step.count': 3 });
    expect(childrenOf(spans, saga).map((span) => span.name)).toEqual(['saga.step reserve', 'saga.step charge', 'saga.step confirm']);
    [reserve, charge, confirm].forEach((step, index) =>
      expectSpan(step, spans).toHaveAttributes({ 'saga.step.index': index, 'saga.step.outcome': 'completed', 'saga.id': 'saga-o-1' }),
    );
    // Each remote call is a child of its step; the remote side joins the trace under it.
    expectSpan(inventoryHop.send, spans).toHaveParent(reserve);
    expectSpan(inventoryHop.process, spans).toHaveParent(inventoryHop.send);
    expectSpan(paymentHop.send, spans).toHaveParent(charge);
    expectSpan(paymentHop.process, spans).toHaveParent(paymentHop.send);
    // saga.id and saga.name came over the wire as baggage and were copied onto the remote spans.
    for (const remote of [inventoryHop.process, paymentHop.process]) {
      expectSpan(remote, spans).toHaveAttributes({ 'saga.id': 'saga-o-1', 'saga.name': 'order' });
    }
    expect(traceOf(spans, server).map((span) => span.name).sort()).toEqual(
      [
        'POST /orders',
        'saga order',
        'saga.step reserve',
        'saga.step charge',
        'saga.step confirm',
        inventoryHop.send.name,
        inventoryHop.process.name,
        paymentHop.send.name,
        paymentHop.process.name,
      ].sort(),
    );
    expect(findSpans(spans, /saga\.compensat/)).toEqual([]);

    const traceId = server.spanContext().traceId;
    expect(handlerCalls).toEqual([
      { service: 'inventory', op: 'reserve', orderId: 'o-1', sagaId: 'saga-o-1', sagaName: 'order', traceId },
      { service: 'payment', op: 'charge', orderId: 'o-1', sagaId: 'saga-o-1', sagaName: 'order', traceId },
    ]);
  });

  it('a declined payment compensates across services in reverse order, each compensation linked and traced remotely', async () => {
    const response = await post(ordersUrl, { orderId: 'o-2', amount: 500, sku: 'sku-2' });
    expect(response.status).toBe(409);
    expect(response.json()).toEqual({
      sagaId: 'saga-o-2',
      outcome: 'compensated',
      failedStep: 'charge',
      compensations: [
        { step: 'charge', outcome: 'compensated' },
        { step: 'reserve', outcome: 'compensated' },
      ],
    });

    const spans = await spanRecorder.waitForSpans(
      (all) => findSpans(all, { kind: SpanKind.CONSUMER }).length >= 4 && findSpans(all, 'saga order').length === 1 && findSpans(all, { kind: SpanKind.SERVER }).length === 1,
    );
    const server = getSpan(spans, { kind: SpanKind.SERVER });
    const saga = getSpan(spans, 'saga order');
    const reserve = getSpan(spans, 'saga.step reserve');
    const charge = getSpan(spans, 'saga.step charge');
    const compensate = getSpan(spans, 'saga.compensate order');
    const undoCharge = getSpan(spans, 'saga.compensation charge');
    const undoReserve = getSpan(spans, 'saga.compensation reserve');

    expectSpan(saga, spans)
      .toHaveParent(server)
      .toHaveStatus(SpanStatusCode.ERROR, /failed at step "charge" \(.*card declined for 500.*\)/)
      .toHaveAttributes({ 'saga.outcome': 'compensated', 'saga.failed_step': 'charge', 'error.type': 'SagaFailedError' });
    expect(childrenOf(spans, saga).map((span) => span.name)).toEqual([
      'saga.step reserve',
      'saga.step charge',
      'saga.compensate order',
    ]);
    expectSpan(charge, spans)
      .toHaveStatus(SpanStatusCode.ERROR, /card declined for 500/)
      .toHaveAttributes({ 'saga.step.outcome': 'failed' });
    expectSpan(compensate, spans).toHaveStatus(SpanStatusCode.UNSET).toHaveAttributes({ 'saga.compensation.count': 2 });
    // In reverse: the failed charge first (compensateOnFailure), then the reservation.
    expect(childrenOf(spans, compensate).map((span) => span.name)).toEqual(['saga.compensation charge', 'saga.compensation reserve']);
    expectSpan(undoCharge, spans)
      .toLinkTo(charge, { 'saga.link.type': 'compensated_step' })
      .toLinkTo(charge, { 'saga.link.type': 'failed_step' })
      .toHaveAttributes({ 'saga.compensation.outcome': 'compensated' });
    expectSpan(undoReserve, spans)
      .toLinkTo(reserve, { 'saga.link.type': 'compensated_step' })
      .toLinkTo(charge, { 'saga.link.type': 'failed_step' })
      .toHaveAttributes({ 'saga.compensation.outcome': 'compensated' });

    // Every hop, forward and compensating, joins the trace under its span, and carries saga.id.
    const hops = [
      [reserve, hop(spans, 'rabbitmq', PATTERNS.reserve)],
      [charge, hop(spans, 'nats', PATTERNS.charge)],
      [undoCharge, hop(spans, 'nats', PATTERNS.refund)],
      [undoReserve, hop(spans, 'rabbitmq', PATTERNS.release)],
    ] as const;
    for (const [parent, { send, process }] of hops) {
      expectSpan(send, spans).toHaveParent(parent).toBeInTraceOf(server);
      expectSpan(process, spans).toHaveParent(send).toHaveAttributes({ 'saga.id': 'saga-o-2', 'saga.name': 'order' });
    }
    const traceId = server.spanContext().traceId;
    expect(handlerCalls.map(({ service, op, sagaId, traceId: seen }) => [service, op, sagaId, seen === traceId])).toEqual([
      ['inventory', 'reserve', 'saga-o-2', true],
      ['payment', 'charge', 'saga-o-2', true],
      ['payment', 'refund', 'saga-o-2', true],
      ['inventory', 'release', 'saga-o-2', true],
    ]);
  });

  it('a defineSaga() of remoteStep()s runs over the same transports, compensations included', async () => {
    const inventoryClient = orders.get<ClientProxy>(INVENTORY);
    const paymentClient = orders.get<ClientProxy>(PAYMENT);
    const saga = defineSaga<OrderInput>('order-builder')
      .step('reserve', remoteStep<OrderInput, {}, Reservation>(inventoryClient, {
        pattern: PATTERNS.reserve,
        compensate: PATTERNS.release,
        timeoutMs: 10_000,
      }))
      .step('charge', remoteStep<OrderInput, { reserve: Reservation }, Payment>(paymentClient, {
        pattern: PATTERNS.charge,
        payload: (input, ctx) => ({ ...input, reservationId: ctx.results.reserve.reservationId }),
        timeoutMs: 10_000,
      }))
      .build();
    const error = (await orders
      .get(SagaOrchestrator)
      .run(saga, { orderId: 'o-3', amount: 1000, sku: 'sku-3' }, { sagaId: 'saga-o-3' })
      .catch((e: unknown) => e)) as SagaFailedError;
    expect(error).toBeInstanceOf(SagaFailedError);
    expect(error.compensations).toEqual([{ step: 'reserve', outcome: 'compensated', attempts: 1 }]);
    expect(error.cause).toMatchObject({ code: 'card_declined', message: 'card declined for 1000' });

    const spans = await spanRecorder.waitForSpans((all) => findSpans(all, { kind: SpanKind.CONSUMER }).length >= 3);
    const root = getSpan(spans, 'saga order-builder');
    expectSpan(root, spans).toBeRoot().toHaveAttributes({ 'saga.outcome': 'compensated', 'saga.id': 'saga-o-3' });
    const release = hop(spans, 'rabbitmq', PATTERNS.release);
    expectSpan(release.send, spans).toHaveParent(getSpan(spans, 'saga.compensation reserve'));
    expectSpan(release.process, spans).toHaveAttributes({ 'saga.id': 'saga-o-3', 'saga.name': 'order-builder' });
    expect(handlerCalls.map(({ op }) => op)).toEqual(['reserve', 'charge', 'release']);
  });
});
