import 'reflect-metadata';
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Body, Controller, Get, Inject, Module, Param, Post, type INestApplication, type INestMicroservice } from '@nestjs/common';
import {
  ClientRedis,
  ClientsModule,
  Ctx,
  EventPattern,
  MessagePattern,
  Payload,
  RedisContext,
  RpcException,
  ServerRedis,
  type ClientProxy,
} from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type SpanContext } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { Redis } from 'ioredis';
import { firstValueFrom, lastValueFrom, map, take, timeout, timer, toArray, type Observable } from 'rxjs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Baggage, SEND_CANCELLED, TraceService, Traced } from '../lib/index.js';
import { OtelTestingModule, expectSpan, findSpans, getSpan, spanRecorder, traceOf } from '../lib/testing/index.js';
import { OtelClientRedis, OtelServerRedis, otelRedis, redisMetadataGetter, REPLY_CONTEXT_KEY } from '../lib/transports/redis/index.js';
import { SEND_CLIENT_CLOSED } from '../lib/transports/shared/producer-tracer.js';
import { closeFailsPendingRequests } from '../lib/nest-compat.js';
import { plainRequest } from './support/http-request.js';
import { NEST_MAJOR } from './support/nest-version.js';

const HOST = '127.0.0.1';
const PORT = 6379;
const REDIS = { host: HOST, port: PORT };
// Unique channels: other runs on the same server never see these messages.
const RUN = `otel-nest-e2e.redis.${randomUUID().slice(0, 8)}`;
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
  wildGet: `${RUN}.wild.*.get`,
  wildCreated: `${RUN}.wild.*.created`,
  plainEcho: `${RUN}.plain.echo`,
  plainFail: `${RUN}.plain.fail`,
};
const ORDERS_CLIENT = 'ORDERS_CLIENT';

interface HandlerView {
  traceId?: string;
  spanId?: string;
  tenant?: string;
  data?: unknown;
  channel?: string;
}

/** What each event handler saw, by pattern. */
const seenEvents = new Map<string, HandlerView[]>();
function sawEvent(pattern: string, view: HandlerView): void {
  seenEvents.set(pattern, [...(seenEvents.get(pattern) ?? []), view]);
}

const OUT_OF_STOCK = { name: 'OutOfStockError', message: 'out of stock', sku: 'sku-9' };

@Controller()
class OrdersController {
  constructor(private readonly traces: TraceService) {}

  @MessagePattern(S.get)
  get(@Payload() data: { id: string }, @Baggage('tenant.id') tenant?: string): HandlerView & { id: string } {
    return { id: data.id, tenant, traceId: this.traces.getTraceId(), spanId: this.traces.getSpanId() };
  }

  @MessagePattern(S.echo)
  echo(@Payload() data: unknown, @Ctx() ctx: RedisContext): HandlerView {
    return {
      data,
      channel: ctx.getChannel(),
      tenant: this.traces.getBaggage('tenant.id'),
      traceId: this.traces.getTraceId(),
      spanId: this.traces.getSpanId(),
    };
  }

  @MessagePattern(S.fail)
  fail(): never {
    throw new RpcException(OUT_OF_STOCK);
  }

  @MessagePattern(S.crash)
  crash(): never {
    throw new TypeError('boom');
  }

  @MessagePattern(S.slow)
  async slow(): Promise<string> {
    await sleep(400);
    return 'late';
  }

  /** Three replies, 20 ms apart, each naming the span it was produced in. */
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

/** Handlers under glob patterns, on a server with `wildcards: true` (PSUBSCRIBE). */
@Controller()
class WildController {
  constructor(private readonly traces: TraceService) {}

  @MessagePattern(S.wildGet)
  get(@Payload() data: unknown, @Ctx() ctx: RedisContext): HandlerView {
    return { data, channel: ctx.getChannel(), traceId: this.traces.getTraceId(), spanId: this.traces.getSpanId() };
  }

  @EventPattern(S.wildCreated)
  // `unknown`: Nest 12 types an event handler's further parameters so.
  created(@Payload() data: unknown, @Ctx() ctx: unknown): void {
    const channel = (ctx as RedisContext).getChannel();
    sawEvent(S.wildCreated, { data, channel, traceId: this.traces.getTraceId(), spanId: this.traces.getSpanId() });
  }
}

/** On Nest's own ServerRedis: what a plain handler sees of our packets. */
@Controller()
class PlainController {
  @MessagePattern(S.plainEcho)
  echo(@Payload() data: unknown, @Ctx() ctx: RedisContext): { data: unknown; metadata: unknown } {
    return { data, metadata: (ctx as { getMetadata?: () => unknown }).getMetadata?.() ?? null };
  }

  @MessagePattern(S.plainFail)
  fail(): never {
    throw new RpcException(OUT_OF_STOCK);
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

interface WirePacket {
  pattern?: unknown;
  data?: unknown;
  id?: unknown;
  metadata?: Record<string, unknown>;
  response?: unknown;
  err?: unknown;
  isDisposed?: boolean;
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

async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) {
      return value;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await sleep(10);
  }
}

async function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function errorOf(source: Observable<unknown>): Promise<unknown> {
  return firstValueFrom(source).then(
    (value) => ({ unexpectedValue: value }),
    (error: unknown) => error,
  );
}

describe('Redis: OtelServerRedis and OtelClientRedis on the real server', () => {
  let service: INestMicroservice;
  let auditService: INestMicroservice;
  let wildService: INestMicroservice;
  let plainService: INestMicroservice;
  let gateway: INestApplication;
  let gatewayUrl: string;
  let client: ClientProxy;
  let plainClient: ClientRedis;
  /** A plain ioredis peer: one connection to publish, one subscribed (sniffers, reply channels). */
  let pub: Redis;
  let sub: Redis;
  const sniffed = new Map<string, string[]>();

  /** The server's SUBSCRIBE/PSUBSCRIBE commands are sent, not awaited, by Nest: a PING on the same connection comes back after them. */
  async function subscribed(server: ServerRedis): Promise<void> {
    const [, subscriber] = server.unwrap<[Redis, Redis]>();
    await subscriber.ping();
  }

  /** Collects every message published on `channel` (as the raw string on the wire). */
  async function sniff(channel: string): Promise<string[]> {
    const messages: string[] = [];
    sniffed.set(channel, messages);
    await sub.subscribe(channel);
    return messages;
  }

  beforeAll(async () => {
    pub = new Redis(REDIS);
    sub = new Redis(REDIS);
    sub.on('message', (channel: string, message: string) => sniffed.get(channel)?.push(message));

    @Module({ imports: [OtelTestingModule.forRoot({ serviceName: 'orders' })], controllers: [OrdersController] })
    class OrdersModule {}
    const serviceServer = new OtelServerRedis(REDIS);
    service = (await Test.createTestingModule({ imports: [OrdersModule] }).compile()).createNestMicroservice({ strategy: serviceServer });
    await service.listen();
    await subscribed(serviceServer);

    @Module({ imports: [OtelTestingModule.forRoot({ serviceName: 'audit' })], controllers: [AuditController] })
    class AuditModule {}
    // The short form, with the server option.
    const auditStrategy = otelRedis({ ...REDIS, otel: { eventConsume: 'parent' } });
    expect(auditStrategy.strategy).toBeInstanceOf(OtelServerRedis);
    auditService = (await Test.createTestingModule({ imports: [AuditModule] }).compile()).createNestMicroservice(auditStrategy);
    await auditService.listen();
    await subscribed(auditStrategy.strategy as OtelServerRedis);

    @Module({ imports: [OtelTestingModule.forRoot({ serviceName: 'wild' })], controllers: [WildController] })
    class WildModule {}
    const wildServer = new OtelServerRedis({ ...REDIS, wildcards: true });
    wildService = (await Test.createTestingModule({ imports: [WildModule] }).compile()).createNestMicroservice({ strategy: wildServer });
    await wildService.listen();
    await subscribed(wildServer);

    // Nest's own transport, no otel-nest at all.
    @Module({ controllers: [PlainController] })
    class PlainModule {}
    const plainServer = new ServerRedis(REDIS);
    plainService = (await Test.createTestingModule({ imports: [PlainModule] }).compile()).createNestMicroservice({ strategy: plainServer });
    await plainService.listen();
    await subscribed(plainServer);

    @Module({
      imports: [
        OtelTestingModule.forRoot({ serviceName: 'gateway' }),
        ClientsModule.register([{ name: ORDERS_CLIENT, customClass: OtelClientRedis, options: REDIS }]),
      ],
      controllers: [GatewayController],
    })
    class GatewayModule {}
    gateway = (await Test.createTestingModule({ imports: [GatewayModule] }).compile()).createNestApplication();
    await gateway.listen(0, HOST);
    gatewayUrl = (await gateway.getUrl()).replace('[::1]', HOST);
    client = gateway.get<ClientProxy>(ORDERS_CLIENT);
    expect(client).toBeInstanceOf(OtelClientRedis);

    plainClient = new ClientRedis(REDIS);
    await plainClient.connect();
  });

  afterAll(async () => {
    await plainClient?.close();
    await gateway?.close();
    await plainService?.close();
    await wildService?.close();
    await auditService?.close();
    await service?.close();
    pub?.disconnect();
    sub?.disconnect();
  });

  beforeEach(async () => {
    spanRecorder.reset();
    seenEvents.clear();
    if (sniffed.size > 0) {
      await sub.unsubscribe(...sniffed.keys());
      sniffed.clear();
    }
  });

  /** Publishes a Nest JSON request as a plain ioredis peer would, and waits for its reply on `<channel>.reply`. */
  async function rawRequest(channel: string, packet: WirePacket | string): Promise<WirePacket> {
    const replies = await sniff(`${channel}.reply`);
    const id = typeof packet === 'string' ? undefined : packet.id;
    await pub.publish(channel, typeof packet === 'string' ? packet : JSON.stringify(packet));
    const reply = await until(`the reply to ${String(id)}`, () => replies.map((text) => JSON.parse(text) as WirePacket).find((r) => r.id === id));
    return reply;
  }

  describe('request-reply through an HTTP gateway', () => {
    it('SERVER -> PRODUCER send -> CONSUMER process is one trace, with attributes and baggage; context in the packet metadata on the wire, both ways', async () => {
      const parent = remoteParent();
      const requests = await sniff(S.get);
      const replies = await sniff(`${S.get}.reply`);

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
      expect(traceOf(spans, parent).map((span) => span.name)).toEqual(['GET /gateway/orders/:id', `send ${S.get}`, `process ${S.get}`]);
      expect(body).toEqual({ id: 'o-42', tenant: 'acme', traceId: parent.traceId, spanId: consumer.spanContext().spanId });

      // On the wire: Nest's packet, `data` untouched, the context in `metadata`.
      expect(requests).toHaveLength(1);
      const request = JSON.parse(requests[0]!) as WirePacket;
      expect(Object.keys(request).sort()).toEqual(['data', 'id', 'metadata', 'pattern']);
      expect(request).toMatchObject({ pattern: S.get, data: { id: 'o-42' } });
      expect(request.metadata).toEqual({ traceparent: traceparentOf(producer), baggage: 'tenant.id=acme', [REPLY_CONTEXT_KEY]: '1' });

      const attributes = {
        'messaging.system': 'redis',
        'messaging.destination.name': S.get,
        'messaging.message.id': request.id,
        'messaging.message.conversation_id': request.id,
        'server.address': HOST,
        'server.port': PORT,
        'nestjs.pattern': S.get,
        'nestjs.handler.type': 'message',
      };
      expectSpan(producer, spans).toHaveAttributes({ ...attributes, 'messaging.operation.name': 'send', 'messaging.operation.type': 'send' });
      expectSpan(consumer, spans).toHaveAttributes({
        ...attributes,
        'messaging.operation.name': 'process',
        'messaging.operation.type': 'process',
        'messaging.message.body.size': Buffer.byteLength(requests[0]!),
        'nestjs.controller': 'OrdersController',
        'nestjs.handler': 'get',
      });
      expectSpan(consumer, spans).toNotHaveAttribute('messaging.destination.template');

      // The reply carries the CONSUMER span's context, in the reply packet's metadata.
      const reply = await until('the reply on the wire', () => replies.map((text) => JSON.parse(text) as WirePacket).find((r) => r.id === request.id));
      expect(reply).toEqual({ id: request.id, response: body, isDisposed: true, metadata: { traceparent: traceparentOf(consumer), baggage: 'tenant.id=acme' } });
    });

    it("the reply reaches the caller's code in the caller's context, not in the one the connection was opened in", async () => {
      await plainRequest(`${gatewayUrl}/gateway/orders/warm-up`, { headers: { traceparent: traceparentOf(remoteParent()) } });
      for (const parent of [remoteParent(), remoteParent()]) {
        const response = await plainRequest(`${gatewayUrl}/gateway/orders/o-1/caller`, { headers: { traceparent: traceparentOf(parent) } });
        expect(response.json()).toEqual({ handlerTraceId: parent.traceId, callerTraceId: parent.traceId });
      }
    });

    it('a streamed reply: every value comes from inside the CONSUMER span; the PRODUCER ends with the last reply', async () => {
      const values = await lastValueFrom(client.send<string>(S.stream, {}).pipe(toArray()));
      const { spans, span: consumer } = await waitForOne(`process ${S.stream}`, SpanKind.CONSUMER);
      const producer = getSpan(spans, { name: `send ${S.stream}`, kind: SpanKind.PRODUCER });
      expect(values).toEqual(Array(3).fill(consumer.spanContext().spanId));
      expectSpan(consumer, spans).toHaveParent(producer).toHaveStatus(SpanStatusCode.UNSET);
      const nanos = ([seconds, fraction]: [number, number]): bigint => BigInt(seconds) * 1_000_000_000n + BigInt(fraction);
      // The CONSUMER covers the whole stream on Nest 11 too, which runs the end hook at the first reply's publish.
      expect(nanos(consumer.duration)).toBeGreaterThanOrEqual(35_000_000n);
    });
  });

  describe('events', () => {
    it('emit -> @EventPattern: by default the CONSUMER starts a new trace LINKED to the PRODUCER, baggage kept; no id, no reply request on the wire', async () => {
      const parent = remoteParent();
      const events = await sniff(S.created);
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
        .toHaveAttributes({ 'nestjs.handler.type': 'event', 'messaging.destination.name': S.created, 'messaging.system': 'redis' })
        .toNotHaveAttribute('messaging.message.id');
      expectSpan(consumer, spans)
        .toBeRoot()
        .toLinkTo(producer)
        .toHaveAttributes({ 'nestjs.handler.type': 'event', 'nestjs.handler': 'created', 'messaging.system': 'redis' })
        .toNotHaveAttribute('messaging.message.conversation_id');
      expect(seenEvents.get(S.created)).toEqual([
        { data: { id: 'o-7' }, tenant: 'acme', traceId: consumer.spanContext().traceId, spanId: consumer.spanContext().spanId },
      ]);
      await until('the event on the wire', () => (events.length > 0 ? true : undefined));
      expect(JSON.parse(events[0]!)).toEqual({
        pattern: S.created,
        data: { id: 'o-7' },
        metadata: { traceparent: traceparentOf(producer), baggage: 'tenant.id=acme' },
      });
      expect(consumer.attributes['messaging.message.body.size']).toBe(Buffer.byteLength(events[0]!));
    });

    it.each([
      ['@Traced({ consume: "parent" })', S.createdTraced],
      ['@EventPattern(p, { otelConsume: "parent" })', S.createdExtras],
      ['the server option otel.eventConsume: "parent"', S.audit],
    ])('%s makes the event CONSUMER a child of the PRODUCER', async (_how, channel) => {
      await lastValueFrom(client.emit(channel, { id: 'o-8' }), { defaultValue: undefined });
      const { spans, span: consumer } = await waitForOne(`process ${channel}`, SpanKind.CONSUMER);
      const producer = getSpan(spans, { name: `send ${channel}`, kind: SpanKind.PRODUCER });
      expectSpan(consumer, spans).toHaveParent(producer);
      expect(consumer.links).toEqual([]);
      expect(seenEvents.get(channel)?.map((view) => view.traceId)).toEqual([producer.spanContext().traceId]);
    });
  });

  describe('wildcards: true (PSUBSCRIBE): handlers under glob patterns', () => {
    it('an event on a channel matching a glob: the span is named after the pattern (the template), the name is the channel', async () => {
      const channel = `${RUN}.wild.7.created`;
      await lastValueFrom(client.emit(channel, { n: 7 }), { defaultValue: undefined });
      const { spans, span: consumer } = await waitForOne(`process ${S.wildCreated}`, SpanKind.CONSUMER);
      const producer = getSpan(spans, { name: `send ${channel}`, kind: SpanKind.PRODUCER });
      expectSpan(consumer, spans)
        .toBeRoot()
        .toLinkTo(producer)
        .toHaveAttributes({
          'messaging.destination.name': channel,
          'messaging.destination.template': S.wildCreated,
          'nestjs.pattern': S.wildCreated,
          'nestjs.handler': 'created',
        });
      expectSpan(producer, spans).toNotHaveAttribute('messaging.destination.template');
      expect(seenEvents.get(S.wildCreated)).toEqual([
        { data: { n: 7 }, channel, traceId: consumer.spanContext().traceId, spanId: consumer.spanContext().spanId },
      ]);
    });

    // Nest 11 publishes the reply of a glob handler on `<pattern>.reply` (`…wild.*.get.reply`), where
    // no client listens: request-reply under a glob works from Nest 12 on, traced or not.
    it.runIf(NEST_MAJOR >= 12)('a request on a channel matching a glob: one trace, the CONSUMER named after the template', async () => {
      const channel = `${RUN}.wild.42.get`;
      const parent = remoteParent();
      const reply = await context.with(inRemoteParent(parent), () => firstValueFrom(client.send<HandlerView>(channel, { n: 42 })));
      const { spans, span: consumer } = await waitForOne(`process ${S.wildGet}`, SpanKind.CONSUMER);
      const producer = getSpan(spans, { name: `send ${channel}`, kind: SpanKind.PRODUCER });
      expectSpan(producer, spans).toHaveParent(parent);
      expectSpan(consumer, spans)
        .toHaveParent(producer)
        .toHaveAttributes({ 'messaging.destination.name': channel, 'messaging.destination.template': S.wildGet, 'nestjs.handler': 'get' });
      expect(reply).toEqual({ data: { n: 42 }, channel, traceId: parent.traceId, spanId: consumer.spanContext().spanId });
    });
  });

  describe('interop with plain ioredis peers', () => {
    it("a plain publisher of Nest's JSON with metadata.traceparent is continued by a Nest handler, and gets the consumer's context back when it asks", async () => {
      const parent = remoteParent();
      const metadata: Record<string, string> = { [REPLY_CONTEXT_KEY]: '1' };
      propagation.inject(
        propagation.setBaggage(inRemoteParent(parent), propagation.createBaggage({ 'tenant.id': { value: 'globex' } })),
        metadata,
      );
      const reply = await rawRequest(S.echo, { pattern: S.echo, data: { from: 'plain' }, id: 'plain-1', metadata });
      const { spans, span: consumer } = await waitForOne(`process ${S.echo}`, SpanKind.CONSUMER);
      expectSpan(consumer, spans)
        .toHaveParent(parent)
        .toHaveAttributes({ 'messaging.message.id': 'plain-1', 'messaging.message.conversation_id': 'plain-1', 'nestjs.handler': 'echo' });
      expect(reply).toEqual({
        id: 'plain-1',
        isDisposed: true,
        response: { data: { from: 'plain' }, channel: S.echo, tenant: 'globex', traceId: parent.traceId, spanId: consumer.spanContext().spanId },
        metadata: { traceparent: traceparentOf(consumer), baggage: 'tenant.id=globex' },
      });
      // The plain peer reads the reply's context with the same propagator.
      const replyContext = propagation.extract(ROOT_CONTEXT, reply.metadata);
      expect(trace.getSpanContext(replyContext)).toMatchObject({ traceId: parent.traceId, spanId: consumer.spanContext().spanId });
    });

    it('a plain request that does not ask for the reply context gets a reply exactly as Nest sends it', async () => {
      const parent = remoteParent();
      const reply = await rawRequest(S.echo, { pattern: S.echo, data: { n: 1 }, id: 'plain-2', metadata: { traceparent: traceparentOf(parent) } });
      const { span: consumer } = await waitForOne(`process ${S.echo}`, SpanKind.CONSUMER);
      expect(reply).toEqual({ id: 'plain-2', isDisposed: true, response: { data: { n: 1 }, channel: S.echo, traceId: parent.traceId, spanId: consumer.spanContext().spanId } });
    });

    it('a plain event publisher is linked (default) by a Nest event handler', async () => {
      const parent = remoteParent();
      await pub.publish(S.created, JSON.stringify({ pattern: S.created, data: { from: 'plain' }, metadata: { traceparent: traceparentOf(parent) } }));
      const { spans, span: consumer } = await waitForOne(`process ${S.created}`, SpanKind.CONSUMER);
      expectSpan(consumer, spans).toBeRoot().toLinkTo(parent);
      expect(seenEvents.get(S.created)?.[0]?.data).toEqual({ from: 'plain' });
    });

    it("OtelClientRedis.emit reaches a plain subscriber with Nest's packet and a metadata.traceparent naming the PRODUCER span", async () => {
      const received = await sniff(S.wire);
      await lastValueFrom(client.emit(S.wire, { n: 1, text: 'é' }), { defaultValue: undefined });
      const producer = await spanRecorder.waitForSpan({ name: `send ${S.wire}`, kind: SpanKind.PRODUCER });
      await until('the event on the wire', () => (received.length > 0 ? true : undefined));
      expect(received).toHaveLength(1);
      expect(received[0]).toBe(JSON.stringify({ pattern: S.wire, data: { n: 1, text: 'é' }, metadata: { traceparent: traceparentOf(producer) } }));
      // The peer continues the trace with the plain API (and with the exported getter).
      const packet = JSON.parse(received[0]!) as WirePacket;
      expect(trace.getSpanContext(propagation.extract(ROOT_CONTEXT, packet.metadata))?.spanId).toBe(producer.spanContext().spanId);
      expect(trace.getSpanContext(propagation.extract(ROOT_CONTEXT, packet.metadata, redisMetadataGetter))?.spanId).toBe(producer.spanContext().spanId);
    });

    it("OtelClientRedis.send reaches a plain subscriber as Nest's request packet, metadata.traceparent naming the PRODUCER span", async () => {
      const channel = `${RUN}.wire.request`;
      const received = await sniff(channel);
      const sent = firstValueFrom(client.send(channel, { q: 1 }).pipe(timeout(300))).catch(() => 'no reply');
      await until('the request on the wire', () => (received.length > 0 ? true : undefined));
      const packet = JSON.parse(received[0]!) as WirePacket;
      expect(await sent).toBe('no reply');
      const producer = await spanRecorder.waitForSpan({ name: `send ${channel}`, kind: SpanKind.PRODUCER });
      expect(packet).toEqual({
        pattern: channel,
        data: { q: 1 },
        metadata: { traceparent: traceparentOf(producer), [REPLY_CONTEXT_KEY]: '1' },
        id: producer.attributes['messaging.message.id'],
      });
    });

    it.runIf(NEST_MAJOR >= 12)("metadata set by the application's own dispatch hook (Nest 12) is kept; a stale traceparent in it is replaced", async () => {
      const own = new OtelClientRedis(REDIS);
      const ownMetadata = { tenant: 'initech', Traceparent: traceparentOf(remoteParent()) };
      (own as unknown as { setOnDispatchHook(hook: (packet: { metadata?: unknown }) => void): void }).setOnDispatchHook((packet) => {
        packet.metadata = ownMetadata;
      });
      try {
        const requests = await sniff(S.plainEcho);
        const reply = await firstValueFrom(own.send<{ data: unknown; metadata: unknown }>(S.plainEcho, { hooked: true }));
        const producer = await spanRecorder.waitForSpan({ name: `send ${S.plainEcho}`, kind: SpanKind.PRODUCER });
        const expected = { tenant: 'initech', traceparent: traceparentOf(producer), [REPLY_CONTEXT_KEY]: '1' };
        // What Nest's plain handler reads from RedisContext#getMetadata(), and what went on the wire.
        expect(reply).toEqual({ data: { hooked: true }, metadata: expected });
        expect((JSON.parse(requests[0]!) as WirePacket).metadata).toEqual(expected);
        // The application's object is not changed.
        expect(Object.keys(ownMetadata)).toEqual(['tenant', 'Traceparent']);
      } finally {
        await own.close();
      }
    });
  });

  describe('mixing traced and untraced Nest services', () => {
    it('OtelClientRedis -> plain ServerRedis: the reply is intact; the plain handler sees our metadata (RedisContext#getMetadata on Nest 12)', async () => {
      const reply = await firstValueFrom(client.send<{ data: unknown; metadata: unknown }>(S.plainEcho, { a: [1, 2] }));
      const producer = await spanRecorder.waitForSpan({ name: `send ${S.plainEcho}`, kind: SpanKind.PRODUCER });
      expect(reply).toEqual({
        data: { a: [1, 2] },
        metadata: NEST_MAJOR >= 12 ? { traceparent: traceparentOf(producer), [REPLY_CONTEXT_KEY]: '1' } : null,
      });
      expectSpan(producer).toHaveStatus(SpanStatusCode.UNSET);
      expect(findSpans(spanRecorder.getFinishedSpans(), { kind: SpanKind.CONSUMER })).toEqual([]);
      // Nest's error reply, through our client, is what Nest's own client gets.
      expect(await errorOf(client.send(S.plainFail, {}))).toEqual(await errorOf(plainClient.send(S.plainFail, {})));
    });

    it('plain ClientRedis -> OtelServerRedis: replies are exactly what Nest sends (no metadata), events work; the CONSUMER starts a new trace', async () => {
      const replies = await sniff(`${S.get}.reply`);
      const reply = await firstValueFrom(plainClient.send<HandlerView & { id: string }>(S.get, { id: 'p-1' }));
      const { spans, span: consumer } = await waitForOne(`process ${S.get}`, SpanKind.CONSUMER);
      // Nest 12's client hands a reply with any extra key to the caller whole: this equality is what
      // asking for the reply context protects.
      expect(reply).toEqual({ id: 'p-1', traceId: consumer.spanContext().traceId, spanId: consumer.spanContext().spanId });
      expectSpan(consumer, spans).toBeRoot();
      await until('the reply on the wire', () => (replies.length > 0 ? true : undefined));
      expect(Object.keys(JSON.parse(replies[0]!) as object).sort()).toEqual(['id', 'isDisposed', 'response']);

      await lastValueFrom(plainClient.emit(S.created, { id: 'p-2' }), { defaultValue: undefined });
      const event = await spanRecorder.waitForSpan({ name: `process ${S.created}`, kind: SpanKind.CONSUMER });
      expectSpan(event).toBeRoot();
      expect(event.links).toEqual([]);
      expect(seenEvents.get(S.created)?.[0]?.data).toEqual({ id: 'p-2' });
    });
  });

  describe('errors, timeouts, Redis down', () => {
    it('RpcException: CONSUMER ERROR recorded once, PRODUCER ERROR, and the caller gets what plain Nest gives', async () => {
      const traced = await errorOf(client.send(S.fail, { id: 1 }));
      const spans = await spanRecorder.waitForSpans(
        (all) => findSpans(all, { kind: SpanKind.PRODUCER }).length === 1 && findSpans(all, { kind: SpanKind.CONSUMER }).length === 1,
      );
      const producer = getSpan(spans, { kind: SpanKind.PRODUCER });
      const consumer = getSpan(spans, { kind: SpanKind.CONSUMER });
      expectSpan(consumer, spans)
        .toHaveParent(producer)
        .toHaveStatus(SpanStatusCode.ERROR)
        .toHaveAttributes({ 'error.type': 'RpcException', 'nestjs.handler': 'fail' });
      expect(exceptionEvents(consumer)).toHaveLength(1);
      expectSpan(producer, spans).toHaveStatus(SpanStatusCode.ERROR).toHaveAttributes({ 'error.type': 'OutOfStockError' });
      expect(exceptionEvents(producer)).toHaveLength(1);
      expect(traced).toEqual(OUT_OF_STOCK);
      expect(await errorOf(plainClient.send(S.plainFail, {}))).toEqual(OUT_OF_STOCK);
      expect(await errorOf(plainClient.send(S.fail, {}))).toEqual(OUT_OF_STOCK);
    });

    it("a thrown TypeError: CONSUMER ERROR with error.type TypeError, the caller gets Nest's generic error", async () => {
      const traced = await errorOf(client.send(S.crash, {}));
      const { spans, span: consumer } = await waitForOne(`process ${S.crash}`, SpanKind.CONSUMER);
      expectSpan(consumer, spans).toHaveStatus(SpanStatusCode.ERROR, 'boom').toHaveAttributes({ 'error.type': 'TypeError' });
      expect(exceptionEvents(consumer)).toHaveLength(1);
      expect(traced).toEqual({ status: 'error', message: 'Internal server error' });
      expect(await errorOf(plainClient.send(S.crash, {}))).toEqual(traced);
    });

    it(`rxjs timeout() before the reply: the PRODUCER ends ERROR "${SEND_CANCELLED}", the CONSUMER still ends OK`, async () => {
      const error = await errorOf(client.send(S.slow, {}).pipe(timeout(100)));
      expect((error as Error).name).toBe('TimeoutError');
      const producer = getSpan(spanRecorder.getFinishedSpans(), { name: `send ${S.slow}`, kind: SpanKind.PRODUCER });
      expectSpan(producer).toHaveStatus(SpanStatusCode.ERROR).toHaveAttributes({ 'error.type': SEND_CANCELLED });
      const { spans, span: consumer } = await waitForOne(`process ${S.slow}`, SpanKind.CONSUMER);
      expectSpan(consumer, spans).toHaveParent(producer).toHaveStatus(SpanStatusCode.UNSET);
    });

    it('a client closed with a request in flight: the caller sees what it sees with ClientRedis, and the PRODUCER ends ERROR', async () => {
      const closedUnder = async (closing: ClientRedis): Promise<unknown> => {
        await closing.connect();
        const reply = firstValueFrom(closing.send(S.slow, {})).catch((err: unknown) => err);
        await sleep(100);
        await closing.close();
        return Promise.race([reply, sleep(200, 'still pending')]);
      };
      const plain = await closedUnder(new ClientRedis(REDIS));
      const traced = await closedUnder(new OtelClientRedis(REDIS));
      const producer = getSpan(spanRecorder.getFinishedSpans(), { name: `send ${S.slow}`, kind: SpanKind.PRODUCER });
      // Nest's Redis client fails the requests still waiting when it closes from 11.2 on (`handleClose`);
      // 11.1 leaves them pending for good, and the span ends anyway, when the client closes.
      if (closeFailsPendingRequests(new ClientRedis(REDIS))) {
        expect(plain).toEqual(new Error('Connection closed'));
        expectSpan(producer).toHaveStatus(SpanStatusCode.ERROR, 'Connection closed').toHaveAttributes({ 'error.type': 'Error' });
      } else {
        expect(plain).toBe('still pending');
        expectSpan(producer).toHaveStatus(SpanStatusCode.ERROR).toHaveAttributes({ 'error.type': SEND_CLIENT_CLOSED });
      }
      expect(traced).toEqual(plain);
      await spanRecorder.waitForSpans((all) => findSpans(all, { name: `process ${S.slow}`, kind: SpanKind.CONSUMER }).length === 2);
    });

    it('Redis unreachable (a closed port): send and emit fail as with ClientRedis, their PRODUCER spans end ERROR, nothing crashes', async () => {
      const options = { host: HOST, port: await closedPort() };
      const traced = new OtelClientRedis(options);
      const plain = new ClientRedis(options);
      try {
        const plainSend = await errorOf(plain.send(S.get, { id: 1 }).pipe(timeout(5000)));
        const tracedSend = await errorOf(traced.send(S.get, { id: 1 }).pipe(timeout(5000)));
        expect(tracedSend).toBeInstanceOf(Error);
        expect((tracedSend as Error).name).not.toBe('TimeoutError');
        expect(tracedSend?.constructor).toBe(plainSend?.constructor);
        expect((tracedSend as Error).message).toBe((plainSend as Error).message);
        const tracedEmit = await errorOf(traced.emit(S.created, { id: 1 }).pipe(timeout(5000)));
        expect((tracedEmit as Error).message).toBe((plainSend as Error).message);
        const spans = await spanRecorder.waitForSpans((all) => findSpans(all, { kind: SpanKind.PRODUCER }).length === 2);
        for (const [name, type] of [[S.get, 'message'], [S.created, 'event']] as const) {
          expectSpan(getSpan(spans, { name: `send ${name}`, kind: SpanKind.PRODUCER }), spans)
            .toHaveStatus(SpanStatusCode.ERROR)
            .toHaveAttributes({ 'nestjs.handler.type': type, 'error.type': (tracedSend as Error).constructor.name, 'server.port': options.port });
        }
      } finally {
        await traced.close();
        await plain.close();
      }
    });
  });

  describe('hostile metadata from the network: no crash, a fresh root, nothing echoed', () => {
    const valid = remoteParent();
    const tp = traceparentOf(valid);
    const cases: Array<[string, unknown]> = [
      ['no metadata at all', undefined],
      ['a traceparent that is a number', { traceparent: 42 }],
      ['a traceparent that is an object', { traceparent: { value: tp } }],
      ['a traceparent that is a one-element array', { traceparent: [tp] }],
      ['a traceparent that is null', { traceparent: null }],
      ['a 10 KB traceparent', { traceparent: `${tp}-${'0'.repeat(10 * 1024)}` }],
      ['a 10 KB baggage and tracestate with a garbage traceparent', { traceparent: 'garbage', baggage: `tenant.id=${'x'.repeat(10 * 1024)}`, tracestate: 'a='.padEnd(10 * 1024, 'b') }],
      ['control characters in the traceparent', { traceparent: `${tp}\r\nx-injected: 1` }],
      ['a NUL and an escape in the traceparent', { traceparent: `\u0000${tp}\u001b` }],
      ['an invalid traceparent (all-zero trace id)', { traceparent: `00-${'0'.repeat(32)}-${valid.spanId}-01` }],
      ['a traceparent under two spellings', { traceparent: tp, Traceparent: tp }],
      ['garbage tracestate and baggage without a traceparent', { tracestate: '==,,;;', baggage: '=;=;,,%%%' }],
    ];

    it.each(cases)('%s: the handler runs under a new root trace; the reply carries only the consumer\'s context', async (_name, hostile) => {
      const id = randomUUID();
      const metadata = hostile === undefined ? { [REPLY_CONTEXT_KEY]: '1' } : { ...(hostile as object), [REPLY_CONTEXT_KEY]: '1' };
      const reply = await rawRequest(S.echo, { pattern: S.echo, data: { id }, id, metadata });
      const { spans, span: consumer } = await waitForOne(`process ${S.echo}`, SpanKind.CONSUMER);
      expectSpan(consumer, spans).toBeRoot().toHaveStatus(SpanStatusCode.UNSET);
      expect(consumer.links).toEqual([]);
      expect(consumer.spanContext().traceId).not.toBe(valid.traceId);
      expect(reply.response).toMatchObject({ data: { id }, traceId: consumer.spanContext().traceId });
      expect((reply.response as HandlerView).tenant).toBeUndefined();
      // Nothing of the request's metadata comes back: only a fresh traceparent of the consumer.
      expect(reply.metadata).toEqual({ traceparent: traceparentOf(consumer) });
    });

    it('metadata with 10 000 keys around a valid traceparent (and the reply request) is not searched: a fresh root, a reply exactly as Nest sends it', async () => {
      const id = randomUUID();
      const keys = Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`k${i}`, 'v']));
      const reply = await rawRequest(S.echo, { pattern: S.echo, data: { id }, id, metadata: { ...keys, traceparent: tp, [REPLY_CONTEXT_KEY]: '1' } });
      const { spans, span: consumer } = await waitForOne(`process ${S.echo}`, SpanKind.CONSUMER);
      expectSpan(consumer, spans).toBeRoot();
      expect(consumer.spanContext().traceId).not.toBe(valid.traceId);
      expect(Object.keys(reply).sort()).toEqual(['id', 'isDisposed', 'response']);
    });

    it.each([
      ['a string', 'traceparent'],
      ['an array', [tp]],
      ['a number', 7],
      ['null', null],
    ])('metadata that is %s: a fresh root, and a reply exactly as Nest sends it', async (_name, metadata) => {
      const id = randomUUID();
      const reply = await rawRequest(S.echo, { pattern: S.echo, data: { id }, id, metadata: metadata as never });
      const { spans, span: consumer } = await waitForOne(`process ${S.echo}`, SpanKind.CONSUMER);
      expectSpan(consumer, spans).toBeRoot();
      expect(consumer.links).toEqual([]);
      expect(Object.keys(reply).sort()).toEqual(['id', 'isDisposed', 'response']);
    });

    it('a payload that is not JSON, and JSON that is not an object: handled as Nest does (as an event of the channel), fresh roots, the server goes on', async () => {
      await pub.publish(S.created, `not json {"metadata":{"traceparent":"${tp}"}`);
      await pub.publish(S.created, JSON.stringify([{ metadata: { traceparent: tp } }]));
      await pub.publish(S.created, 'null');
      const spans = await spanRecorder.waitForSpans((all) => findSpans(all, { name: `process ${S.created}`, kind: SpanKind.CONSUMER }).length === 3);
      for (const consumer of findSpans(spans, { name: `process ${S.created}`, kind: SpanKind.CONSUMER })) {
        expectSpan(consumer, spans).toBeRoot();
        expect(consumer.links).toEqual([]);
        expect(consumer.spanContext().traceId).not.toBe(valid.traceId);
      }
      const parent = remoteParent();
      const reply = await context.with(inRemoteParent(parent), () => firstValueFrom(client.send<HandlerView>(S.echo, { after: true })));
      expect(reply.traceId).toBe(parent.traceId);
    });

    it("one message's context never leaks into the next one's", async () => {
      const parent = remoteParent();
      await rawRequest(S.echo, { pattern: S.echo, data: {}, id: 'leak-1', metadata: { traceparent: traceparentOf(parent), baggage: 'tenant.id=acme' } });
      const next = await rawRequest(S.echo, { pattern: S.echo, data: {}, id: 'leak-2' });
      expect((next.response as HandlerView).traceId).not.toBe(parent.traceId);
      expect((next.response as HandlerView).tenant).toBeUndefined();
    });
  });

  it("200 concurrent request-replies with distinct trace ids: every CONSUMER is in its own caller's trace", async () => {
    const parents = Array.from({ length: 200 }, remoteParent);
    const replies = await Promise.all(
      parents.map((parent, index) => context.with(inRemoteParent(parent), () => firstValueFrom(client.send<HandlerView>(S.echo, { index })))),
    );
    const spans = await spanRecorder.waitForSpans(
      (all) => findSpans(all, { kind: SpanKind.CONSUMER }).length === 200 && findSpans(all, { kind: SpanKind.PRODUCER }).length === 200,
      { timeoutMs: 10_000 },
    );
    expect(new Set(spans.filter((span) => span.kind === SpanKind.CONSUMER).map((span) => span.spanContext().traceId)).size).toBe(200);
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
});
