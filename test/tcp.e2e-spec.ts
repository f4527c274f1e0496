import 'reflect-metadata';
import type { AddressInfo, Server as NetServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Controller, Injectable, Module, type INestMicroservice } from '@nestjs/common';
import {
  ClientTCP,
  ClientsModule,
  Ctx,
  EventPattern,
  MessagePattern,
  Payload,
  RpcException,
  ServerTCP,
  TcpContext,
  type ClientProxy,
} from '@nestjs/microservices';
import { Test, type TestingModule } from '@nestjs/testing';
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Span, type SpanContext } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { firstValueFrom, lastValueFrom, map, take, timeout, timer, toArray, type Observable } from 'rxjs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Baggage, SEND_CANCELLED, TraceService, Traced } from '../lib/index.js';
import { OtelTestingModule, expectSpan, findSpans, getSpan, spanRecorder } from '../lib/testing/index.js';
import { OtelClientTCP, OtelServerTCP, otelTcp } from '../lib/transports/tcp/index.js';
import { freePort } from './support/grpc-fixtures.js';
import { NEST_MAJOR } from './support/nest-version.js';

const HOST = '127.0.0.1';
const P = {
  get: 'orders.get',
  metadata: 'orders.metadata',
  fail: 'orders.fail',
  crash: 'orders.crash',
  slow: 'orders.slow',
  stream: 'orders.stream',
  created: 'orders.created',
  createdTraced: 'orders.created-traced',
  audit: 'audit.recorded',
  ping: 'audit.ping',
  skip: 'audit.skip',
};
const SUM = { cmd: 'sum' };
const ORDERS_CLIENT = 'ORDERS_CLIENT';
const OUT_OF_STOCK = { name: 'OutOfStockError', message: 'out of stock', sku: 'sku-9' };

interface HandlerView {
  id?: string;
  tenant?: string;
  traceId?: string;
  spanId?: string;
  lookupSpanId?: string;
}

/** What each event handler saw, by pattern. */
const seenEvents = new Map<string, HandlerView[]>();
function sawEvent(pattern: string, view: HandlerView): void {
  seenEvents.set(pattern, [...(seenEvents.get(pattern) ?? []), view]);
}

@Injectable()
class Lookup {
  @Traced()
  find(id: string): { id: string; lookupSpanId?: string } {
    return { id, lookupSpanId: trace.getActiveSpan()?.spanContext().spanId };
  }
}

/** The handlers Nest's own ServerTCP and OtelServerTCP both get. */
@Controller()
class OrdersController {
  constructor(
    private readonly traces: TraceService,
    private readonly lookup: Lookup,
  ) {}

  @MessagePattern(P.get)
  get(@Payload() data: { id: string }, @Baggage('tenant.id') tenant?: string): HandlerView {
    return { ...this.lookup.find(data.id), tenant, traceId: this.traces.getTraceId(), spanId: this.traces.getSpanId() };
  }

  @MessagePattern(SUM)
  sum(@Payload() numbers: number[]): { sum: number; spanId?: string } {
    return { sum: numbers.reduce((a, b) => a + b, 0), spanId: this.traces.getSpanId() };
  }

  /** The envelope's metadata as the handler sees it (Nest 12's TcpContext#getMetadata; Nest 11 has none). */
  @MessagePattern(P.metadata)
  metadata(@Ctx() ctx: TcpContext): unknown {
    const read = (ctx as { getMetadata?: () => unknown }).getMetadata;
    return { metadata: read ? (read.call(ctx) ?? null) : 'not on this Nest' };
  }

  @MessagePattern(P.fail)
  fail(): never {
    throw new RpcException(OUT_OF_STOCK);
  }

  @MessagePattern(P.crash)
  crash(): never {
    throw new TypeError('boom');
  }

  @MessagePattern(P.slow)
  async slow(): Promise<string> {
    await sleep(400);
    return 'late';
  }

  /** Three replies, 20 ms apart, each naming the span it was produced in. */
  @MessagePattern(P.stream)
  stream(): Observable<string | undefined> {
    return timer(0, 20).pipe(
      take(3),
      map(() => this.traces.getSpanId()),
    );
  }

  @EventPattern(P.created)
  created(@Payload() data: unknown, @Baggage('tenant.id') tenant: unknown): void {
    sawEvent(P.created, { id: (data as { id: string }).id, tenant: tenant as string | undefined, traceId: this.traces.getTraceId(), spanId: this.traces.getSpanId() });
  }

  @Traced({ consume: 'parent' })
  @EventPattern(P.createdTraced)
  createdTraced(@Payload() data: unknown): void {
    sawEvent(P.createdTraced, { id: (data as { id: string }).id, traceId: this.traces.getTraceId() });
  }
}

@Controller()
class AuditController {
  constructor(private readonly traces: TraceService) {}

  @EventPattern(P.audit)
  recorded(@Payload() data: unknown): void {
    sawEvent(P.audit, { id: (data as { id: string }).id, traceId: this.traces.getTraceId() });
  }

  @MessagePattern(P.ping)
  ping(): string {
    return 'pong';
  }

  @MessagePattern(P.skip)
  skip(): { spanId?: string } {
    return { spanId: this.traces.getSpanId() };
  }
}

const tracer = trace.getTracer('tcp-e2e');

/** Runs `fn` inside a caller span of its own (a new trace), with baggage `tenant.id=acme`. */
async function asCaller<T>(fn: () => Promise<T>): Promise<{ caller: SpanContext; result: T }> {
  const baggage = propagation.createBaggage({ 'tenant.id': { value: 'acme' } });
  const span: Span = tracer.startSpan('caller', {}, ROOT_CONTEXT);
  try {
    const result = await context.with(trace.setSpan(propagation.setBaggage(ROOT_CONTEXT, baggage), span), fn);
    return { caller: span.spanContext(), result };
  } finally {
    span.end();
  }
}

const traceparentOf = (span: ReadableSpan | SpanContext): string => {
  const { traceId, spanId, traceFlags } = 'spanContext' in span ? span.spanContext() : span;
  return `00-${traceId}-${spanId}-${(traceFlags & 0x03).toString(16).padStart(2, '0')}`;
};
const exceptionEvents = (span: ReadableSpan) => span.events.filter((event) => event.name === 'exception');

async function errorOf(source: Observable<unknown>): Promise<unknown> {
  return firstValueFrom(source).then(
    (value) => ({ unexpectedValue: value }),
    (error: unknown) => error,
  );
}

function portOf(server: ServerTCP): number {
  return (server.unwrap<NetServer>().address() as AddressInfo).port;
}

describe('TCP: OtelServerTCP and OtelClientTCP on 127.0.0.1', () => {
  let service: INestMicroservice;
  let auditService: INestMicroservice;
  let plainService: INestMicroservice;
  let clientModule: TestingModule;
  let client: ClientProxy;
  let plainClient: ClientTCP;
  let port: number;
  let auditPort: number;
  let plainPort: number;

  beforeAll(async () => {
    @Module({
      imports: [OtelTestingModule.forRoot({ serviceName: 'orders' })],
      controllers: [OrdersController],
      providers: [Lookup],
    })
    class OrdersModule {}
    const server = new OtelServerTCP({ host: HOST, port: 0 });
    service = (await Test.createTestingModule({ imports: [OrdersModule] }).compile()).createNestMicroservice({ strategy: server });
    await service.listen();
    port = portOf(server);

    @Module({ imports: [OtelTestingModule.forRoot({ serviceName: 'audit' })], controllers: [AuditController] })
    class AuditModule {}
    // The short form, with events as children of the producer.
    const auditStrategy = otelTcp({
      host: HOST,
      port: 0,
      otel: {
        eventConsume: 'parent',
        ignore: (info) => info.pattern === P.skip,
        consumeHook: (span, info) => span.setAttribute('app.consumed', `${info.system} ${info.pattern} ${info.isEvent}`),
        replyHook: (span, info) => span.setAttribute('app.replied', info.error === undefined ? 'ok' : 'failed'),
      },
    });
    expect(auditStrategy.strategy).toBeInstanceOf(OtelServerTCP);
    auditService = (await Test.createTestingModule({ imports: [AuditModule] }).compile()).createNestMicroservice(auditStrategy);
    await auditService.listen();
    auditPort = portOf(auditStrategy.strategy as ServerTCP);

    // Nest's own transport, no otel-nest at all.
    @Module({ controllers: [OrdersController], providers: [Lookup, TraceService] })
    class PlainModule {}
    const plainServer = new ServerTCP({ host: HOST, port: 0 });
    plainService = (await Test.createTestingModule({ imports: [PlainModule] }).compile()).createNestMicroservice({ strategy: plainServer });
    await plainService.listen();
    plainPort = portOf(plainServer);

    @Module({
      imports: [
        OtelTestingModule.forRoot({ serviceName: 'gateway' }),
        ClientsModule.register([{ name: ORDERS_CLIENT, customClass: OtelClientTCP, options: { host: HOST, port } }]),
      ],
    })
    class GatewayModule {}
    clientModule = await Test.createTestingModule({ imports: [GatewayModule] }).compile();
    client = clientModule.get<ClientProxy>(ORDERS_CLIENT);
    expect(client).toBeInstanceOf(OtelClientTCP);

    plainClient = new ClientTCP({ host: HOST, port });
  });

  afterAll(async () => {
    plainClient?.close();
    await clientModule?.close();
    await plainService?.close();
    await auditService?.close();
    await service?.close();
  });

  beforeEach(() => {
    spanRecorder.reset();
    seenEvents.clear();
  });

  describe('request-reply (send)', () => {
    it('caller -> CLIENT -> SERVER -> handler span is one trace, with RPC attributes, and the handler reads the baggage', async () => {
      const { caller, result } = await asCaller(() => firstValueFrom(client.send<HandlerView>(P.get, { id: 'o-42' })));
      const spans = await spanRecorder.waitForSpans(
        (all) => findSpans(all, { name: P.get, kind: SpanKind.SERVER }).length === 1 && findSpans(all, { name: 'Lookup.find' }).length === 1,
      );
      const clientSpan = getSpan(spans, { name: P.get, kind: SpanKind.CLIENT });
      const serverSpan = getSpan(spans, { name: P.get, kind: SpanKind.SERVER });
      const lookup = getSpan(spans, { name: 'Lookup.find' });
      expectSpan(clientSpan, spans).toHaveParent(caller).toHaveStatus(SpanStatusCode.UNSET);
      expectSpan(serverSpan, spans).toHaveParent(clientSpan).toHaveStatus(SpanStatusCode.UNSET);
      expectSpan(lookup, spans).toHaveParent(serverSpan);
      expect(result).toEqual({
        id: 'o-42',
        tenant: 'acme',
        traceId: caller.traceId,
        spanId: serverSpan.spanContext().spanId,
        lookupSpanId: lookup.spanContext().spanId,
      });

      expectSpan(clientSpan, spans).toHaveAttributes({
        'rpc.system.name': 'nestjs_tcp',
        'rpc.method': P.get,
        'server.address': HOST,
        'server.port': port,
        'network.peer.address': HOST,
        'network.peer.port': port,
        'nestjs.pattern': P.get,
        'nestjs.handler.type': 'message',
      });
      expectSpan(serverSpan, spans).toHaveAttributes({
        'rpc.system.name': 'nestjs_tcp',
        'rpc.method': P.get,
        'server.address': HOST,
        'server.port': port,
        'network.peer.address': HOST,
        'nestjs.pattern': P.get,
        'nestjs.handler.type': 'message',
        'nestjs.controller': 'OrdersController',
        'nestjs.handler': 'get',
      });
      expect(serverSpan.attributes['network.peer.port']).toEqual(expect.any(Number));
      for (const span of [clientSpan, serverSpan]) {
        expectSpan(span).toNotHaveAttribute('messaging.system');
      }
    });

    it('an object pattern: both spans are named after Nest\'s JSON form of it', async () => {
      const { caller, result } = await asCaller(() => firstValueFrom(client.send<{ sum: number; spanId: string }>(SUM, [1, 2, 3])));
      const name = '{"cmd":"sum"}';
      const serverSpan = await spanRecorder.waitForSpan({ name, kind: SpanKind.SERVER });
      const spans = spanRecorder.getFinishedSpans();
      const clientSpan = getSpan(spans, { name, kind: SpanKind.CLIENT });
      expectSpan(clientSpan, spans).toHaveParent(caller).toHaveAttributes({ 'rpc.method': name });
      expectSpan(serverSpan, spans).toHaveParent(clientSpan).toHaveAttributes({ 'rpc.method': name, 'nestjs.handler': 'sum' });
      expect(result).toEqual({ sum: 6, spanId: serverSpan.spanContext().spanId });
    });

    it('the context travels in the envelope metadata: traceparent of the CLIENT span, baggage, the reply-context request', async () => {
      const { result } = await asCaller(() => firstValueFrom(client.send<{ metadata: unknown }>(P.metadata, {})));
      const clientSpan = await spanRecorder.waitForSpan({ name: P.metadata, kind: SpanKind.CLIENT });
      if (NEST_MAJOR >= 12) {
        expect(result.metadata).toEqual({
          traceparent: traceparentOf(clientSpan),
          baggage: 'tenant.id=acme',
          'otel-reply-context': '1',
        });
      } else {
        // Nest 11's TcpContext has no metadata (OtelServerTCP reads it from the packet itself).
        expect(result.metadata).toBe('not on this Nest');
      }
    });

    it.runIf(NEST_MAJOR >= 12)("the application's own dispatch hook still runs: its metadata is kept, a stale traceparent of its is replaced", async () => {
      const fresh = new OtelClientTCP({ host: HOST, port });
      try {
        const userMetadata = { 'x-request-id': 'r-1', Traceparent: '00-11111111111111111111111111111111-2222222222222222-01' };
        (fresh as unknown as { setOnDispatchHook(hook: (packet: { metadata?: unknown }) => void): void }).setOnDispatchHook((packet) => {
          packet.metadata = userMetadata;
        });
        const { result } = await asCaller(() => firstValueFrom(fresh.send<{ metadata: unknown }>(P.metadata, {})));
        const clientSpan = await spanRecorder.waitForSpan({ name: P.metadata, kind: SpanKind.CLIENT });
        expect(result.metadata).toEqual({
          'x-request-id': 'r-1',
          traceparent: traceparentOf(clientSpan),
          baggage: 'tenant.id=acme',
          'otel-reply-context': '1',
        });
        // The application's object is not changed.
        expect(userMetadata).toEqual({ 'x-request-id': 'r-1', Traceparent: '00-11111111111111111111111111111111-2222222222222222-01' });
      } finally {
        fresh.close();
      }
    });

    it('a streamed reply: every value comes from inside the one SERVER span, which covers the whole stream', async () => {
      const values = await lastValueFrom(client.send<string>(P.stream, {}).pipe(toArray()));
      const serverSpan = await spanRecorder.waitForSpan({ name: P.stream, kind: SpanKind.SERVER });
      const spans = await spanRecorder.waitForSpans((all) => findSpans(all, { name: P.stream, kind: SpanKind.CLIENT }).length === 1);
      const clientSpan = getSpan(spans, { name: P.stream, kind: SpanKind.CLIENT });
      expect(values).toEqual(Array(3).fill(serverSpan.spanContext().spanId));
      expect(findSpans(spans, { name: P.stream, kind: SpanKind.SERVER })).toHaveLength(1);
      expectSpan(serverSpan, spans).toHaveParent(clientSpan).toHaveStatus(SpanStatusCode.UNSET);
      const nanos = ([seconds, fraction]: [number, number]): bigint => BigInt(seconds) * 1_000_000_000n + BigInt(fraction);
      // Three values 20 ms apart: on Nest 11 too, where Nest runs the end hook at the first reply.
      expect(nanos(serverSpan.duration)).toBeGreaterThanOrEqual(35_000_000n);
    });

    it('200 concurrent requests: 200 distinct traces, each CLIENT under its caller and each SERVER under its CLIENT', async () => {
      const calls = await Promise.all(
        Array.from({ length: 200 }, (_, i) => asCaller(() => firstValueFrom(client.send<HandlerView>(P.get, { id: `c-${i}` })))),
      );
      const spans = await spanRecorder.waitForSpans((all) => findSpans(all, { name: P.get, kind: SpanKind.SERVER }).length === 200, {
        timeoutMs: 10_000,
      });
      expect(new Set(calls.map(({ caller }) => caller.traceId)).size).toBe(200);
      calls.forEach(({ caller, result }, i) => {
        expect(result.id).toBe(`c-${i}`);
        const clientSpan = getSpan(spans, { name: P.get, kind: SpanKind.CLIENT, traceId: caller.traceId });
        const serverSpan = getSpan(spans, { name: P.get, kind: SpanKind.SERVER, traceId: caller.traceId });
        expectSpan(clientSpan, spans).toHaveParent(caller);
        expectSpan(serverSpan, spans).toHaveParent(clientSpan);
        expect(result.traceId).toBe(caller.traceId);
        expect(result.spanId).toBe(serverSpan.spanContext().spanId);
      });
    });
  });

  describe('events (emit)', () => {
    it('PRODUCER send -> CONSUMER process: a new trace linked to the producer (default), baggage travels', async () => {
      const { caller } = await asCaller(() => lastValueFrom(client.emit(P.created, { id: 'e-1' }), { defaultValue: undefined }));
      const consumer = await spanRecorder.waitForSpan({ name: `process ${P.created}`, kind: SpanKind.CONSUMER });
      const spans = spanRecorder.getFinishedSpans();
      const producer = getSpan(spans, { name: `send ${P.created}`, kind: SpanKind.PRODUCER });
      expectSpan(producer, spans).toHaveParent(caller).toHaveStatus(SpanStatusCode.UNSET).toHaveAttributes({
        'messaging.system': 'nestjs_tcp',
        'messaging.operation.name': 'send',
        'messaging.operation.type': 'send',
        'messaging.destination.name': P.created,
        'server.address': HOST,
        'server.port': port,
        'nestjs.pattern': P.created,
        'nestjs.handler.type': 'event',
      });
      expectSpan(consumer, spans).toBeRoot().toLinkTo(producer).toHaveAttributes({
        'messaging.system': 'nestjs_tcp',
        'messaging.operation.name': 'process',
        'messaging.operation.type': 'process',
        'messaging.destination.name': P.created,
        'network.peer.address': HOST,
        'nestjs.pattern': P.created,
        'nestjs.handler.type': 'event',
        'nestjs.controller': 'OrdersController',
        'nestjs.handler': 'created',
      });
      expect(seenEvents.get(P.created)).toEqual([
        { id: 'e-1', tenant: 'acme', traceId: consumer.spanContext().traceId, spanId: consumer.spanContext().spanId },
      ]);
      expect(consumer.spanContext().traceId).not.toBe(caller.traceId);
    });

    it('@Traced({ consume: "parent" }) on the handler, or eventConsume: "parent" on the server: one trace', async () => {
      const { caller } = await asCaller(() => lastValueFrom(client.emit(P.createdTraced, { id: 'e-2' }), { defaultValue: undefined }));
      const consumer = await spanRecorder.waitForSpan({ name: `process ${P.createdTraced}`, kind: SpanKind.CONSUMER });
      const producer = getSpan(spanRecorder.getFinishedSpans(), { name: `send ${P.createdTraced}`, kind: SpanKind.PRODUCER });
      expectSpan(consumer).toHaveParent(producer);
      expect(seenEvents.get(P.createdTraced)).toEqual([{ id: 'e-2', traceId: caller.traceId }]);

      const audit = new OtelClientTCP({ host: HOST, port: auditPort });
      try {
        const { caller: auditCaller } = await asCaller(() => lastValueFrom(audit.emit(P.audit, { id: 'e-3' }), { defaultValue: undefined }));
        const auditConsumer = await spanRecorder.waitForSpan({ name: `process ${P.audit}`, kind: SpanKind.CONSUMER });
        const auditProducer = getSpan(spanRecorder.getFinishedSpans(), { name: `send ${P.audit}`, kind: SpanKind.PRODUCER });
        expectSpan(auditConsumer).toHaveParent(auditProducer);
        expect(seenEvents.get(P.audit)).toEqual([{ id: 'e-3', traceId: auditCaller.traceId }]);
      } finally {
        audit.close();
      }
    });
  });

  describe('server hooks and ignore (the otel option)', () => {
    it('consumeHook and replyHook run on the SERVER span; an ignored request is handled untraced', async () => {
      const audit = new OtelClientTCP({ host: HOST, port: auditPort });
      try {
        const { caller } = await asCaller(() => firstValueFrom(audit.send(P.ping, {})));
        const serverSpan = await spanRecorder.waitForSpan({ name: P.ping, kind: SpanKind.SERVER });
        expectSpan(serverSpan).toHaveAttributes({ 'app.consumed': `nestjs_tcp ${P.ping} false`, 'app.replied': 'ok' });
        expect(serverSpan.spanContext().traceId).toBe(caller.traceId);

        const skipped = await firstValueFrom(audit.send<{ spanId?: string }>(P.skip, {}));
        await spanRecorder.waitForSpan({ name: P.skip, kind: SpanKind.CLIENT });
        expect(findSpans(spanRecorder.getFinishedSpans(), { name: P.skip, kind: SpanKind.SERVER })).toHaveLength(0);
        // The handler ran outside any span of the server's.
        expect(skipped.spanId).toBeUndefined();
      } finally {
        audit.close();
      }
    });
  });

  describe('with plain Nest on the other side', () => {
    it("Nest's ClientTCP against OtelServerTCP: the reply is what Nest's own server sends, a fresh root on the server", async () => {
      const traced = await firstValueFrom(plainClient.send<{ sum: number; spanId: string }>(SUM, [2, 3]));
      const serverSpan = await spanRecorder.waitForSpan({ name: '{"cmd":"sum"}', kind: SpanKind.SERVER });
      expectSpan(serverSpan).toBeRoot();
      expect(traced).toEqual({ sum: 5, spanId: serverSpan.spanContext().spanId });
      const fromPlainServer = new ClientTCP({ host: HOST, port: plainPort });
      try {
        // Without otel-nest the handler has no span: the rest of the reply is the same.
        expect(await firstValueFrom(fromPlainServer.send(SUM, [2, 3]))).toEqual({ sum: 5 });
      } finally {
        fromPlainServer.close();
      }
    });

    it.runIf(NEST_MAJOR >= 12)("Nest's ClientTCP with a dispatch hook writing a traceparent: the server continues it, the reply still parses", async () => {
      const hooked = new ClientTCP({ host: HOST, port });
      const parent: SpanContext = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 1, isRemote: true };
      (hooked as unknown as { setOnDispatchHook(hook: (packet: { metadata?: unknown }) => void): void }).setOnDispatchHook((packet) => {
        packet.metadata = { traceparent: traceparentOf(parent), 'x-request-id': 'r-2' };
      });
      try {
        const reply = await firstValueFrom(hooked.send<{ sum: number; spanId: string }>(SUM, [4, 5]));
        const serverSpan = await spanRecorder.waitForSpan({ name: '{"cmd":"sum"}', kind: SpanKind.SERVER });
        expectSpan(serverSpan).toHaveParent(parent);
        expect(reply).toEqual({ sum: 9, spanId: serverSpan.spanContext().spanId });
      } finally {
        hooked.close();
      }
    });

    it("OtelClientTCP against Nest's ServerTCP: the reply is unchanged; Nest 12's handler sees the metadata, Nest 11's ignores it", async () => {
      const toPlain = new OtelClientTCP({ host: HOST, port: plainPort });
      try {
        const { caller, result } = await asCaller(() => firstValueFrom(toPlain.send<{ metadata: unknown }>(P.metadata, {})));
        const clientSpan = await spanRecorder.waitForSpan({ name: P.metadata, kind: SpanKind.CLIENT });
        expectSpan(clientSpan).toHaveParent(caller).toHaveStatus(SpanStatusCode.UNSET);
        expect(result.metadata).toEqual(
          NEST_MAJOR >= 12
            ? { traceparent: traceparentOf(clientSpan), baggage: 'tenant.id=acme', 'otel-reply-context': '1' }
            : 'not on this Nest',
        );
        expect(await firstValueFrom(toPlain.send(SUM, [1, 1]))).toEqual({ sum: 2 });
      } finally {
        toPlain.close();
      }
    });
  });

  describe('errors, timeouts, server down', () => {
    it('RpcException: SERVER ERROR recorded once, CLIENT ERROR, and the caller gets what plain Nest gives', async () => {
      const traced = await errorOf(client.send(P.fail, { id: 1 }));
      const spans = await spanRecorder.waitForSpans(
        (all) => findSpans(all, { kind: SpanKind.CLIENT }).length === 1 && findSpans(all, { kind: SpanKind.SERVER }).length === 1,
      );
      const clientSpan = getSpan(spans, { name: P.fail, kind: SpanKind.CLIENT });
      const serverSpan = getSpan(spans, { name: P.fail, kind: SpanKind.SERVER });
      expectSpan(serverSpan, spans)
        .toHaveParent(clientSpan)
        .toHaveStatus(SpanStatusCode.ERROR)
        .toHaveAttributes({ 'error.type': 'RpcException', 'nestjs.handler': 'fail' });
      expect(exceptionEvents(serverSpan)).toHaveLength(1);
      expectSpan(clientSpan, spans).toHaveStatus(SpanStatusCode.ERROR).toHaveAttributes({ 'error.type': 'OutOfStockError' });

      const plainBoth = new ClientTCP({ host: HOST, port: plainPort });
      try {
        const plain = await errorOf(plainBoth.send(P.fail, { id: 1 }));
        expect(plain).toEqual(OUT_OF_STOCK);
        expect(traced).toEqual(plain);
        expect(await errorOf(plainClient.send(P.fail, { id: 1 }))).toEqual(plain);
      } finally {
        plainBoth.close();
      }
    });

    it("a thrown TypeError: SERVER ERROR with error.type TypeError, the caller gets Nest's generic error", async () => {
      const traced = await errorOf(client.send(P.crash, {}));
      const serverSpan = await spanRecorder.waitForSpan({ name: P.crash, kind: SpanKind.SERVER });
      expectSpan(serverSpan).toHaveStatus(SpanStatusCode.ERROR, 'boom').toHaveAttributes({ 'error.type': 'TypeError' });
      expect(exceptionEvents(serverSpan)).toHaveLength(1);
      const clientSpan = await spanRecorder.waitForSpan({ name: P.crash, kind: SpanKind.CLIENT });
      expect(clientSpan.status.code).toBe(SpanStatusCode.ERROR);
      expect(traced).toEqual({ status: 'error', message: 'Internal server error' });
    });

    it(`rxjs timeout() before the reply: the CLIENT span ends ERROR "${SEND_CANCELLED}", the SERVER span still ends OK`, async () => {
      const error = await errorOf(client.send(P.slow, {}).pipe(timeout(100)));
      expect((error as Error).name).toBe('TimeoutError');
      const clientSpan = getSpan(spanRecorder.getFinishedSpans(), { name: P.slow, kind: SpanKind.CLIENT });
      expectSpan(clientSpan).toHaveStatus(SpanStatusCode.ERROR).toHaveAttributes({ 'error.type': SEND_CANCELLED });
      const serverSpan = await spanRecorder.waitForSpan({ name: P.slow, kind: SpanKind.SERVER });
      expectSpan(serverSpan).toHaveParent(clientSpan).toHaveStatus(SpanStatusCode.UNSET);
    });

    it('a client closed with a request in flight: the caller sees what it sees with ClientTCP, and the CLIENT span ends ERROR', async () => {
      const closedUnder = async (closing: ClientTCP): Promise<unknown> => {
        await closing.connect();
        const reply = firstValueFrom(closing.send(P.slow, {})).catch((err: unknown) => err);
        await sleep(100);
        closing.close();
        return Promise.race([reply, sleep(1000, 'still pending')]);
      };
      const plain = await closedUnder(new ClientTCP({ host: HOST, port }));
      const traced = await closedUnder(new OtelClientTCP({ host: HOST, port }));
      expect(plain).toEqual(new Error('Connection closed'));
      expect(traced).toEqual(plain);
      const clientSpan = getSpan(spanRecorder.getFinishedSpans(), { name: P.slow, kind: SpanKind.CLIENT });
      expectSpan(clientSpan).toHaveStatus(SpanStatusCode.ERROR, 'Connection closed').toHaveAttributes({ 'error.type': 'Error' });
      // The handlers finish anyway; wait for them so that their spans do not land in the next test.
      await spanRecorder.waitForSpans((all) => findSpans(all, { name: P.slow, kind: SpanKind.SERVER }).length === 2);
    });

    it('server down: send and emit fail as with ClientTCP, and their CLIENT and PRODUCER spans end ERROR', async () => {
      const downPort = await freePort();
      const traced = new OtelClientTCP({ host: HOST, port: downPort });
      const plain = new ClientTCP({ host: HOST, port: downPort });
      try {
        const tracedSend = await errorOf(traced.send(P.get, { id: 1 }));
        const plainSend = await errorOf(plain.send(P.get, { id: 1 }));
        expect(tracedSend).toBeInstanceOf(Error);
        expect((tracedSend as NodeJS.ErrnoException).code).toBe('ECONNREFUSED');
        expect((tracedSend as Error).message).toBe((plainSend as Error).message);
        traced.close();
        const tracedEmit = await errorOf(traced.emit(P.created, { id: 1 }));
        expect((tracedEmit as NodeJS.ErrnoException).code).toBe('ECONNREFUSED');
        const spans = await spanRecorder.waitForSpans((all) => all.length === 2);
        expectSpan(getSpan(spans, { name: P.get, kind: SpanKind.CLIENT }), spans)
          .toHaveStatus(SpanStatusCode.ERROR)
          .toHaveAttributes({ 'error.type': 'Error', 'server.port': downPort });
        expectSpan(getSpan(spans, { name: `send ${P.created}`, kind: SpanKind.PRODUCER }), spans)
          .toHaveStatus(SpanStatusCode.ERROR)
          .toHaveAttributes({ 'error.type': 'Error', 'nestjs.handler.type': 'event' });
        expect(findSpans(spans, { kind: SpanKind.SERVER })).toHaveLength(0);
      } finally {
        traced.close();
        plain.close();
      }
    });
  });
});
