import 'reflect-metadata';
import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Controller, Get, Inject, Module, Param, type INestApplication, type INestMicroservice, type Type } from '@nestjs/common';
import {
  ClientsModule,
  Ctx,
  EventPattern,
  MessagePattern,
  Payload,
  RmqContext,
  RmqRecordBuilder,
  RpcException,
  ServerRMQ,
  Transport,
  type ClientProxy,
} from '@nestjs/microservices';
import { Test, type TestingModule } from '@nestjs/testing';
import {
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  TraceFlags,
  type Context,
  type SpanContext,
} from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import type { ConsumeMessage } from 'amqplib';
import { firstValueFrom, lastValueFrom, map, take, timeout, TimeoutError, timer, toArray, type Observable } from 'rxjs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Traced, SEND_CANCELLED } from '../lib/index.js';
import { OtelTestingModule, expectSpan, findSpans, getSpan, spanRecorder } from '../lib/testing/index.js';
import { OtelClientRMQ, OtelServerRMQ, otelRmqClient } from '../lib/transports/rmq/index.js';
import { SEND_CLIENT_CLOSED } from '../lib/transports/shared/producer-tracer.js';
import { plainRequest } from './support/http-request.js';
import { NEST_MAJOR } from './support/nest-version.js';
import { PlainAmqpPeer } from './support/rmq-plain.js';

const RMQ_URL = 'amqp://guest:guest@127.0.0.1:5672';
/** Nothing listens here: a broker that is down. */
const DOWN_URL = 'amqp://guest:guest@127.0.0.1:1';
// Unique queues per run, deleted by the broker once their last consumer is gone.
const RUN = randomUUID().slice(0, 8);
const Q = {
  /** OtelServerRMQ, default policies. */
  traced: `otel-nest-e2e.${RUN}.orders`,
  /** OtelServerRMQ with `otel: { eventConsume: 'parent' }`. */
  parent: `otel-nest-e2e.${RUN}.orders-parent`,
  /** Nest's own ServerRMQ. */
  plain: `otel-nest-e2e.${RUN}.orders-plain`,
  /** A plain amqplib consumer. */
  wire: `otel-nest-e2e.${RUN}.wire`,
};
const QUEUE_OPTIONS = { durable: false, autoDelete: true };
const rmq = (queue: string, extra: Record<string, unknown> = {}) => ({
  urls: [RMQ_URL],
  queue,
  queueOptions: QUEUE_OPTIONS,
  ...extra,
});

interface HandlerView {
  data: any;
  /** The span active in the handler (empty when there is none). */
  traceId: string;
  spanId: string;
  tenant?: string;
  /** The traceparent header the message arrived with (plain server only). */
  traceparent?: unknown;
}

function view(data: unknown): HandlerView {
  const spanContext = trace.getActiveSpan()?.spanContext();
  return {
    data,
    traceId: spanContext?.traceId ?? '',
    spanId: spanContext?.spanId ?? '',
    tenant: propagation.getBaggage(context.active())?.getEntry('tenant.id')?.value,
  };
}

/** What the event handlers saw. */
const events: Array<HandlerView & { pattern: string; queue: string }> = [];
function sawEvent(pattern: string, data: unknown, ctx: unknown): void {
  events.push({ pattern, queue: (ctx as RmqContext).getMessage().fields.routingKey as string, ...view(data) });
}

const ORDER_NOT_FOUND = { name: 'OrderNotFound', message: 'order 7 does not exist' };

@Controller()
class OrdersController {
  @MessagePattern('orders.get')
  get(@Payload() data: unknown): HandlerView {
    return view(data);
  }

  @MessagePattern('orders.fail')
  fail(): never {
    throw new RpcException(ORDER_NOT_FOUND);
  }

  @MessagePattern('orders.slow')
  async slow(): Promise<string> {
    await sleep(400);
    return 'late';
  }

  /** Three replies, 20 ms apart, each naming the span it was produced in. */
  @MessagePattern('orders.stream')
  stream(): Observable<string | undefined> {
    return timer(0, 20).pipe(
      take(3),
      map(() => trace.getActiveSpan()?.spanContext().spanId),
    );
  }

  @EventPattern('orders.created')
  created(@Payload() data: unknown, @Ctx() ctx: unknown): void {
    sawEvent('orders.created', data, ctx);
  }

  @Traced({ consume: 'parent' })
  @EventPattern('orders.shipped')
  shipped(@Payload() data: unknown, @Ctx() ctx: unknown): void {
    sawEvent('orders.shipped', data, ctx);
  }

  @EventPattern('orders.refunded', { otelConsume: 'parent' })
  refunded(@Payload() data: unknown, @Ctx() ctx: unknown): void {
    sawEvent('orders.refunded', data, ctx);
  }
}

/** The same handlers on Nest's own ServerRMQ, in an app without otel-nest. */
@Controller()
class PlainOrdersController {
  @MessagePattern('orders.get')
  get(@Payload() data: unknown, @Ctx() ctx: RmqContext): HandlerView {
    return { ...view(data), traceparent: ctx.getMessage().properties.headers?.traceparent };
  }

  @MessagePattern('orders.fail')
  fail(): never {
    throw new RpcException(ORDER_NOT_FOUND);
  }
}

const ORDERS = 'ORDERS';

@Controller('orders')
class GatewayController {
  constructor(@Inject(ORDERS) private readonly orders: ClientProxy) {}

  @Get(':id')
  get(@Param('id') id: string) {
    return this.orders.send<HandlerView>('orders.get', { id });
  }

  @Get(':id/created')
  async created(@Param('id') id: string): Promise<{ published: boolean }> {
    await lastValueFrom(this.orders.emit('orders.created', { id }), { defaultValue: undefined });
    return { published: true };
  }
}

function remoteParent(): SpanContext {
  return {
    traceId: randomBytes(16).toString('hex'),
    spanId: randomBytes(8).toString('hex'),
    traceFlags: TraceFlags.SAMPLED,
    isRemote: true,
  };
}

/** The traceparent naming `spanContext`, with its sampled and (Level 2) random flags. */
function traceparentOf(spanContext: SpanContext): string {
  const flags = (spanContext.traceFlags & 0x03).toString(16).padStart(2, '0');
  return `00-${spanContext.traceId}-${spanContext.spanId}-${flags}`;
}

/** A caller's context: a remote parent span, and `tenant.id` baggage if given. */
function callerContext(parent: SpanContext, tenant?: string): Context {
  const ctx = trace.setSpanContext(ROOT_CONTEXT, parent);
  return tenant ? propagation.setBaggage(ctx, propagation.createBaggage({ 'tenant.id': { value: tenant } })) : ctx;
}

const ids = (span: ReadableSpan): SpanContext => span.spanContext();

describe('RabbitMQ: OtelServerRMQ / OtelClientRMQ on the real broker', () => {
  let traced: INestMicroservice;
  let tracedServer: OtelServerRMQ;
  let tracedParent: INestMicroservice;
  let plain: INestMicroservice;
  let gateway: INestApplication;
  let gatewayUrl: string;
  let clientsRef: TestingModule;
  let peer: PlainAmqpPeer;
  const wireMessages: ConsumeMessage[] = [];
  const client = (name: string): ClientProxy => clientsRef.get<ClientProxy>(name);

  beforeAll(async () => {
    @Module({ imports: [OtelTestingModule.forRoot({ serviceName: 'orders' })], controllers: [OrdersController] })
    class OrdersModule {}
    tracedServer = new OtelServerRMQ(rmq(Q.traced));
    traced = (await Test.createTestingModule({ imports: [OrdersModule] }).compile()).createNestMicroservice({
      strategy: tracedServer,
    });

    @Module({ imports: [OtelTestingModule.forRoot({ serviceName: 'orders-parent' })], controllers: [OrdersController] })
    class OrdersParentModule {}
    tracedParent = (await Test.createTestingModule({ imports: [OrdersParentModule] }).compile()).createNestMicroservice({
      strategy: new OtelServerRMQ({ ...rmq(Q.parent), otel: { eventConsume: 'parent' } }),
    });

    @Module({ controllers: [PlainOrdersController] })
    class PlainModule {}
    plain = (await Test.createTestingModule({ imports: [PlainModule] }).compile()).createNestMicroservice({
      strategy: new ServerRMQ(rmq(Q.plain)),
    });
    await Promise.all([traced.listen(), tracedParent.listen(), plain.listen()]);

    @Module({
      imports: [
        OtelTestingModule.forRoot({ serviceName: 'gateway' }),
        // What users write. The cast is for Nest's own typings, which reject `customClass:
        // ClientRMQ` too (otelRmqClient() below spares it).
        ClientsModule.register([
          { name: ORDERS, customClass: OtelClientRMQ as unknown as Type<ClientProxy>, options: rmq(Q.traced) },
        ]),
      ],
      controllers: [GatewayController],
    })
    class GatewayModule {}
    gateway = (await Test.createTestingModule({ imports: [GatewayModule] }).compile()).createNestApplication();
    await gateway.listen(0, '127.0.0.1');
    gatewayUrl = (await gateway.getUrl()).replace('[::1]', '127.0.0.1');

    clientsRef = await Test.createTestingModule({
      imports: [
        ClientsModule.register([
          otelRmqClient('OTEL_TRACED', rmq(Q.traced)),
          otelRmqClient('OTEL_PARENT', rmq(Q.parent)),
          otelRmqClient('OTEL_PLAIN', rmq(Q.plain)),
          otelRmqClient('OTEL_WIRE', rmq(Q.wire, { headers: { 'x-app': 'gateway' } })),
          otelRmqClient('OTEL_DOWN', { urls: [DOWN_URL], queue: Q.traced }),
          { name: 'PLAIN_TRACED', transport: Transport.RMQ, options: rmq(Q.traced) },
          { name: 'PLAIN_PLAIN', transport: Transport.RMQ, options: rmq(Q.plain) },
          { name: 'PLAIN_DOWN', transport: Transport.RMQ, options: { urls: [DOWN_URL], queue: Q.traced } },
        ]),
      ],
    }).compile();

    peer = await PlainAmqpPeer.connect(RMQ_URL);
    await peer.subscribe(Q.wire, QUEUE_OPTIONS, (message) => wireMessages.push(message));
  });

  afterAll(async () => {
    const names = ['OTEL_TRACED', 'OTEL_PARENT', 'OTEL_PLAIN', 'OTEL_WIRE', 'OTEL_DOWN', 'PLAIN_TRACED', 'PLAIN_PLAIN', 'PLAIN_DOWN'];
    await Promise.allSettled(names.map((name) => clientsRef?.get<ClientProxy>(name).close()));
    await clientsRef?.close();
    await gateway?.close();
    await Promise.allSettled([traced?.close(), tracedParent?.close(), plain?.close()]);
    await peer?.close();
  });

  beforeEach(() => spanRecorder.reset());

  it('HTTP → gateway → send() → @MessagePattern: one trace SERVER → PRODUCER → CONSUMER, baggage in the handler', async () => {
    const caller = remoteParent();
    const response = await plainRequest(`${gatewayUrl}/orders/42`, {
      headers: { traceparent: traceparentOf(caller), baggage: 'tenant.id=acme' },
    });
    expect(response.status).toBe(200);
    const body = response.json<HandlerView>();
    expect(body.data).toEqual({ id: '42' });
    expect(body.tenant).toBe('acme');

    const spans = await spanRecorder.waitForSpans((s) => findSpans(s, { traceId: caller.traceId }).length >= 3);
    const server = getSpan(spans, { kind: SpanKind.SERVER, traceId: caller.traceId });
    const producer = getSpan(spans, { kind: SpanKind.PRODUCER, traceId: caller.traceId });
    const consumer = getSpan(spans, { kind: SpanKind.CONSUMER, traceId: caller.traceId });
    expect(findSpans(spans, { traceId: caller.traceId }).map((span) => span.name)).toEqual([
      'GET /orders/:id',
      `send ${Q.traced}`,
      `process ${Q.traced}`,
    ]);

    expectSpan(server, spans).toHaveName('GET /orders/:id').toHaveParent(caller);
    const conversationId = producer.attributes['messaging.message.conversation_id'];
    expect(conversationId).toEqual(expect.stringMatching(/^.{8,}$/));
    expectSpan(producer, spans)
      .toHaveName(`send ${Q.traced}`)
      .toHaveParent(server)
      .toHaveStatus(SpanStatusCode.UNSET)
      .toNotHaveAttribute('error.type')
      .toHaveAttributes({
        'messaging.system': 'rabbitmq',
        'messaging.operation.name': 'send',
        'messaging.operation.type': 'send',
        'messaging.destination.name': Q.traced,
        'messaging.rabbitmq.destination.routing_key': Q.traced,
        'nestjs.pattern': 'orders.get',
        'nestjs.handler.type': 'message',
        'server.address': '127.0.0.1',
        'server.port': 5672,
      });
    expectSpan(consumer, spans)
      .toHaveName(`process ${Q.traced}`)
      .toHaveParent(producer)
      .toHaveStatus(SpanStatusCode.UNSET)
      .toHaveAttributes({
        'messaging.system': 'rabbitmq',
        'messaging.operation.name': 'process',
        'messaging.operation.type': 'process',
        'messaging.destination.name': Q.traced,
        'messaging.rabbitmq.destination.routing_key': Q.traced,
        'messaging.message.conversation_id': conversationId,
        // The body exactly as Nest published it: no trace data was added to the payload.
        'messaging.message.body.size': Buffer.byteLength(
          JSON.stringify({ pattern: 'orders.get', data: { id: '42' }, id: conversationId }),
        ),
        'nestjs.pattern': 'orders.get',
        'nestjs.handler.type': 'message',
        'nestjs.controller': 'OrdersController',
        'nestjs.handler': 'get',
        'server.address': '127.0.0.1',
        'server.port': 5672,
      })
      .toNotHaveAttribute('messaging.message.id');
    expect(consumer.attributes['messaging.rabbitmq.message.delivery_tag']).toEqual(expect.any(Number));
    expect(consumer.links).toEqual([]);
    // The CONSUMER span was the active span while the handler ran.
    expect(body.traceId).toBe(caller.traceId);
    expect(body.spanId).toBe(ids(consumer).spanId);
  });

  it('a plain amqplib request is continued by the handler, and the reply carries the CONSUMER span on the wire', async () => {
    const parent = remoteParent();
    const headers: Record<string, unknown> = {};
    propagation.inject(callerContext(parent, 'plain-co'), headers);
    expect(headers.traceparent).toBe(traceparentOf(parent));
    const id = `req-${RUN}-interop`;

    const reply = await peer.request(Q.traced, 'orders.get', { id: 'p1' }, { id, headers, messageId: `msg-${RUN}` });
    const packet = JSON.parse(reply.content.toString()) as { response: HandlerView; isDisposed: boolean };
    // Nest's reply envelope, nothing else in it.
    expect(Object.keys(packet).sort()).toEqual(['isDisposed', 'response']);
    expect(packet.response.data).toEqual({ id: 'p1' });
    expect(packet.response.traceId).toBe(parent.traceId);
    expect(packet.response.tenant).toBe('plain-co');

    const consumer = await spanRecorder.waitForSpan({ kind: SpanKind.CONSUMER, traceId: parent.traceId });
    expectSpan(consumer).toHaveParent(parent).toHaveAttributes({
      'messaging.message.id': `msg-${RUN}`,
      'messaging.message.conversation_id': id,
      'messaging.destination.name': Q.traced,
      'messaging.message.body.size': Buffer.byteLength(JSON.stringify({ pattern: 'orders.get', data: { id: 'p1' }, id })),
    });
    expect(packet.response.spanId).toBe(ids(consumer).spanId);
    expect(reply.properties.correlationId).toBe(id);
    expect(reply.properties.headers?.traceparent).toBe(traceparentOf(ids(consumer)));
    expect(reply.properties.headers?.baggage).toBe('tenant.id=plain-co');
  });

  it('emit() → @EventPattern: by default a new trace LINKED to the PRODUCER, with the baggage', async () => {
    const caller = remoteParent();
    const response = await plainRequest(`${gatewayUrl}/orders/7/created`, {
      headers: { traceparent: traceparentOf(caller), baggage: 'tenant.id=acme' },
    });
    expect(response.json()).toEqual({ published: true });

    const spans = await spanRecorder.waitForSpans((s) => !!getSpan(s, { kind: SpanKind.CONSUMER, attributes: { 'nestjs.pattern': 'orders.created' } }));
    const server = getSpan(spans, { kind: SpanKind.SERVER, traceId: caller.traceId });
    const producer = getSpan(spans, { kind: SpanKind.PRODUCER, traceId: caller.traceId });
    const consumer = getSpan(spans, { kind: SpanKind.CONSUMER, attributes: { 'nestjs.pattern': 'orders.created' } });
    expectSpan(producer, spans)
      .toHaveName(`send ${Q.traced}`)
      .toHaveParent(server)
      .toHaveStatus(SpanStatusCode.UNSET)
      .toHaveAttributes({ 'nestjs.handler.type': 'event', 'nestjs.pattern': 'orders.created', 'messaging.operation.type': 'send' })
      .toNotHaveAttribute('messaging.message.conversation_id');
    expectSpan(consumer, spans)
      .toHaveName(`process ${Q.traced}`)
      .toBeRoot()
      .toLinkTo(producer)
      .toHaveAttributes({ 'nestjs.handler.type': 'event', 'messaging.destination.name': Q.traced, 'nestjs.handler': 'created' })
      .toNotHaveAttribute('messaging.message.conversation_id');
    expect(ids(consumer).traceId).not.toBe(caller.traceId);

    const seen = events.find((event) => event.pattern === 'orders.created' && event.data?.id === '7');
    expect(seen).toMatchObject({ traceId: ids(consumer).traceId, spanId: ids(consumer).spanId, tenant: 'acme', queue: Q.traced });
  });

  it('events become children with @Traced({ consume: "parent" }), @EventPattern extras, or the server option', async () => {
    const parent = remoteParent();
    await context.with(callerContext(parent, 'acme'), async () => {
      await lastValueFrom(client('OTEL_TRACED').emit('orders.shipped', { id: 's1' }), { defaultValue: undefined });
      await lastValueFrom(client('OTEL_TRACED').emit('orders.refunded', { id: 'r1' }), { defaultValue: undefined });
      await lastValueFrom(client('OTEL_PARENT').emit('orders.created', { id: 'c1' }), { defaultValue: undefined });
    });

    const spans = await spanRecorder.waitForSpans((s) => findSpans(s, { kind: SpanKind.CONSUMER, traceId: parent.traceId }).length >= 3 && !!getSpan(s, 'OrdersController.shipped'));
    const producers = findSpans(spans, { kind: SpanKind.PRODUCER, traceId: parent.traceId });
    expect(producers.map((span) => span.attributes['nestjs.pattern'])).toEqual(['orders.shipped', 'orders.refunded', 'orders.created']);
    for (const [pattern, queue] of [
      ['orders.shipped', Q.traced],
      ['orders.refunded', Q.traced],
      ['orders.created', Q.parent],
    ]) {
      const producer = getSpan(spans, { kind: SpanKind.PRODUCER, attributes: { 'nestjs.pattern': pattern } });
      const consumer = getSpan(spans, { kind: SpanKind.CONSUMER, attributes: { 'nestjs.pattern': pattern } });
      expectSpan(producer, spans).toHaveParent(parent).toHaveName(`send ${queue}`);
      expectSpan(consumer, spans).toHaveParent(producer).toHaveName(`process ${queue}`);
      expect(consumer.links).toEqual([]);
      const seen = events.find((event) => event.pattern === pattern && event.queue === queue);
      expect(seen?.traceId).toBe(parent.traceId);
      expect(seen?.tenant).toBe('acme');
    }
    // @Traced's own span nests under the CONSUMER span.
    expectSpan(getSpan(spans, 'OrdersController.shipped'), spans).toHaveParent(
      getSpan(spans, { kind: SpanKind.CONSUMER, attributes: { 'nestjs.pattern': 'orders.shipped' } }),
    );
  });

  it('emit() reaches a plain amqplib consumer with the PRODUCER span in traceparent; payload and user headers unchanged', async () => {
    const parent = remoteParent();
    const record = new RmqRecordBuilder({ id: 'w1' }).setOptions({ headers: { 'x-request': 'r-1' }, messageId: `m-${RUN}` }).build();
    await context.with(callerContext(parent, 'wire-co'), () =>
      lastValueFrom(client('OTEL_WIRE').emit('wire.created', record), { defaultValue: undefined }),
    );

    // emit() completes once the broker confirmed the message, and the span with it.
    const producer = getSpan(spanRecorder.getFinishedSpans(), { kind: SpanKind.PRODUCER, traceId: parent.traceId });
    expectSpan(producer)
      .toHaveParent(parent)
      .toHaveName(`send ${Q.wire}`)
      .toHaveStatus(SpanStatusCode.UNSET)
      .toHaveAttributes({ 'messaging.message.id': `m-${RUN}`, 'messaging.destination.name': Q.wire, 'nestjs.handler.type': 'event' });

    for (let i = 0; i < 100 && wireMessages.length === 0; i++) {
      await sleep(20);
    }
    expect(wireMessages).toHaveLength(1);
    const [message] = wireMessages;
    expect(message.content.toString()).toBe(JSON.stringify({ pattern: 'wire.created', data: { id: 'w1' } }));
    expect(message.properties.messageId).toBe(`m-${RUN}`);
    expect(message.properties.headers).toEqual({
      'x-app': 'gateway',
      'x-request': 'r-1',
      traceparent: traceparentOf(ids(producer)),
      baggage: 'tenant.id=wire-co',
    });
    // Any OpenTelemetry peer reads the same context with the plain API.
    const extracted = trace.getSpanContext(propagation.extract(ROOT_CONTEXT, message.properties.headers));
    expect(extracted).toMatchObject({ traceId: ids(producer).traceId, spanId: ids(producer).spanId, isRemote: true });
  });

  it('a streamed reply: every value comes from inside the CONSUMER span, which covers the whole stream', async () => {
    const endHookCalls: string[] = [];
    tracedServer.setOnProcessingEndHook((_transport, ctx) => endHookCalls.push((ctx as RmqContext).getPattern()));
    try {
      const values = await lastValueFrom(client('OTEL_TRACED').send<string>('orders.stream', {}).pipe(toArray()));
      const consumer = await spanRecorder.waitForSpan({ kind: SpanKind.CONSUMER, attributes: { 'nestjs.pattern': 'orders.stream' } });
      const producer = await spanRecorder.waitForSpan({ kind: SpanKind.PRODUCER, attributes: { 'nestjs.pattern': 'orders.stream' } });
      expect(values).toEqual(Array(3).fill(consumer.spanContext().spanId));
      expectSpan(consumer).toHaveParent(producer).toHaveStatus(SpanStatusCode.UNSET);
      expectSpan(producer).toHaveStatus(SpanStatusCode.UNSET);
      const nanos = ([seconds, fraction]: [number, number]): bigint => BigInt(seconds) * 1_000_000_000n + BigInt(fraction);
      // Three values 20 ms apart: on Nest 11 too, where Nest runs the end hook in every reply's publish.
      expect(nanos(consumer.duration)).toBeGreaterThanOrEqual(35_000_000n);
      // Durations, not end times: the SDK anchors each span's clock to Date.now() when it starts.
      expect(nanos(producer.duration)).toBeGreaterThan(nanos(consumer.duration));
      // A user's end hook runs whenever Nest calls it: once (Nest 12), once per reply (Nest 11).
      expect(endHookCalls).toEqual(Array(NEST_MAJOR >= 12 ? 1 : 3).fill('orders.stream'));
    } finally {
      tracedServer.setOnProcessingEndHook(() => undefined);
    }
  });

  it('an RpcException: CONSUMER ERROR recorded once, the caller gets what a plain Nest pair gives', async () => {
    const tracedError: unknown = await firstValueFrom(client('OTEL_TRACED').send('orders.fail', { id: 7 })).catch((err: unknown) => err);
    const plainError: unknown = await firstValueFrom(client('PLAIN_PLAIN').send('orders.fail', { id: 7 })).catch((err: unknown) => err);
    expect(plainError).toEqual(ORDER_NOT_FOUND);
    expect(tracedError).toEqual(plainError);

    const consumer = await spanRecorder.waitForSpan({ kind: SpanKind.CONSUMER, attributes: { 'nestjs.pattern': 'orders.fail' } });
    const spans = await spanRecorder.waitForSpans((s) => !!getSpan(s, { kind: SpanKind.PRODUCER, traceId: ids(consumer).traceId }));
    const producer = getSpan(spans, { kind: SpanKind.PRODUCER, traceId: ids(consumer).traceId });
    expectSpan(consumer, spans).toHaveParent(producer).toHaveStatus(SpanStatusCode.ERROR).toHaveAttributes({ 'error.type': 'RpcException' });
    expect(consumer.events.filter((event) => event.name === 'exception')).toHaveLength(1);
    expectSpan(producer, spans).toHaveStatus(SpanStatusCode.ERROR, /order 7 does not exist/).toHaveAttributes({ 'error.type': 'OrderNotFound' });
  });

  it('rxjs timeout(): the PRODUCER ends ERROR with error.type "cancelled", the caller gets the TimeoutError', async () => {
    const error = await firstValueFrom(client('OTEL_TRACED').send('orders.slow', {}).pipe(timeout(100))).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(TimeoutError);

    const producer = await spanRecorder.waitForSpan({ kind: SpanKind.PRODUCER, attributes: { 'nestjs.pattern': 'orders.slow' } });
    expectSpan(producer).toHaveStatus(SpanStatusCode.ERROR).toHaveAttributes({ 'error.type': SEND_CANCELLED });
    // The handler still runs to its end, in the same trace.
    const consumer = await spanRecorder.waitForSpan({ kind: SpanKind.CONSUMER, attributes: { 'nestjs.pattern': 'orders.slow' } });
    expectSpan(consumer).toHaveParent(producer).toHaveStatus(SpanStatusCode.UNSET);
  });

  it('broker down: send() and emit() fail exactly as with ClientRMQ, and their PRODUCER spans end ERROR', async () => {
    const tracedSend = await firstValueFrom(client('OTEL_DOWN').send('orders.get', { id: 1 })).catch((err: unknown) => err);
    const plainSend = await firstValueFrom(client('PLAIN_DOWN').send('orders.get', { id: 1 })).catch((err: unknown) => err);
    const tracedEmit = await lastValueFrom(client('OTEL_DOWN').emit('orders.created', { id: 1 })).catch((err: unknown) => err);
    const plainEmit = await lastValueFrom(client('PLAIN_DOWN').emit('orders.created', { id: 1 })).catch((err: unknown) => err);
    // Nest's ClientRMQ fails with the connection manager's `connectFailed` event, `{ err, url }`.
    expect(plainSend).toMatchObject({ err: expect.objectContaining({ code: 'ECONNREFUSED' }), url: DOWN_URL });
    expect(tracedSend).toEqual(plainSend);
    expect(tracedEmit).toEqual(plainEmit);
    expect(plainEmit).toMatchObject({ err: expect.objectContaining({ code: 'ECONNREFUSED' }) });

    const spans = spanRecorder.getFinishedSpans();
    const producers = findSpans(spans, { kind: SpanKind.PRODUCER, attributes: { 'server.port': 1 } });
    expect(producers.map((span) => span.attributes['nestjs.handler.type'])).toEqual(['message', 'event']);
    for (const producer of producers) {
      // The inner error is recorded, not the URL with its credentials.
      expectSpan(producer, spans).toHaveStatus(SpanStatusCode.ERROR, /ECONNREFUSED/).toHaveAttributes({ 'error.type': 'Error' });
      expect(JSON.stringify([producer.status, producer.events])).not.toContain('guest:guest');
    }
  });

  it('a client closed with a request in flight: the caller sees what Nest does, and the PRODUCER ends ERROR', async () => {
    const closing = new OtelClientRMQ(rmq(Q.traced));
    await closing.connect();
    const pending = firstValueFrom(closing.send('orders.slow', { closing: true })).catch((err: unknown) => err);
    await sleep(100);
    await closing.close();
    const producer = () =>
      getSpan(spanRecorder.getFinishedSpans(), { kind: SpanKind.PRODUCER, attributes: { 'nestjs.pattern': 'orders.slow' } });
    if (NEST_MAJOR >= 12) {
      // Nest 12 fails the requests still waiting when it closes.
      const error = await pending;
      expect(error).toBeInstanceOf(Error);
      expect((error as Error).message).toBe('Connection closed');
      expectSpan(producer()).toHaveStatus(SpanStatusCode.ERROR, 'Connection closed').toHaveAttributes({ 'error.type': 'Error' });
    } else {
      // Nest 11 leaves them pending for good; the span ends anyway, when the client closes.
      expectSpan(producer()).toHaveStatus(SpanStatusCode.ERROR).toHaveAttributes({ 'error.type': SEND_CLIENT_CLOSED });
      expect(await Promise.race([pending, sleep(200, 'still pending')])).toBe('still pending');
    }
    // The handler finishes anyway; wait for it so that its span does not land in the next test.
    await spanRecorder.waitForSpan({ kind: SpanKind.CONSUMER, attributes: { 'nestjs.pattern': 'orders.slow' } });
  });

  it('bad trace headers (missing, garbage, oversized, arrays, numbers, Buffers, tables, null): a new root trace, nothing thrown', async () => {
    const valid = remoteParent();
    const other = remoteParent();
    const cases: Array<[string, Record<string, unknown> | undefined]> = [
      ['none', undefined],
      ['garbage', { traceparent: 'not-a-traceparent', tracestate: '===', baggage: ';;;=,=' }],
      ['oversized', { traceparent: `${traceparentOf(valid)}-${'f'.repeat(16_000)}`, baggage: `tenant.id=${'x'.repeat(20_000)}` }],
      ['duplicated', { traceparent: [traceparentOf(valid), traceparentOf(other)] }],
      ['number', { traceparent: 12345, tracestate: 1.5 }],
      ['buffer', { traceparent: Buffer.from([0x00, 0xff, 0x2d, 0x30]) }],
      ['table', { traceparent: { version: '00', traceId: valid.traceId, spanId: valid.spanId } }],
      ['null', { traceparent: null, tracestate: null, baggage: null }],
      ['boolean', { traceparent: true }],
    ];
    const replies = await Promise.all(
      cases.map(([name, headers]) => peer.request(Q.traced, 'orders.get', { name }, { id: `bad-${RUN}-${name}`, headers })),
    );

    const badConsumers = (s: readonly ReadableSpan[]): ReadableSpan[] =>
      findSpans(s, (span) => span.kind === SpanKind.CONSUMER && String(span.attributes['messaging.message.conversation_id']).startsWith(`bad-${RUN}-`));
    const spans = await spanRecorder.waitForSpans((s) => badConsumers(s).length >= cases.length);
    cases.forEach(([name], index) => {
      const packet = JSON.parse(replies[index].content.toString()) as { response?: HandlerView; err?: unknown };
      expect(packet.err, name).toBeUndefined();
      expect(packet.response?.data, name).toEqual({ name });
      const consumer = getSpan(spans, { kind: SpanKind.CONSUMER, attributes: { 'messaging.message.conversation_id': `bad-${RUN}-${name}` } });
      expectSpan(consumer, spans).toBeRoot();
      expect(consumer.links, name).toEqual([]);
      expect([valid.traceId, other.traceId], name).not.toContain(ids(consumer).traceId);
      expect(packet.response?.traceId, name).toBe(ids(consumer).traceId);
      expect(replies[index].properties.headers?.traceparent, name).toBe(traceparentOf(ids(consumer)));
    });
    // Every message started its own trace.
    expect(new Set(badConsumers(spans).map((span) => ids(span).traceId)).size).toBe(cases.length);
  });

  it('a traceparent sent as an AMQP byte array (Buffer) is read', async () => {
    const parent = remoteParent();
    const reply = await peer.request(Q.traced, 'orders.get', { name: 'bytes' }, {
      id: `bytes-${RUN}`,
      headers: { traceparent: Buffer.from(traceparentOf(parent)) },
    });
    expect((JSON.parse(reply.content.toString()) as { response: HandlerView }).response.traceId).toBe(parent.traceId);
    expectSpan(await spanRecorder.waitForSpan({ kind: SpanKind.CONSUMER, traceId: parent.traceId })).toHaveParent(parent);
  });

  it('200 concurrent request-replies with distinct trace ids and baggage: no context leaks', async () => {
    const callers = Array.from({ length: 200 }, (_, i) => ({ parent: remoteParent(), tenant: `tenant-${i}` }));
    const results = await Promise.all(
      callers.map(({ parent, tenant }, i) =>
        context.with(callerContext(parent, tenant), () =>
          firstValueFrom(
            client('OTEL_TRACED')
              .send<HandlerView>('orders.get', { i })
              // The caller's own operators run in the caller's context.
              .pipe(map((reply) => ({ reply, callerTraceId: trace.getActiveSpan()?.spanContext().traceId }))),
          ),
        ),
      ),
    );
    const replies = results.map(({ reply }) => reply);
    results.forEach(({ reply, callerTraceId }, i) => {
      expect(reply.data).toEqual({ i });
      expect(reply.traceId).toBe(callers[i].parent.traceId);
      expect(reply.tenant).toBe(callers[i].tenant);
      expect(callerTraceId).toBe(callers[i].parent.traceId);
    });

    const spans = await spanRecorder.waitForSpans(
      (s) => findSpans(s, { kind: SpanKind.CONSUMER }).length >= 200 && findSpans(s, { kind: SpanKind.PRODUCER }).length >= 200,
      { timeoutMs: 10_000 },
    );
    const byTrace = new Map<string, ReadableSpan[]>();
    for (const span of spans) {
      byTrace.set(ids(span).traceId, [...(byTrace.get(ids(span).traceId) ?? []), span]);
    }
    callers.forEach(({ parent }, i) => {
      const inTrace = byTrace.get(parent.traceId) ?? [];
      expect(inTrace.map((span) => span.kind).sort()).toEqual([SpanKind.PRODUCER, SpanKind.CONSUMER].sort());
      const producer = getSpan(inTrace, { kind: SpanKind.PRODUCER });
      const consumer = getSpan(inTrace, { kind: SpanKind.CONSUMER });
      expectSpan(producer, inTrace).toHaveParent(parent).toHaveStatus(SpanStatusCode.UNSET);
      expectSpan(consumer, inTrace).toHaveParent(producer).toHaveAttributes({ 'nestjs.pattern': 'orders.get' });
      expect(consumer.attributes['messaging.message.conversation_id']).toBe(producer.attributes['messaging.message.conversation_id']);
      expect(replies[i].spanId).toBe(ids(consumer).spanId);
    });
  });

  it('mixing: OtelClientRMQ → plain ServerRMQ and plain ClientRMQ → OtelServerRMQ still work', async () => {
    // Traced client, plain server: Nest's reply; the headers arrive, but nothing continues the trace.
    const parent = remoteParent();
    const fromPlain = await context.with(callerContext(parent), () =>
      firstValueFrom(client('OTEL_PLAIN').send<HandlerView>('orders.get', { id: 'g1' })),
    );
    expect(fromPlain.data).toEqual({ id: 'g1' });
    expect(fromPlain.traceId).toBe('');
    const producer = getSpan(spanRecorder.getFinishedSpans(), { kind: SpanKind.PRODUCER, traceId: parent.traceId });
    expectSpan(producer).toHaveParent(parent).toHaveName(`send ${Q.plain}`).toHaveStatus(SpanStatusCode.UNSET);
    expect(fromPlain.traceparent).toBe(traceparentOf(ids(producer)));
    const failedAtPlain = await firstValueFrom(client('OTEL_PLAIN').send('orders.fail', {})).catch((err: unknown) => err);
    expect(failedAtPlain).toEqual(ORDER_NOT_FOUND);

    // Plain client, traced server: served, under a new root trace.
    const other = remoteParent();
    const fromTraced = await context.with(callerContext(other), () =>
      firstValueFrom(client('PLAIN_TRACED').send<HandlerView>('orders.get', { id: 'g2' })),
    );
    expect(fromTraced.data).toEqual({ id: 'g2' });
    const consumer = await spanRecorder.waitForSpan({ kind: SpanKind.CONSUMER, traceId: fromTraced.traceId });
    expectSpan(consumer).toBeRoot().toHaveName(`process ${Q.traced}`);
    expect(consumer.links).toEqual([]);
    expect(ids(consumer).traceId).not.toBe(other.traceId);
    expect(fromTraced.spanId).toBe(ids(consumer).spanId);
    await lastValueFrom(client('PLAIN_TRACED').emit('orders.created', { id: 'g3' }), { defaultValue: undefined });
    const eventConsumer = await spanRecorder.waitForSpan({ kind: SpanKind.CONSUMER, attributes: { 'nestjs.pattern': 'orders.created' } });
    expectSpan(eventConsumer).toBeRoot();
    expect(eventConsumer.links).toEqual([]);
    expect(findSpans(spanRecorder.getFinishedSpans(), { traceId: parent.traceId, kind: SpanKind.CONSUMER })).toEqual([]);
  });
});
