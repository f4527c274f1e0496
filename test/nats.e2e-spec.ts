import 'reflect-metadata';
import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Body, Controller, Get, Inject, Module, Param, Post, type INestApplication, type INestMicroservice } from '@nestjs/common';
import {
  ClientNats,
  ClientsModule,
  Ctx,
  EventPattern,
  MessagePattern,
  NatsContext,
  NatsRecordBuilder,
  Payload,
  RpcException,
  ServerNats,
  type ClientProxy,
} from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import {
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Context,
  type SpanContext,
} from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { firstValueFrom, lastValueFrom, map, take, timeout, timer, toArray, type Observable } from 'rxjs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Baggage, TraceService, Traced, SEND_CANCELLED } from '../lib/index.js';
import { OtelTestingModule, expectSpan, findSpans, getSpan, spanRecorder, traceOf } from '../lib/testing/index.js';
import { natsHeaderGetter, OtelClientNats, OtelServerNats, otelNats } from '../lib/transports/nats/index.js';
import { SEND_CLIENT_CLOSED } from '../lib/transports/shared/producer-tracer.js';
// Not exported from the package's index by Nest 11; this path exists in both.
import { NatsResponseJSONDeserializer } from '@nestjs/microservices/deserializers/index.js';
import { plainRequest } from './support/http-request.js';
import { RawNatsClient } from './support/hostile-wire.js';
import { NEST_MAJOR } from './support/nest-version.js';
import { connect, natsHeaders, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from './support/nats-driver.js';

const NATS_URL = 'nats://127.0.0.1:4222';
const SERVERS = [NATS_URL];
// Unique subjects: other runs on the same broker never see these messages.
const RUN = `otel-nest-e2e.${randomUUID().slice(0, 8)}`;
const S = {
  get: `${RUN}.orders.get`,
  echo: `${RUN}.orders.echo`,
  fail: `${RUN}.orders.fail`,
  crash: `${RUN}.orders.crash`,
  slow: `${RUN}.orders.slow`,
  stream: `${RUN}.orders.stream`,
  created: `${RUN}.orders.created`,
  createdTraced: `${RUN}.orders.created-traced`,
  createdExtras: `${RUN}.orders.created-extras`,
  audit: `${RUN}.audit.recorded`,
  wire: `${RUN}.wire.event`,
  plainEcho: `${RUN}.plain.echo`,
  plainFail: `${RUN}.plain.fail`,
  plainCrash: `${RUN}.plain.crash`,
};
const QUEUE = 'orders-workers';
const ORDERS_CLIENT = 'ORDERS_CLIENT';

interface HandlerView {
  traceId?: string;
  spanId?: string;
  tenant?: string;
  data?: unknown;
}

/** What each event handler saw, by subject. */
const seenEvents = new Map<string, HandlerView[]>();
function sawEvent(subject: string, view: HandlerView): void {
  seenEvents.set(subject, [...(seenEvents.get(subject) ?? []), view]);
}

const OUT_OF_STOCK = { name: 'OutOfStockError', message: 'out of stock', sku: 'sku-9' };

/** Handlers shared by the traced service and by the plain Nest service. */
function failingHandlers(prefix: 'orders' | 'plain') {
  const fail = prefix === 'orders' ? S.fail : S.plainFail;
  const crash = prefix === 'orders' ? S.crash : S.plainCrash;
  @Controller()
  class FailingController {
    @MessagePattern(fail)
    fail(): never {
      throw new RpcException(OUT_OF_STOCK);
    }

    @MessagePattern(crash)
    crash(): never {
      throw new TypeError('boom');
    }
  }
  return FailingController;
}

@Controller()
class OrdersController {
  constructor(private readonly traces: TraceService) {}

  @MessagePattern(S.get)
  get(@Payload() data: { id: string }, @Baggage('tenant.id') tenant?: string): HandlerView & { id: string } {
    return { id: data.id, tenant, traceId: this.traces.getTraceId(), spanId: this.traces.getSpanId() };
  }

  @MessagePattern(S.echo)
  echo(@Payload() data: unknown, @Ctx() ctx: NatsContext): HandlerView & { subject: string } {
    return {
      data,
      subject: ctx.getSubject(),
      tenant: this.traces.getBaggage('tenant.id'),
      traceId: this.traces.getTraceId(),
      spanId: this.traces.getSpanId(),
    };
  }

  @MessagePattern(S.slow)
  async slow(): Promise<string> {
    await sleep(400);
    return 'late';
  }

  /** Three replies, 20 ms apart, each naming the trace it was produced in. */
  @MessagePattern(S.stream)
  stream(): Observable<string | undefined> {
    return timer(0, 20).pipe(
      take(3),
      map(() => this.traces.getSpanId()),
    );
  }

  @EventPattern(S.created)
  created(@Payload() data: unknown, @Baggage('tenant.id') tenant: unknown): void {
    sawEvent(S.created, { data, tenant: tenant as string | undefined, traceId: this.traces.getTraceId(), spanId: this.traces.getSpanId() });
  }

  @Traced({ consume: 'parent' })
  @EventPattern(S.createdTraced)
  createdTraced(@Payload() data: unknown): void {
    sawEvent(S.createdTraced, { data, traceId: this.traces.getTraceId() });
  }

  @EventPattern(S.createdExtras, { otelConsume: 'parent' })
  createdExtras(@Payload() data: unknown): void {
    sawEvent(S.createdExtras, { data, traceId: this.traces.getTraceId() });
  }
}

@Controller()
class AuditController {
  constructor(private readonly traces: TraceService) {}

  @EventPattern(S.audit)
  recorded(@Payload() data: unknown): void {
    sawEvent(S.audit, { data, traceId: this.traces.getTraceId() });
  }
}

@Controller()
class PlainController {
  @MessagePattern(S.plainEcho)
  echo(@Payload() data: unknown, @Ctx() ctx: NatsContext): { data: unknown; traceparent: string | null } {
    return { data, traceparent: ctx.getHeaders()?.get('traceparent') ?? null };
  }
}

@Controller('gateway')
class GatewayController {
  constructor(
    @Inject(ORDERS_CLIENT) private readonly orders: ClientProxy,
    private readonly traces: TraceService,
  ) {}

  @Get('orders/:id')
  order(@Param('id') id: string): Observable<unknown> {
    return this.orders.send(S.get, { id });
  }

  /** What the caller's own code sees when the reply arrives. */
  @Get('orders/:id/caller')
  orderSeenByCaller(@Param('id') id: string): Observable<unknown> {
    return this.orders
      .send<HandlerView>(S.get, { id })
      .pipe(map((reply) => ({ handlerTraceId: reply.traceId, callerTraceId: this.traces.getTraceId() })));
  }

  @Post('orders')
  async create(@Body() body: { id: string }): Promise<{ accepted: boolean }> {
    await lastValueFrom(this.orders.emit(S.created, body), { defaultValue: undefined });
    return { accepted: true };
  }
}

const randomTraceId = (): string => randomBytes(16).toString('hex');
const randomSpanId = (): string => randomBytes(8).toString('hex');
const remoteParent = (): SpanContext => ({ traceId: randomTraceId(), spanId: randomSpanId(), traceFlags: 1, isRemote: true });
const inRemoteParent = (parent: SpanContext): Context => trace.setSpanContext(ROOT_CONTEXT, parent);
/** The traceparent naming `span`, with its sampled and (Level 2) random flags. */
const traceparentOf = (span: ReadableSpan | SpanContext): string => {
  const { traceId, spanId, traceFlags } = 'spanContext' in span ? span.spanContext() : span;
  return `00-${traceId}-${spanId}-${(traceFlags & 0x03).toString(16).padStart(2, '0')}`;
};
const exceptionEvents = (span: ReadableSpan) => span.events.filter((event) => event.name === 'exception');

/** Waits for the one span matching, and returns all spans. */
async function waitForOne(name: string, kind: SpanKind): Promise<{ spans: ReadableSpan[]; span: ReadableSpan }> {
  const spans = await spanRecorder.waitForSpans((all) => getSpan(all, { name, kind }) !== undefined);
  return { spans, span: getSpan(spans, { name, kind }) };
}

/** Nest's wire format of a request, as a plain NATS peer writes it. */
function nestRequest(pattern: string, data: unknown, id: string): string {
  return JSON.stringify({ pattern, data, id });
}

describe('NATS: OtelServerNats and OtelClientNats on the real broker', () => {
  let service: INestMicroservice;
  let auditService: INestMicroservice;
  let plainService: INestMicroservice;
  let gateway: INestApplication;
  let gatewayUrl: string;
  let client: ClientProxy;
  let plainClient: ClientNats;
  let raw: NatsConnection;
  let serviceServer: OtelServerNats;

  async function flushServer(server: ServerNats): Promise<void> {
    // The server's SUBs must reach the broker before other connections publish.
    await server.unwrap<NatsConnection>().flush();
  }

  beforeAll(async () => {
    raw = await connect({ servers: SERVERS });

    @Module({
      imports: [OtelTestingModule.forRoot({ serviceName: 'orders' })],
      controllers: [OrdersController, failingHandlers('orders')],
    })
    class OrdersModule {}
    serviceServer = new OtelServerNats({ servers: SERVERS, queue: QUEUE });
    service = (await Test.createTestingModule({ imports: [OrdersModule] }).compile()).createNestMicroservice({
      strategy: serviceServer,
    });
    await service.listen();
    await flushServer(serviceServer);

    @Module({ imports: [OtelTestingModule.forRoot({ serviceName: 'audit' })], controllers: [AuditController] })
    class AuditModule {}
    // The short form.
    const auditStrategy = otelNats({ servers: SERVERS, otel: { eventConsume: 'parent' } });
    expect(auditStrategy.strategy).toBeInstanceOf(OtelServerNats);
    auditService = (await Test.createTestingModule({ imports: [AuditModule] }).compile()).createNestMicroservice(
      auditStrategy,
    );
    await auditService.listen();
    await flushServer(auditStrategy.strategy as OtelServerNats);

    // Nest's own transport, no otel-nest at all.
    @Module({ controllers: [PlainController, failingHandlers('plain')] })
    class PlainModule {}
    const plainServer = new ServerNats({ servers: SERVERS });
    plainService = (await Test.createTestingModule({ imports: [PlainModule] }).compile()).createNestMicroservice({
      strategy: plainServer,
    });
    await plainService.listen();
    await flushServer(plainServer);

    @Module({
      imports: [
        OtelTestingModule.forRoot({ serviceName: 'gateway' }),
        ClientsModule.register([{ name: ORDERS_CLIENT, customClass: OtelClientNats, options: { servers: SERVERS } }]),
      ],
      controllers: [GatewayController],
    })
    class GatewayModule {}
    gateway = (await Test.createTestingModule({ imports: [GatewayModule] }).compile()).createNestApplication();
    await gateway.listen(0, '127.0.0.1');
    gatewayUrl = (await gateway.getUrl()).replace('[::1]', '127.0.0.1');
    client = gateway.get<ClientProxy>(ORDERS_CLIENT);
    expect(client).toBeInstanceOf(OtelClientNats);

    plainClient = new ClientNats({ servers: SERVERS });
    await plainClient.connect();
  });

  afterAll(async () => {
    await plainClient?.close();
    await gateway?.close();
    await plainService?.close();
    await auditService?.close();
    await service?.close();
    await raw?.close();
  });

  beforeEach(() => {
    spanRecorder.reset();
    seenEvents.clear();
  });

  /** Collects the messages published on `subject` (a plain, non-queue subscription sees every copy). */
  function sniff(subject: string): { messages: Msg[]; sub: Subscription } {
    const messages: Msg[] = [];
    const sub = raw.subscribe(subject, { callback: (_err, msg) => {
        messages.push(msg);
      },
    });
    return { messages, sub };
  }

  describe('request-reply through an HTTP gateway', () => {
    it('SERVER -> PRODUCER send -> CONSUMER process is one trace, with attributes, baggage and context headers on the wire', async () => {
      const parent = remoteParent();
      const requests = sniff(S.get);
      const replies = sniff('_INBOX.>');
      await raw.flush();

      const response = await plainRequest(`${gatewayUrl}/gateway/orders/o-42`, {
        headers: { traceparent: traceparentOf(parent), baggage: 'tenant.id=acme' },
      });
      expect(response.status).toBe(200);
      const body = response.json<HandlerView & { id: string }>();

      const spans = await spanRecorder.waitForSpans(
        (all) => findSpans(all, { kind: SpanKind.SERVER }).length === 1 && findSpans(all, { kind: SpanKind.CONSUMER }).length === 1,
      );
      const server = getSpan(spans, { name: 'GET /gateway/orders/:id', kind: SpanKind.SERVER });
      const producer = getSpan(spans, { name: `send ${S.get}`, kind: SpanKind.PRODUCER });
      const consumer = getSpan(spans, { name: `process ${S.get}`, kind: SpanKind.CONSUMER });
      expectSpan(server, spans).toHaveParent(parent);
      expectSpan(producer, spans).toHaveParent(server).toHaveStatus(SpanStatusCode.UNSET);
      expectSpan(consumer, spans).toHaveParent(producer).toHaveStatus(SpanStatusCode.UNSET);
      expect(traceOf(spans, parent).map((span) => span.name)).toEqual([
        'GET /gateway/orders/:id',
        `send ${S.get}`,
        `process ${S.get}`,
      ]);

      // The handler ran inside the CONSUMER span and read the caller's baggage.
      expect(body).toEqual({
        id: 'o-42',
        tenant: 'acme',
        traceId: parent.traceId,
        spanId: consumer.spanContext().spanId,
      });

      // On the wire: Nest's payload, untouched; context and baggage in NATS headers.
      expect(requests.messages).toHaveLength(1);
      const request = requests.messages[0]!;
      const payload = request.json<{ pattern: string; data: unknown; id: string }>();
      expect(Object.keys(payload).sort()).toEqual(['data', 'id', 'pattern']);
      expect(payload).toMatchObject({ pattern: S.get, data: { id: 'o-42' } });
      expect(request.headers?.get('traceparent')).toBe(traceparentOf(producer));
      expect(request.headers?.get('baggage')).toBe('tenant.id=acme');

      const attributes = {
        'messaging.system': 'nats',
        'messaging.destination.name': S.get,
        'messaging.message.conversation_id': payload.id,
        'messaging.message.body.size': request.data.length,
        'server.address': '127.0.0.1',
        'server.port': 4222,
        'nestjs.pattern': S.get,
      };
      expectSpan(producer, spans).toHaveAttributes({
        ...attributes,
        'messaging.operation.name': 'send',
        'messaging.operation.type': 'send',
        'nestjs.handler.type': 'message',
      });
      expectSpan(consumer, spans).toHaveAttributes({
        ...attributes,
        'messaging.operation.name': 'process',
        'messaging.operation.type': 'process',
        'messaging.consumer.group.name': QUEUE,
        'nestjs.handler.type': 'message',
        'nestjs.controller': 'OrdersController',
        'nestjs.handler': 'get',
      });
      expectSpan(producer, spans).toNotHaveAttribute('messaging.consumer.group.name');

      // The reply carries the CONSUMER span's context.
      const reply = replies.messages.find((msg) => msg.json<{ id?: string }>().id === payload.id);
      expect(reply, 'the reply was seen on the wire').toBeDefined();
      expect(reply!.json()).toEqual({ id: payload.id, response: body, isDisposed: true });
      expect(reply!.headers?.get('traceparent')).toBe(traceparentOf(consumer));
      requests.sub.unsubscribe();
      replies.sub.unsubscribe();
    });

    it('the reply reaches the caller\'s code in the caller\'s context, not in the one the connection was opened in', async () => {
      // The client connected during an earlier request; NATS callbacks run in that request's context.
      await plainRequest(`${gatewayUrl}/gateway/orders/warm-up`, { headers: { traceparent: traceparentOf(remoteParent()) } });
      for (const parent of [remoteParent(), remoteParent()]) {
        const response = await plainRequest(`${gatewayUrl}/gateway/orders/o-1/caller`, {
          headers: { traceparent: traceparentOf(parent) },
        });
        expect(response.json()).toEqual({ handlerTraceId: parent.traceId, callerTraceId: parent.traceId });
      }
    });

    it('the connection is opened outside the caller\'s context: driver callbacks never run in a request\'s context', async () => {
      const activeInCallbacks: Array<string | undefined> = [];
      class RecordingDeserializer extends NatsResponseJSONDeserializer {
        override deserialize(value: any, options?: Record<string, any>) {
          activeInCallbacks.push(trace.getActiveSpan()?.spanContext().spanId);
          return super.deserialize(value, options);
        }
      }
      const fresh = new OtelClientNats({ servers: SERVERS, deserializer: new RecordingDeserializer() });
      try {
        const parent = remoteParent();
        // This first send opens the connection.
        await context.with(inRemoteParent(parent), () => firstValueFrom(fresh.send(S.echo, { first: true })));
        await firstValueFrom(fresh.send(S.echo, { second: true }));
        expect(activeInCallbacks).toEqual([undefined, undefined]);
      } finally {
        await fresh.close();
      }
    });

    it('a streamed reply: every value comes from inside the CONSUMER span; the PRODUCER ends with the last reply', async () => {
      const values = await lastValueFrom(client.send<string>(S.stream, {}).pipe(toArray()));
      const { spans, span: consumer } = await waitForOne(`process ${S.stream}`, SpanKind.CONSUMER);
      const producer = getSpan(spans, { name: `send ${S.stream}`, kind: SpanKind.PRODUCER });
      expect(values).toEqual(Array(3).fill(consumer.spanContext().spanId));
      expectSpan(consumer, spans).toHaveParent(producer).toHaveStatus(SpanStatusCode.UNSET);
      expectSpan(producer, spans).toHaveStatus(SpanStatusCode.UNSET);
      const nanos = ([seconds, fraction]: [number, number]): bigint => BigInt(seconds) * 1_000_000_000n + BigInt(fraction);
      // The CONSUMER span covers the whole stream (three values 20 ms apart), on Nest 11 too, where
      // Nest runs the end hook at the first reply's publish.
      expect(nanos(consumer.duration)).toBeGreaterThanOrEqual(35_000_000n);
      // Nest publishes the last reply after the handler's Observable completed (and its span
      // ended); the PRODUCER started before and ends after it. Compared as durations: the SDK
      // anchors each span's clock to Date.now() (millisecond resolution) when it starts, so end
      // times of two spans can be up to a millisecond off their real order; durations are not.
      expect(nanos(producer.duration)).toBeGreaterThan(nanos(consumer.duration));
    });

    it('user headers (NatsRecordBuilder, the headers option) are kept; no trace context is written into the record', async () => {
      const withOption = new OtelClientNats({ servers: SERVERS, headers: { 'x-origin': 'gateway' } });
      try {
        const requests = sniff(S.echo);
        await raw.flush();
        const userHeaders = natsHeaders();
        userHeaders.set('x-request-kind', 'audit');
        const staleTraceparent = traceparentOf(remoteParent());
        userHeaders.set('Traceparent', staleTraceparent);
        const record = new NatsRecordBuilder({ n: 1 }).setHeaders(userHeaders).build();

        const reply = await firstValueFrom(withOption.send<HandlerView>(S.echo, record));
        expect(reply.data).toEqual({ n: 1 });

        const spans = await spanRecorder.waitForSpans((all) => findSpans(all, { kind: SpanKind.CONSUMER }).length === 1);
        const producer = getSpan(spans, { kind: SpanKind.PRODUCER });
        const consumer = getSpan(spans, { kind: SpanKind.CONSUMER });
        expectSpan(producer, spans).toBeRoot();
        expectSpan(consumer, spans).toHaveParent(producer);
        const wire = requests.messages[0]!.headers!;
        expect(wire.get('x-request-kind')).toBe('audit');
        expect(wire.get('x-origin')).toBe('gateway');
        // The stale, differently-cased traceparent the record carried is replaced by ours.
        expect(wire.keys().filter((key) => key.toLowerCase() === 'traceparent')).toEqual(['traceparent']);
        expect(wire.get('traceparent')).toBe(traceparentOf(producer));
        // We never write into the application's headers object (Nest itself adds the headers option to it).
        expect(userHeaders.keys().filter((key) => key.toLowerCase() === 'traceparent')).toEqual(['Traceparent']);
        expect(userHeaders.get('Traceparent')).toBe(staleTraceparent);
        expect(requests.messages[0]!.json()).toMatchObject({ pattern: S.echo, data: { n: 1 } });
        requests.sub.unsubscribe();
      } finally {
        await withOption.close();
      }
    });
  });

  describe('events', () => {
    it('emit -> @EventPattern: by default the CONSUMER starts a new trace LINKED to the PRODUCER, baggage kept', async () => {
      const parent = remoteParent();
      const response = await plainRequest(`${gatewayUrl}/gateway/orders`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', traceparent: traceparentOf(parent), baggage: 'tenant.id=acme' },
        body: JSON.stringify({ id: 'o-7' }),
      });
      expect(response.status).toBe(201);
      const { spans, span: consumer } = await waitForOne(`process ${S.created}`, SpanKind.CONSUMER);
      const producer = getSpan(spans, { name: `send ${S.created}`, kind: SpanKind.PRODUCER });
      expectSpan(producer, spans)
        .toHaveParent('POST /gateway/orders')
        .toBeInTraceOf(parent)
        .toHaveStatus(SpanStatusCode.UNSET)
        .toHaveAttributes({ 'nestjs.handler.type': 'event', 'messaging.destination.name': S.created, 'server.port': 4222 })
        .toNotHaveAttribute('messaging.message.conversation_id');
      expectSpan(consumer, spans)
        .toBeRoot()
        .toLinkTo(producer)
        .toHaveAttributes({ 'nestjs.handler.type': 'event', 'nestjs.handler': 'created', 'messaging.system': 'nats' })
        .toNotHaveAttribute('messaging.message.conversation_id');
      expect(consumer.spanContext().traceId).not.toBe(parent.traceId);
      expect(consumer.attributes['messaging.message.body.size']).toBeGreaterThan(0);
      expect(seenEvents.get(S.created)).toEqual([
        { data: { id: 'o-7' }, tenant: 'acme', traceId: consumer.spanContext().traceId, spanId: consumer.spanContext().spanId },
      ]);
    });

    it.each([
      ['@Traced({ consume: "parent" })', S.createdTraced],
      ['@EventPattern(p, { otelConsume: "parent" })', S.createdExtras],
      ['the server option otel.eventConsume: "parent"', S.audit],
    ])('%s makes the event CONSUMER a child of the PRODUCER', async (_how, subject) => {
      await lastValueFrom(client.emit(subject, { id: 'o-8' }), { defaultValue: undefined });
      const { spans, span: consumer } = await waitForOne(`process ${subject}`, SpanKind.CONSUMER);
      const producer = getSpan(spans, { name: `send ${subject}`, kind: SpanKind.PRODUCER });
      expectSpan(consumer, spans).toHaveParent(producer);
      expect(consumer.links).toEqual([]);
      expect(seenEvents.get(subject)?.map((view) => view.traceId)).toEqual([producer.spanContext().traceId]);
    });
  });

  describe('interop with plain NATS peers', () => {
    it('a plain publisher that injects traceparent with @opentelemetry/api is continued by a Nest handler, and gets the consumer context back', async () => {
      const parent = remoteParent();
      const outgoing = natsHeaders();
      propagation.inject(
        propagation.setBaggage(inRemoteParent(parent), propagation.createBaggage({ 'tenant.id': { value: 'globex' } })),
        outgoing,
        { set: (carrier, key, value) => carrier.set(key, value) },
      );
      const reply = await raw.request(S.echo, nestRequest(S.echo, { from: 'plain' }, 'plain-1'), {
        headers: outgoing,
        timeout: 5000,
      });
      const { spans, span: consumer } = await waitForOne(`process ${S.echo}`, SpanKind.CONSUMER);
      expectSpan(consumer, spans)
        .toHaveParent(parent)
        .toHaveAttributes({ 'messaging.message.conversation_id': 'plain-1', 'nestjs.handler': 'echo' });
      expect(reply.json()).toEqual({
        id: 'plain-1',
        isDisposed: true,
        response: {
          data: { from: 'plain' },
          subject: S.echo,
          tenant: 'globex',
          traceId: parent.traceId,
          spanId: consumer.spanContext().spanId,
        },
      });
      // The plain peer reads the reply's context with the same propagator.
      const replyContext = propagation.extract(ROOT_CONTEXT, reply.headers, {
        keys: (carrier) => carrier?.keys() ?? [],
        get: (carrier, key) => carrier?.get(key) || undefined,
      });
      expect(trace.getSpanContext(replyContext)).toMatchObject({
        traceId: consumer.spanContext().traceId,
        spanId: consumer.spanContext().spanId,
      });
    });

    it('a plain event publisher is linked (default) by a Nest event handler', async () => {
      const parent = remoteParent();
      const outgoing = natsHeaders();
      propagation.inject(inRemoteParent(parent), outgoing, { set: (carrier, key, value) => carrier.set(key, value) });
      raw.publish(S.created, JSON.stringify({ pattern: S.created, data: { from: 'plain' } }), { headers: outgoing });
      const { spans, span: consumer } = await waitForOne(`process ${S.created}`, SpanKind.CONSUMER);
      expectSpan(consumer, spans).toBeRoot().toLinkTo(parent);
      expect(seenEvents.get(S.created)?.[0]?.data).toEqual({ from: 'plain' });
    });

    it('a request (with an id) published without a reply subject: the handler runs and its CONSUMER span still ends', async () => {
      const parent = remoteParent();
      const outgoing = natsHeaders();
      propagation.inject(inRemoteParent(parent), outgoing, { set: (carrier, key, value) => carrier.set(key, value) });
      raw.publish(S.echo, nestRequest(S.echo, { noReply: true }, 'no-reply-1'), { headers: outgoing });
      const { spans, span: consumer } = await waitForOne(`process ${S.echo}`, SpanKind.CONSUMER);
      expectSpan(consumer, spans).toHaveParent(parent).toHaveAttributes({ 'messaging.message.conversation_id': 'no-reply-1' });
    });

    it('OtelClientNats.emit reaches a plain subscriber with a traceparent naming the PRODUCER span and the payload Nest sends', async () => {
      const received = sniff(S.wire);
      await raw.flush();
      await lastValueFrom(client.emit(S.wire, { n: 1, text: 'é' }), { defaultValue: undefined });
      const producer = await spanRecorder.waitForSpan({ name: `send ${S.wire}`, kind: SpanKind.PRODUCER });
      for (let i = 0; i < 100 && received.messages.length === 0; i++) {
        await sleep(10);
      }
      expect(received.messages).toHaveLength(1);
      const msg = received.messages[0]!;
      expect(msg.string()).toBe(JSON.stringify({ pattern: S.wire, data: { n: 1, text: 'é' } }));
      expect(msg.headers?.get('traceparent')).toBe(traceparentOf(producer));
      expect(producer.attributes['messaging.message.body.size']).toBe(msg.data.length);
      // The peer continues the trace with the plain API.
      const extracted = propagation.extract(ROOT_CONTEXT, msg.headers, natsHeaderGetter);
      expect(trace.getSpanContext(extracted)?.spanId).toBe(producer.spanContext().spanId);
      received.sub.unsubscribe();
    });
  });

  describe('errors and timeouts', () => {
    async function errorOf(source: Observable<unknown>): Promise<unknown> {
      return firstValueFrom(source).then(
        (value) => ({ unexpectedValue: value }),
        (error: unknown) => error,
      );
    }

    it('RpcException: CONSUMER ERROR recorded once, PRODUCER ERROR, and the caller gets what plain Nest gives', async () => {
      const traced = await errorOf(client.send(S.fail, { id: 1 }));
      const spans = await spanRecorder.waitForSpans((all) => findSpans(all, { kind: SpanKind.PRODUCER }).length === 1 && findSpans(all, { kind: SpanKind.CONSUMER }).length === 1);
      const producer = getSpan(spans, { kind: SpanKind.PRODUCER });
      const consumer = getSpan(spans, { kind: SpanKind.CONSUMER });
      expectSpan(consumer, spans)
        .toHaveParent(producer)
        .toHaveStatus(SpanStatusCode.ERROR)
        .toHaveAttributes({ 'error.type': 'RpcException', 'nestjs.handler': 'fail' });
      expect(exceptionEvents(consumer)).toHaveLength(1);
      expectSpan(producer, spans).toHaveStatus(SpanStatusCode.ERROR).toHaveAttributes({ 'error.type': 'OutOfStockError' });

      // The same handler on Nest's own ServerNats, called with Nest's own ClientNats.
      const plain = await errorOf(plainClient.send(S.plainFail, { id: 1 }));
      expect(plain).toEqual(OUT_OF_STOCK);
      expect(traced).toEqual(plain);
      // Mixed both ways: same error.
      expect(await errorOf(plainClient.send(S.fail, { id: 1 }))).toEqual(plain);
      expect(await errorOf(client.send(S.plainFail, { id: 1 }))).toEqual(plain);
    });

    it('a thrown TypeError: CONSUMER ERROR with error.type TypeError, caller gets Nest\'s generic error as without tracing', async () => {
      const traced = await errorOf(client.send(S.crash, {}));
      const { spans, span: consumer } = await waitForOne(`process ${S.crash}`, SpanKind.CONSUMER);
      expectSpan(consumer, spans).toHaveStatus(SpanStatusCode.ERROR, 'boom').toHaveAttributes({ 'error.type': 'TypeError' });
      expect(exceptionEvents(consumer)).toHaveLength(1);
      const producer = await spanRecorder.waitForSpan({ kind: SpanKind.PRODUCER });
      expect(producer.status.code).toBe(SpanStatusCode.ERROR);
      const plain = await errorOf(plainClient.send(S.plainCrash, {}));
      expect(plain).toEqual({ status: 'error', message: 'Internal server error' });
      expect(traced).toEqual(plain);
    });

    it(`rxjs timeout() before the reply: the PRODUCER ends ERROR "${SEND_CANCELLED}", the CONSUMER still ends OK`, async () => {
      const error = await errorOf(client.send(S.slow, {}).pipe(timeout(100)));
      expect((error as Error).name).toBe('TimeoutError');
      const producer = getSpan(spanRecorder.getFinishedSpans(), { name: `send ${S.slow}`, kind: SpanKind.PRODUCER });
      expectSpan(producer).toHaveStatus(SpanStatusCode.ERROR).toHaveAttributes({ 'error.type': SEND_CANCELLED });
      const { spans, span: consumer } = await waitForOne(`process ${S.slow}`, SpanKind.CONSUMER);
      expectSpan(consumer, spans).toHaveParent(producer).toHaveStatus(SpanStatusCode.UNSET);
    });

    it('a client closed with a request in flight: the caller sees what it sees with ClientNats, and the PRODUCER ends ERROR', async () => {
      /** What the caller of a request gets when its client is closed 100 ms after sending it. */
      const closedUnder = async (closing: ClientNats): Promise<unknown> => {
        await closing.connect();
        const reply = firstValueFrom(closing.send(S.slow, {})).catch((err: unknown) => err);
        await sleep(100);
        await closing.close();
        return Promise.race([reply, sleep(200, 'still pending')]);
      };
      const plain = await closedUnder(new ClientNats({ servers: SERVERS }));
      const traced = await closedUnder(new OtelClientNats({ servers: SERVERS }));
      const producer = getSpan(spanRecorder.getFinishedSpans(), { name: `send ${S.slow}`, kind: SpanKind.PRODUCER });
      if (NEST_MAJOR >= 12) {
        // Nest 12 fails the requests still waiting when it closes.
        expect(plain).toEqual(new Error('Connection closed'));
        expectSpan(producer).toHaveStatus(SpanStatusCode.ERROR, 'Connection closed').toHaveAttributes({ 'error.type': 'Error' });
      } else {
        // Nest 11 leaves them pending for good; the span ends anyway, when the client closes.
        expect(plain).toBe('still pending');
        expectSpan(producer).toHaveStatus(SpanStatusCode.ERROR).toHaveAttributes({ 'error.type': SEND_CLIENT_CLOSED });
      }
      expect(traced).toEqual(plain);
      // The handlers finish anyway; wait for them so that their spans do not land in the next test.
      await spanRecorder.waitForSpans((all) => findSpans(all, { name: `process ${S.slow}`, kind: SpanKind.CONSUMER }).length === 2);
    });

    it('broker unreachable: send and emit fail as with ClientNats, and their PRODUCER spans end ERROR', async () => {
      const options = { servers: ['nats://127.0.0.1:1'], maxReconnectAttempts: 0, timeout: 2000 };
      const traced = new OtelClientNats(options);
      const plain = new ClientNats(options);
      try {
        const tracedSend = await errorOf(traced.send(S.get, { id: 1 }));
        const plainSend = await errorOf(plain.send(S.get, { id: 1 }));
        expect(tracedSend).toBeInstanceOf(Error);
        expect(tracedSend?.constructor).toBe(plainSend?.constructor);
        expect((tracedSend as Error).message).toBe((plainSend as Error).message);
        const tracedEmit = await errorOf(traced.emit(S.created, { id: 1 }));
        expect((tracedEmit as Error).message).toBe((plainSend as Error).message);
        const spans = await spanRecorder.waitForSpans((all) => findSpans(all, { kind: SpanKind.PRODUCER }).length === 2);
        for (const [name, type] of [[S.get, 'message'], [S.created, 'event']] as const) {
          expectSpan(getSpan(spans, { name: `send ${name}`, kind: SpanKind.PRODUCER }), spans)
            .toHaveStatus(SpanStatusCode.ERROR)
            .toHaveAttributes({ 'nestjs.handler.type': type, 'error.type': (tracedSend as Error).constructor.name });
        }
      } finally {
        await traced.close();
        await plain.close();
      }
    });
  });

  describe('bad trace headers from the network', () => {
    const valid = remoteParent();
    const other = remoteParent();
    const cases: Array<[string, (h: MsgHdrs) => void]> = [
      ['no headers at all', () => undefined],
      ['a garbage traceparent', (h) => h.set('traceparent', 'garbage')],
      ['an all-zero trace id', (h) => h.set('traceparent', `00-${'0'.repeat(32)}-${valid.spanId}-01`)],
      [
        'an oversized traceparent (>8 KB, of a future version the propagator would accept)',
        (h) => h.set('traceparent', `cc-${valid.traceId}-${valid.spanId}-01-${'x'.repeat(9000)}`),
      ],
      [
        'an oversized baggage (>8 KB in all, each entry small enough for the propagator)',
        (h) => h.set('baggage', ['tenant.id=acme', ...['a', 'b', 'c'].map((key) => `${key}=${'x'.repeat(3000)}`)].join(',')),
      ],
      [
        'two traceparent values',
        (h) => {
          h.append('traceparent', traceparentOf(valid));
          h.append('traceparent', traceparentOf(other));
        },
      ],
      ['a non-W3C header (uber-trace-id)', (h) => h.set('uber-trace-id', `${valid.traceId}:${valid.spanId}:0:1`)],
      ['a garbage tracestate and baggage without a traceparent', (h) => {
        h.set('tracestate', '==,,;;');
        h.set('baggage', '=;=;,,%%%');
      }],
    ];

    it.each(cases)('%s: the handler runs under a new root trace and nothing throws', async (_name, write) => {
      const outgoing = natsHeaders();
      write(outgoing);
      const id = randomUUID();
      const reply = await raw.request(S.echo, nestRequest(S.echo, { id }, id), {
        headers: outgoing.keys().length > 0 ? outgoing : undefined,
        timeout: 5000,
      });
      const { spans, span: consumer } = await waitForOne(`process ${S.echo}`, SpanKind.CONSUMER);
      expectSpan(consumer, spans).toBeRoot().toHaveStatus(SpanStatusCode.UNSET);
      expect(consumer.links).toEqual([]);
      expect([valid.traceId, other.traceId]).not.toContain(consumer.spanContext().traceId);
      const body = reply.json<{ id: string; response: HandlerView }>();
      expect(body.id).toBe(id);
      expect(body.response).toMatchObject({ data: { id }, traceId: consumer.spanContext().traceId });
      expect(body.response.tenant).toBeUndefined();
    });
  });

  it('a message whose header block the driver cannot decode (a name with a space, from a raw peer) is logged, not an unhandled rejection; the server goes on', async () => {
    // Nest 11 calls handleMessage from the subscription callback without a catch: this was an
    // unhandled rejection that ended the process (vitest fails the run on one). Nest 12 logs it.
    const rawPeer = await RawNatsClient.connect('127.0.0.1', Number(new URL(SERVERS[0]!).port));
    try {
      const id = randomUUID();
      rawPeer.publishWithHeaders(
        S.echo,
        undefined,
        Buffer.from(`bad name: x\r\ntraceparent: ${traceparentOf(remoteParent())}\r\n`),
        Buffer.from(JSON.stringify(nestRequest(S.echo, { id }, id))),
      );
      await rawPeer.ping();
      await new Promise((resolve) => setTimeout(resolve, 50));
    } finally {
      rawPeer.close();
    }
    const parent = remoteParent();
    const reply = await context.with(inRemoteParent(parent), () => firstValueFrom(client.send<HandlerView>(S.echo, { after: true })));
    expect(reply.traceId).toBe(parent.traceId);
  });

  it('200 concurrent request-replies with distinct trace ids: every CONSUMER is in its own caller\'s trace', async () => {
    const parents = Array.from({ length: 200 }, remoteParent);
    const replies = await Promise.all(
      parents.map((parent, index) =>
        context.with(inRemoteParent(parent), () => firstValueFrom(client.send<HandlerView>(S.echo, { index }))),
      ),
    );
    const spans = await spanRecorder.waitForSpans(
      (all) => findSpans(all, { kind: SpanKind.CONSUMER }).length === 200 && findSpans(all, { kind: SpanKind.PRODUCER }).length === 200,
      { timeoutMs: 10_000 },
    );
    parents.forEach((parent, index) => {
      expect(replies[index]!.data).toEqual({ index });
      expect(replies[index]!.traceId).toBe(parent.traceId);
      const inTrace = traceOf(spans, parent);
      expect(inTrace).toHaveLength(2);
      const producer = getSpan(inTrace, { kind: SpanKind.PRODUCER });
      const consumer = getSpan(inTrace, { kind: SpanKind.CONSUMER });
      expectSpan(producer, spans).toHaveParent(parent);
      expectSpan(consumer, spans).toHaveParent(producer);
      expect(replies[index]!.spanId).toBe(consumer.spanContext().spanId);
    });
  });

  describe('mixing traced and untraced Nest services', () => {
    it('OtelClientNats -> plain ServerNats: the reply is intact; the plain handler sees our traceparent header', async () => {
      const reply = await firstValueFrom(client.send<{ data: unknown; traceparent: string | null }>(S.plainEcho, { a: [1, 2] }));
      const producer = await spanRecorder.waitForSpan({ name: `send ${S.plainEcho}`, kind: SpanKind.PRODUCER });
      expect(reply).toEqual({ data: { a: [1, 2] }, traceparent: traceparentOf(producer) });
      expectSpan(producer).toHaveStatus(SpanStatusCode.UNSET);
      expect(findSpans(spanRecorder.getFinishedSpans(), { kind: SpanKind.CONSUMER })).toEqual([]);
    });

    it('plain ClientNats -> OtelServerNats: request-reply and events work; the CONSUMER starts a new trace', async () => {
      const reply = await firstValueFrom(plainClient.send<HandlerView & { id: string }>(S.get, { id: 'p-1' }));
      const { spans, span: consumer } = await waitForOne(`process ${S.get}`, SpanKind.CONSUMER);
      expect(reply).toEqual({ id: 'p-1', traceId: consumer.spanContext().traceId, spanId: consumer.spanContext().spanId });
      expectSpan(consumer, spans).toBeRoot();

      await lastValueFrom(plainClient.emit(S.created, { id: 'p-2' }), { defaultValue: undefined });
      const event = await spanRecorder.waitForSpan({ name: `process ${S.created}`, kind: SpanKind.CONSUMER });
      expectSpan(event).toBeRoot();
      expect(event.links).toEqual([]);
      expect(seenEvents.get(S.created)?.[0]?.data).toEqual({ id: 'p-2' });
    });
  });
});
