import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { Controller, Get, Inject, Module, Param, type INestApplication, type INestMicroservice } from '@nestjs/common';
import { ClientsModule, EventPattern, MessagePattern, Payload, type ClientProxy } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { SpanKind } from '@opentelemetry/api';
import { firstValueFrom, lastValueFrom } from 'rxjs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { TraceService, Traced } from '../lib/index.js';
import { OtelTestingModule, expectSpan, findSpans, getSpan, spanRecorder, traceOf } from '../lib/testing/index.js';
import { OtelClientNats, OtelServerNats } from '../lib/transports/nats/index.js';
import { OtelClientRMQ, OtelServerRMQ } from '../lib/transports/rmq/index.js';
import { plainRequest } from './support/http-request.js';

const RUN = randomUUID().slice(0, 8);
const SUBJECT = `otel-nest-e2e.${RUN}.orders.place`;
const QUEUE = `otel-nest-e2e-${RUN}-notifications`;
const EVENT = 'order.placed';
const EVENT_AS_CHILD = 'order.placed.child';
const NATS = { servers: ['nats://127.0.0.1:4222'] };
const RMQ = { urls: ['amqp://guest:guest@127.0.0.1:5672'], queue: QUEUE, queueOptions: { durable: false, autoDelete: true } };
const TRACE_ID = '7bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_ID = '30f067aa0ba902b7';

/** What service B saw, for each order. */
const seenByNotifications = new Map<string, { traceId?: string; tenant?: string }>();

// Gateway (HTTP) → NATS request-reply → orders.
@Controller('orders')
class GatewayController {
  constructor(@Inject('ORDERS') private readonly orders: ClientProxy) {}

  @Get(':id/place')
  place(@Param('id') id: string): Promise<unknown> {
    return firstValueFrom(this.orders.send(SUBJECT, { id }));
  }
}

// Orders (NATS server) → RabbitMQ event → notifications.
@Controller()
class OrdersController {
  constructor(
    @Inject('NOTIFICATIONS') private readonly notifications: ClientProxy,
    private readonly traces: TraceService,
  ) {}

  @MessagePattern(SUBJECT)
  async place(@Payload() order: { id: string }): Promise<{ id: string; status: string }> {
    const event = order.id.endsWith('child') ? EVENT_AS_CHILD : EVENT;
    await lastValueFrom(this.notifications.emit(event, { id: order.id }), { defaultValue: undefined });
    return { id: order.id, status: `placed for ${this.traces.getTenantId()}` };
  }
}

// Notifications (RabbitMQ server).
@Controller()
class NotificationsController {
  constructor(private readonly traces: TraceService) {}

  @EventPattern(EVENT)
  onPlaced(@Payload() order: { id: string }): void {
    seenByNotifications.set(order.id, { traceId: this.traces.getTraceId(), tenant: this.traces.getTenantId() });
  }

  @Traced({ consume: 'parent' })
  @EventPattern(EVENT_AS_CHILD)
  onPlacedAsChild(@Payload() order: { id: string }): void {
    seenByNotifications.set(order.id, { traceId: this.traces.getTraceId(), tenant: this.traces.getTenantId() });
  }
}

describe('one trace across HTTP → NATS request-reply → RabbitMQ event', () => {
  let gateway: INestApplication;
  let orders: INestMicroservice;
  let notifications: INestMicroservice;
  let gatewayUrl: string;

  beforeAll(async () => {
    @Module({ imports: [OtelTestingModule.forRoot()], controllers: [NotificationsController] })
    class NotificationsModule {}
    notifications = (await Test.createTestingModule({ imports: [NotificationsModule] }).compile()).createNestMicroservice({
      strategy: new OtelServerRMQ(RMQ),
    });
    await notifications.listen();

    @Module({
      imports: [
        OtelTestingModule.forRoot(),
        ClientsModule.register([{ name: 'NOTIFICATIONS', customClass: OtelClientRMQ, options: RMQ }]),
      ],
      controllers: [OrdersController],
    })
    class OrdersModule {}
    orders = (await Test.createTestingModule({ imports: [OrdersModule] }).compile()).createNestMicroservice({
      strategy: new OtelServerNats(NATS),
    });
    await orders.listen();

    @Module({
      imports: [OtelTestingModule.forRoot(), ClientsModule.register([{ name: 'ORDERS', customClass: OtelClientNats, options: NATS }])],
      controllers: [GatewayController],
    })
    class GatewayModule {}
    gateway = (await Test.createTestingModule({ imports: [GatewayModule] }).compile()).createNestApplication();
    await gateway.listen(0, '127.0.0.1');
    gatewayUrl = (await gateway.getUrl()).replace('[::1]', '127.0.0.1');
  });

  afterAll(async () => {
    await gateway?.close();
    await orders?.close();
    await notifications?.close();
  });

  beforeEach(() => spanRecorder.reset());

  it('SERVER → PRODUCER → CONSUMER (child) → PRODUCER → CONSUMER (linked), baggage end to end', async () => {
    const response = await plainRequest(`${gatewayUrl}/orders/o-1/place`, {
      headers: { traceparent: `00-${TRACE_ID}-${PARENT_ID}-01`, baggage: 'tenant.id=acme' },
    });
    expect(response.status).toBe(200);
    expect(response.json()).toEqual({ id: 'o-1', status: 'placed for acme' });

    const spans = await spanRecorder.waitForSpans((s) => findSpans(s, { kind: SpanKind.CONSUMER }).length >= 2);
    const server = getSpan(spans, { kind: SpanKind.SERVER });
    const natsSend = getSpan(spans, { name: `send ${SUBJECT}`, kind: SpanKind.PRODUCER });
    const natsProcess = getSpan(spans, { name: `process ${SUBJECT}`, kind: SpanKind.CONSUMER });
    const rmqSend = getSpan(spans, { kind: SpanKind.PRODUCER, attributes: { 'messaging.system': 'rabbitmq' } });
    const rmqProcess = getSpan(spans, { kind: SpanKind.CONSUMER, attributes: { 'messaging.system': 'rabbitmq' } });

    expect(server.spanContext().traceId).toBe(TRACE_ID);
    expectSpan(server, spans).toHaveName('GET /orders/:id/place');
    expectSpan(natsSend, spans).toHaveParent(server).toHaveAttributes({ 'messaging.system': 'nats', 'messaging.operation.type': 'send' });
    expectSpan(natsProcess, spans).toHaveParent(natsSend).toHaveAttributes({ 'messaging.system': 'nats', 'messaging.operation.type': 'process' });
    expectSpan(rmqSend, spans).toHaveParent(natsProcess).toHaveAttributes({ 'nestjs.pattern': EVENT, 'messaging.operation.name': 'send' });
    // The event consumer starts its own trace, linked to the producer (messaging conventions' default).
    expectSpan(rmqProcess, spans).toBeRoot().toLinkTo(rmqSend).toHaveAttributes({ 'nestjs.pattern': EVENT, 'messaging.operation.name': 'process' });
    expect(traceOf(spans, server)).toHaveLength(4);
    // Baggage crossed both hops, even into the linked trace.
    expect(seenByNotifications.get('o-1')).toEqual({ traceId: rmqProcess.spanContext().traceId, tenant: 'acme' });
  });

  it('@Traced({ consume: "parent" }) makes the event consumer a child: one trace of five spans', async () => {
    const response = await plainRequest(`${gatewayUrl}/orders/o-2-child/place`, {
      headers: { traceparent: `00-${TRACE_ID}-${PARENT_ID}-01`, baggage: 'tenant.id=globex' },
    });
    expect(response.status).toBe(200);
    const spans = await spanRecorder.waitForSpans((s) => findSpans(s, { kind: SpanKind.CONSUMER }).length >= 2);
    const rmqSend = getSpan(spans, { kind: SpanKind.PRODUCER, attributes: { 'messaging.system': 'rabbitmq' } });
    const rmqProcess = getSpan(spans, { kind: SpanKind.CONSUMER, attributes: { 'messaging.system': 'rabbitmq' } });
    expectSpan(rmqProcess, spans).toHaveParent(rmqSend);
    const server = getSpan(spans, { kind: SpanKind.SERVER });
    // SERVER, NATS send/process, RMQ send/process, and the @Traced handler span.
    expect(traceOf(spans, server).length).toBeGreaterThanOrEqual(5);
    expect(seenByNotifications.get('o-2-child')).toEqual({ traceId: TRACE_ID, tenant: 'globex' });
  });
});
