import 'reflect-metadata';
import { setTimeout as sleep } from 'node:timers/promises';
import { Controller, Inject, Module, type INestMicroservice } from '@nestjs/common';
import {
  ClientProxyFactory,
  ClientsModule,
  GrpcMethod,
  GrpcStreamCall,
  GrpcStreamMethod,
  RpcException,
  type ClientGrpc,
} from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { Metadata, status as GrpcStatus, type ServerDuplexStream, type ServerReadableStream, type ServiceError } from '@grpc/grpc-js';
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { firstValueFrom, from, lastValueFrom, map, Observable, Subject, take, timer, toArray } from 'rxjs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { TraceService } from '../lib/index.js';
import { OtelTestingModule, expectSpan, findSpans, getSpan, spanRecorder } from '../lib/testing/index.js';
import { OtelClientGrpc, OtelServerGrpc, otelGrpc } from '../lib/transports/grpc/index.js';
import {
  freePort,
  M,
  ORDER_SERVICE,
  orderView,
  ORDERS_PACKAGE,
  ORDERS_PROTO,
  rawOrdersClient,
  rawUnary,
  type Order,
  type OrderRequest,
  type OrderServiceClient,
  type Summary,
} from './support/grpc-fixtures.js';

const ORDERS = 'ORDERS';

@Controller()
class OrdersController {
  private service?: OrderServiceClient;

  constructor(
    private readonly traces: TraceService,
    @Inject(ORDERS) private readonly client: ClientGrpc,
  ) {}

  private orders(): OrderServiceClient {
    this.service ??= this.client.getService<OrderServiceClient>(ORDER_SERVICE);
    return this.service;
  }

  /** The span the handler code runs in, the baggage it sees, the traceparent it received. */
  private view(id: string, metadata?: Metadata): Order {
    return orderView(this.traces, id, metadata);
  }

  @GrpcMethod(ORDER_SERVICE, 'GetOrder')
  async getOrder(request: OrderRequest, metadata: Metadata): Promise<Order> {
    if (request.delayMs) {
      await sleep(request.delayMs);
    }
    if (request.failCode) {
      throw new RpcException({ code: request.failCode, message: `failed with ${request.failCode}` });
    }
    if (request.id === 'crash') {
      throw new TypeError('boom');
    }
    if (request.id === 'text') {
      throw new RpcException('a bare message');
    }
    const seen = this.view(request.id, metadata);
    this.traces.withSpan('load order', () => undefined);
    if (request.thenGet) {
      await firstValueFrom(this.orders().getOrder({ id: request.thenGet }));
    }
    return seen;
  }

  /** `count` orders, 5 ms apart, each with a user span made in the Observable pipeline. */
  @GrpcMethod(ORDER_SERVICE, 'ListOrders')
  listOrders(request: OrderRequest, metadata: Metadata): Observable<Order> {
    return timer(0, 5).pipe(
      take(request.count || 1),
      map((i) => {
        this.traces.withSpan('list item', () => undefined);
        return this.view(`${request.id}-${i}`, metadata);
      }),
    );
  }

  @GrpcStreamMethod(ORDER_SERVICE, 'UploadOrders')
  uploadOrders(requests: Observable<OrderRequest>): Observable<Summary> {
    return requests.pipe(
      toArray(),
      map((all) => {
        const failing = all.find((request) => request.failCode);
        if (failing) {
          throw new RpcException({ code: failing.failCode, message: 'refused' });
        }
        this.traces.withSpan('store orders', () => undefined);
        return { count: all.length, ids: all.map((request) => request.id), traceId: this.traces.getTraceId() ?? '', spanId: this.traces.getSpanId() ?? '' };
      }),
    );
  }

  @GrpcStreamMethod(ORDER_SERVICE, 'Chat')
  chat(requests: Observable<OrderRequest>, metadata: Metadata): Observable<Order> {
    return requests.pipe(map((request) => this.view(request.id, metadata)));
  }

  @GrpcStreamCall(ORDER_SERVICE, 'ChatCall')
  chatCall(call: ServerDuplexStream<OrderRequest, Order>): void {
    call.on('data', (request: OrderRequest) => call.write(this.view(request.id, call.metadata)));
    call.on('end', () => call.end());
  }

  @GrpcStreamCall(ORDER_SERVICE, 'UploadCall')
  uploadCall(call: ServerReadableStream<OrderRequest, Summary>, callback: (error: unknown, summary: Summary) => void): void {
    const ids: string[] = [];
    call.on('data', (request: OrderRequest) => ids.push(request.id));
    call.on('end', () => callback(null, { count: ids.length, ids, traceId: this.traces.getTraceId() ?? '', spanId: this.traces.getSpanId() ?? '' }));
  }
}

const tracer = trace.getTracer('grpc-e2e');

/** Runs `fn` in a new root span `caller` (with `tenant.id=acme` baggage) and ends it after. */
async function asCaller<T>(fn: (caller: Span) => Promise<T>): Promise<{ caller: Span; result: T }> {
  const baggage = propagation.createBaggage({ 'tenant.id': { value: 'acme' } });
  const caller = tracer.startSpan('caller', {}, ROOT_CONTEXT);
  const ctx = trace.setSpan(propagation.setBaggage(ROOT_CONTEXT, baggage), caller);
  try {
    return { caller, result: await context.with(ctx, () => fn(caller)) };
  } finally {
    caller.end();
  }
}

async function failureOf(source: Observable<unknown>): Promise<ServiceError> {
  try {
    await lastValueFrom(source);
  } catch (error) {
    return error as ServiceError;
  }
  throw new Error('the call succeeded');
}

/** The traceparent naming `span`, with its sampled and (Level 2) random flags. */
const traceparentOf = (span: ReadableSpan): string => {
  const { traceId, spanId, traceFlags } = span.spanContext();
  return `00-${traceId}-${spanId}-${(traceFlags & 0x03).toString(16).padStart(2, '0')}`;
};

const byKind = (spans: readonly ReadableSpan[], name: string, kind: SpanKind): ReadableSpan[] => findSpans(spans, { name, kind });

describe('gRPC: OtelServerGrpc and OtelClientGrpc on a real grpc-js server', () => {
  let app: INestMicroservice;
  let orders: OrderServiceClient;
  let target: string;
  let extra: OtelClientGrpc;
  let extraOrders: OrderServiceClient;

  beforeAll(async () => {
    target = `127.0.0.1:${await freePort()}`;
    @Module({
      imports: [
        OtelTestingModule.forRoot({ serviceName: 'orders' }),
        ClientsModule.register([
          { name: ORDERS, customClass: OtelClientGrpc, options: { package: ORDERS_PACKAGE, protoPath: ORDERS_PROTO, url: target } },
        ]),
      ],
      controllers: [OrdersController],
    })
    class OrdersModule {}
    const strategy = otelGrpc({
      package: ORDERS_PACKAGE,
      protoPath: ORDERS_PROTO,
      url: target,
      otel: { messageEvents: true, maxMessageEvents: 4 },
    });
    expect(strategy.strategy).toBeInstanceOf(OtelServerGrpc);
    app = (await Test.createTestingModule({ imports: [OrdersModule] }).compile()).createNestMicroservice(strategy);
    await app.listen();
    const client = app.get<ClientGrpc>(ORDERS);
    expect(client).toBeInstanceOf(OtelClientGrpc);
    orders = client.getService<OrderServiceClient>(ORDER_SERVICE);
    // Through ClientProxyFactory, with the opt-ins of the client side.
    extra = ClientProxyFactory.create({
      customClass: OtelClientGrpc,
      options: { package: ORDERS_PACKAGE, protoPath: ORDERS_PROTO, url: target, otel: { messageEvents: true, legacyAttributes: true } },
    }) as OtelClientGrpc;
    extraOrders = extra.getService<OrderServiceClient>(ORDER_SERVICE);
  });

  afterAll(async () => {
    extra?.close();
    await app?.close();
  });

  beforeEach(() => spanRecorder.reset());

  /** Waits until `count` spans named `name` of `kind` have ended, and returns every span. */
  async function waitFor(name: string, kind: SpanKind, count = 1): Promise<ReadableSpan[]> {
    return spanRecorder.waitForSpans((all) => byKind(all, name, kind).length >= count);
  }

  describe('the four call kinds: CLIENT parent of SERVER, the handler and user spans inside', () => {
    it('unary (@GrpcMethod, Promise): one trace, attributes, baggage, context in the metadata', async () => {
      const { caller, result } = await asCaller(() => firstValueFrom(orders.getOrder({ id: 'o-1' })));
      const spans = await waitFor(M.get, SpanKind.SERVER);
      const client = getSpan(spans, { name: M.get, kind: SpanKind.CLIENT });
      const server = getSpan(spans, { name: M.get, kind: SpanKind.SERVER });
      expectSpan(client, spans)
        .toHaveParent(caller.spanContext())
        .toHaveStatus(SpanStatusCode.UNSET)
        .toHaveAttributes({
          'rpc.system.name': 'grpc',
          'rpc.method': M.get,
          'rpc.status_code': 'OK',
          'server.address': '127.0.0.1',
          'server.port': Number(target.split(':')[1]),
          'network.peer.address': '127.0.0.1',
          'network.peer.port': Number(target.split(':')[1]),
        })
        .toNotHaveAttribute('rpc.service')
        .toNotHaveAttribute('error.type');
      expectSpan(server, spans)
        .toHaveParent(client)
        .toHaveAttributes({ 'rpc.system.name': 'grpc', 'rpc.method': M.get, 'rpc.status_code': 'OK', 'network.peer.address': '127.0.0.1' })
        .toHaveStatus(SpanStatusCode.UNSET);
      expect(server.attributes['network.peer.port']).toEqual(expect.any(Number));
      expect(server.attributes['server.address']).toBeUndefined();
      expectSpan(getSpan(spans, 'load order'), spans).toHaveParent(server);
      // The handler ran in the SERVER span, saw the caller's baggage and the client span's traceparent.
      expect(result).toMatchObject({ id: 'o-1', traceId: caller.spanContext().traceId, spanId: server.spanContext().spanId, tenant: 'acme' });
      expect(result.traceparent).toBe(traceparentOf(client));
      // Nest's interceptor named the handler on the SERVER span.
      expect(server.attributes).toMatchObject({ 'nestjs.controller': 'OrdersController', 'nestjs.handler': 'getOrder' });
    });

    it('a call made inside a handler nests under its SERVER span', async () => {
      const { caller } = await asCaller(() => firstValueFrom(orders.getOrder({ id: 'outer', thenGet: 'inner' })));
      const spans = await waitFor(M.get, SpanKind.SERVER, 2);
      const [outerClient, innerClient] = byKind(spans, M.get, SpanKind.CLIENT).sort((a, b) => a.startTime[1] - b.startTime[1] + (a.startTime[0] - b.startTime[0]) * 1e9);
      const servers = byKind(spans, M.get, SpanKind.SERVER);
      const outerServer = servers.find((span) => span.parentSpanContext?.spanId === outerClient!.spanContext().spanId)!;
      const innerServer = servers.find((span) => span.parentSpanContext?.spanId === innerClient!.spanContext().spanId)!;
      expectSpan(outerClient, spans).toHaveParent(caller.spanContext());
      expectSpan(innerClient, spans).toHaveParent(outerServer);
      expectSpan(innerServer, spans).toHaveParent(innerClient!).toBeInTraceOf(caller.spanContext());
    });

    it('server streaming (Observable handler): user spans of the pipeline under the SERVER span, capped message events', async () => {
      const { caller, result } = await asCaller(() => lastValueFrom(orders.listOrders({ id: 'l', count: 6 }).pipe(toArray())));
      expect(result.map((order) => order.id)).toEqual(['l-0', 'l-1', 'l-2', 'l-3', 'l-4', 'l-5']);
      const spans = await waitFor(M.list, SpanKind.SERVER);
      const client = getSpan(spans, { name: M.list, kind: SpanKind.CLIENT });
      const server = getSpan(spans, { name: M.list, kind: SpanKind.SERVER });
      expectSpan(client, spans).toHaveParent(caller.spanContext()).toHaveAttributes({ 'rpc.status_code': 'OK' });
      expectSpan(server, spans).toHaveParent(client).toHaveAttributes({ 'rpc.status_code': 'OK' });
      const items = findSpans(spans, 'list item');
      expect(items).toHaveLength(6);
      for (const item of items) {
        expectSpan(item, spans).toHaveParent(server);
      }
      expect(new Set(result.map((order) => order.spanId))).toEqual(new Set([server.spanContext().spanId]));
      // The server opted in: 1 received + 3 sent, then the cap of 4; the ids keep counting.
      const events = server.events.filter((event) => event.name === 'rpc.message').map((event) => event.attributes);
      expect(events).toEqual([
        { 'rpc.message.type': 'RECEIVED', 'rpc.message.id': 1 },
        { 'rpc.message.type': 'SENT', 'rpc.message.id': 1, 'rpc.message.uncompressed_size': expect.any(Number) },
        { 'rpc.message.type': 'SENT', 'rpc.message.id': 2, 'rpc.message.uncompressed_size': expect.any(Number) },
        { 'rpc.message.type': 'SENT', 'rpc.message.id': 3, 'rpc.message.uncompressed_size': expect.any(Number) },
      ]);
      // This client did not opt in.
      expect(client.events).toEqual([]);
    });

    it('client streaming (@GrpcStreamMethod): one SERVER span for the whole stream; client message events when opted in', async () => {
      const { caller, result } = await asCaller(() =>
        lastValueFrom(extraOrders.uploadOrders(from([{ id: 'u-1' }, { id: 'u-2' }, { id: 'u-3' }]))),
      );
      expect(result.ids).toEqual(['u-1', 'u-2', 'u-3']);
      const spans = await waitFor(M.upload, SpanKind.SERVER);
      const client = getSpan(spans, { name: M.upload, kind: SpanKind.CLIENT });
      const server = getSpan(spans, { name: M.upload, kind: SpanKind.SERVER });
      expectSpan(client, spans).toHaveParent(caller.spanContext());
      expectSpan(server, spans).toHaveParent(client);
      expectSpan(getSpan(spans, 'store orders'), spans).toHaveParent(server);
      expect(result.spanId).toBe(server.spanContext().spanId);
      const sent = client.events.filter((event) => event.attributes?.['rpc.message.type'] === 'SENT');
      expect(sent.map((event) => event.attributes?.['rpc.message.id'])).toEqual([1, 2, 3]);
      expect(sent[0]!.attributes?.['rpc.message.uncompressed_size']).toBe(5); // field 1, "u-1"
      expect(client.events.filter((event) => event.attributes?.['rpc.message.type'] === 'RECEIVED')).toHaveLength(1);
      // legacyAttributes: the pre-1.39 names beside the current ones.
      expect(client.attributes).toMatchObject({
        'rpc.system': 'grpc',
        'rpc.service': 'orders.v1.OrderService',
        'rpc.grpc.status_code': 0,
        'rpc.system.name': 'grpc',
        'rpc.method': M.upload,
      });
    });

    it('bidirectional (@GrpcStreamMethod): each reply made in the SERVER span', async () => {
      const requests = new Subject<OrderRequest>();
      const { caller, result } = await asCaller(async () => {
        const replies = lastValueFrom(orders.chat(requests).pipe(toArray()));
        requests.next({ id: 'c-1' });
        await sleep(10);
        requests.next({ id: 'c-2' });
        requests.complete();
        return replies;
      });
      const spans = await waitFor(M.chat, SpanKind.SERVER);
      const client = getSpan(spans, { name: M.chat, kind: SpanKind.CLIENT });
      const server = getSpan(spans, { name: M.chat, kind: SpanKind.SERVER });
      expectSpan(client, spans).toHaveParent(caller.spanContext()).toHaveAttributes({ 'rpc.status_code': 'OK' });
      expectSpan(server, spans).toHaveParent(client);
      expect(result.map((order) => [order.id, order.spanId, order.tenant])).toEqual([
        ['c-1', server.spanContext().spanId, 'acme'],
        ['c-2', server.spanContext().spanId, 'acme'],
      ]);
    });

    it('@GrpcStreamCall handlers (bidirectional and client streaming) run in the SERVER span', async () => {
      const { caller, result } = await asCaller(async () => ({
        chat: await lastValueFrom(orders.chatCall(from([{ id: 's-1' }, { id: 's-2' }])).pipe(toArray())),
        upload: await lastValueFrom(orders.uploadCall(from([{ id: 'v-1' }, { id: 'v-2' }]))),
      }));
      const spans = await spanRecorder.waitForSpans(
        (all) => byKind(all, M.chatCall, SpanKind.SERVER).length === 1 && byKind(all, M.uploadCall, SpanKind.SERVER).length === 1,
      );
      for (const [method, spanIds] of [
        [M.chatCall, result.chat.map((order) => order.spanId)],
        [M.uploadCall, [result.upload.spanId]],
      ] as const) {
        const client = getSpan(spans, { name: method, kind: SpanKind.CLIENT });
        const server = getSpan(spans, { name: method, kind: SpanKind.SERVER });
        expectSpan(client, spans).toHaveParent(caller.spanContext());
        expectSpan(server, spans).toHaveParent(client).toHaveAttributes({ 'rpc.status_code': 'OK' });
        expect(new Set(spanIds)).toEqual(new Set([server.spanContext().spanId]));
      }
      expect(result.upload.ids).toEqual(['v-1', 'v-2']);
    });
  });

  describe('status mapping: every non-OK code fails the CLIENT span, only the server-fault codes the SERVER span', () => {
    it.each([
      { code: GrpcStatus.NOT_FOUND, name: 'NOT_FOUND', serverError: false },
      { code: GrpcStatus.INVALID_ARGUMENT, name: 'INVALID_ARGUMENT', serverError: false },
      { code: GrpcStatus.PERMISSION_DENIED, name: 'PERMISSION_DENIED', serverError: false },
      { code: GrpcStatus.INTERNAL, name: 'INTERNAL', serverError: true },
      { code: GrpcStatus.UNAVAILABLE, name: 'UNAVAILABLE', serverError: true },
      { code: GrpcStatus.DATA_LOSS, name: 'DATA_LOSS', serverError: true },
    ])('RpcException({ code: $name })', async ({ code, name, serverError }) => {
      const error = await failureOf(orders.getOrder({ id: 'f', failCode: code }));
      expect(error.code).toBe(code);
      const spans = await waitFor(M.get, SpanKind.SERVER);
      const client = getSpan(spans, { name: M.get, kind: SpanKind.CLIENT });
      const server = getSpan(spans, { name: M.get, kind: SpanKind.SERVER });
      expectSpan(client, spans)
        .toHaveStatus(SpanStatusCode.ERROR, `failed with ${code}`)
        .toHaveAttributes({ 'rpc.status_code': name, 'error.type': name });
      expectSpan(server, spans).toHaveAttributes({ 'rpc.status_code': name });
      if (serverError) {
        expectSpan(server, spans).toHaveStatus(SpanStatusCode.ERROR).toHaveAttributes({ 'error.type': name });
        // The handler's own exception, recorded once on the span it failed.
        expect(server.events.filter((event) => event.name === 'exception')).toHaveLength(1);
      } else {
        expectSpan(server, spans).toHaveStatus(SpanStatusCode.UNSET).toNotHaveAttribute('error.type');
        expect(server.events.filter((event) => event.name === 'exception')).toEqual([]);
      }
    });

    it('a thrown TypeError and a bare RpcException message are UNKNOWN, an error on both sides', async () => {
      for (const id of ['crash', 'text']) {
        spanRecorder.reset();
        expect((await failureOf(orders.getOrder({ id }))).code).toBe(GrpcStatus.UNKNOWN);
        const spans = await waitFor(M.get, SpanKind.SERVER);
        const server = getSpan(spans, { name: M.get, kind: SpanKind.SERVER });
        expectSpan(getSpan(spans, { name: M.get, kind: SpanKind.CLIENT }), spans)
          .toHaveStatus(SpanStatusCode.ERROR)
          .toHaveAttributes({ 'rpc.status_code': 'UNKNOWN', 'error.type': 'UNKNOWN' });
        expectSpan(server, spans).toHaveStatus(SpanStatusCode.ERROR).toHaveAttributes({ 'rpc.status_code': 'UNKNOWN', 'error.type': 'UNKNOWN' });
        const exception = server.events.find((event) => event.name === 'exception');
        expect(exception?.attributes?.['exception.type']).toBe(id === 'crash' ? 'TypeError' : 'RpcException');
      }
    });

    it('a failing client stream maps its RpcException code', async () => {
      const error = await failureOf(orders.uploadOrders(from([{ id: 'a' }, { id: 'b', failCode: GrpcStatus.FAILED_PRECONDITION }])));
      expect(error.code).toBe(GrpcStatus.FAILED_PRECONDITION);
      const spans = await waitFor(M.upload, SpanKind.SERVER);
      expectSpan(getSpan(spans, { name: M.upload, kind: SpanKind.CLIENT }), spans).toHaveStatus(SpanStatusCode.ERROR);
      expectSpan(getSpan(spans, { name: M.upload, kind: SpanKind.SERVER }), spans)
        .toHaveStatus(SpanStatusCode.UNSET)
        .toHaveAttributes({ 'rpc.status_code': 'FAILED_PRECONDITION' });
    });

    it('a proto method without a handler: UNIMPLEMENTED; the server names it _OTHER, the client by its method', async () => {
      expect((await failureOf(orders.forgotten({ id: 'x' }))).code).toBe(GrpcStatus.UNIMPLEMENTED);
      const spans = await spanRecorder.waitForSpans((all) => findSpans(all, { kind: SpanKind.SERVER }).length === 1);
      const server = getSpan(spans, { kind: SpanKind.SERVER });
      expectSpan(server, spans)
        .toHaveName('grpc')
        .toHaveStatus(SpanStatusCode.ERROR)
        .toHaveAttributes({ 'rpc.method': '_OTHER', 'rpc.method_original': M.forgotten, 'rpc.status_code': 'UNIMPLEMENTED' });
      expectSpan(getSpan(spans, { kind: SpanKind.CLIENT }), spans)
        .toHaveName(M.forgotten)
        .toHaveAttributes({ 'rpc.method': M.forgotten, 'error.type': 'UNIMPLEMENTED' });
    });
  });

  describe('deadlines and cancellation end both spans', () => {
    it('deadline exceeded: DEADLINE_EXCEEDED, an error on both sides', async () => {
      const error = await failureOf(orders.getOrder({ id: 'late', delayMs: 300 }, new Metadata(), { deadline: Date.now() + 80 }));
      expect(error.code).toBe(GrpcStatus.DEADLINE_EXCEEDED);
      const spans = await waitFor(M.get, SpanKind.SERVER);
      for (const kind of [SpanKind.CLIENT, SpanKind.SERVER]) {
        expectSpan(getSpan(spans, { name: M.get, kind }), spans)
          .toHaveStatus(SpanStatusCode.ERROR)
          .toHaveAttributes({ 'rpc.status_code': 'DEADLINE_EXCEEDED', 'error.type': 'DEADLINE_EXCEEDED' });
      }
    });

    it('the caller unsubscribes: CANCELLED, an error on the CLIENT span only', async () => {
      const subscription = orders.getOrder({ id: 'abandoned', delayMs: 300 }).subscribe();
      await spanRecorder.waitForSpans(() => true, { timeoutMs: 50 }).catch(() => undefined);
      await sleep(50);
      subscription.unsubscribe();
      const spans = await waitFor(M.get, SpanKind.SERVER);
      expectSpan(getSpan(spans, { name: M.get, kind: SpanKind.CLIENT }), spans)
        .toHaveStatus(SpanStatusCode.ERROR)
        .toHaveAttributes({ 'rpc.status_code': 'CANCELLED', 'error.type': 'CANCELLED' });
      expectSpan(getSpan(spans, { name: M.get, kind: SpanKind.SERVER }), spans)
        .toHaveStatus(SpanStatusCode.UNSET)
        .toHaveAttributes({ 'rpc.status_code': 'CANCELLED' });
    });

    it('a server stream the caller stops reading (take): both spans end, CANCELLED', async () => {
      const first = await lastValueFrom(orders.listOrders({ id: 'long', count: 1000 }).pipe(take(2), toArray()));
      expect(first).toHaveLength(2);
      const spans = await waitFor(M.list, SpanKind.SERVER);
      expectSpan(getSpan(spans, { name: M.list, kind: SpanKind.CLIENT }), spans).toHaveAttributes({ 'rpc.status_code': 'CANCELLED' });
      expectSpan(getSpan(spans, { name: M.list, kind: SpanKind.SERVER }), spans).toHaveAttributes({ 'rpc.status_code': 'CANCELLED' });
    });
  });

  it('200 concurrent calls: 200 distinct traces, each reply in its own caller context', async () => {
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        asCaller((caller) =>
          firstValueFrom(
            orders.getOrder({ id: `c-${i}` }).pipe(map((order) => ({ order, seenBy: trace.getActiveSpan()?.spanContext().spanId, caller }))),
          ),
        ),
      ),
    );
    const spans = await waitFor(M.get, SpanKind.SERVER, 200);
    const servers = byKind(spans, M.get, SpanKind.SERVER);
    expect(new Set(servers.map((span) => span.spanContext().traceId)).size).toBe(200);
    const clients = new Map(byKind(spans, M.get, SpanKind.CLIENT).map((span) => [span.spanContext().spanId, span]));
    for (const { caller, result } of results) {
      expect(result.seenBy).toBe(caller.spanContext().spanId);
      expect(result.order.traceId).toBe(caller.spanContext().traceId);
      const server = servers.find((span) => span.spanContext().spanId === result.order.spanId)!;
      const client = clients.get(server.parentSpanContext!.spanId)!;
      expect(client.parentSpanContext?.spanId).toBe(caller.spanContext().spanId);
    }
  });

  describe('metadata from a plain grpc-js peer', () => {
    let raw: ReturnType<typeof rawOrdersClient>;
    beforeAll(() => {
      raw = rawOrdersClient(target);
    });
    afterAll(() => raw?.close());

    const GOOD = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const hostile: Array<{ name: string; metadata: () => Metadata; parent?: string; tenant?: string }> = [
      { name: 'garbage traceparent', metadata: () => md({ traceparent: 'not-a-traceparent' }) },
      { name: 'all-zero trace id', metadata: () => md({ traceparent: '00-00000000000000000000000000000000-b7ad6b7169203331-01' }) },
      { name: 'version ff', metadata: () => md({ traceparent: 'ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' }) },
      { name: 'oversized traceparent', metadata: () => md({ traceparent: `${GOOD}-${'a'.repeat(4000)}` }) },
      {
        name: 'traceparent twice',
        metadata: () => {
          const metadata = md({ traceparent: GOOD });
          metadata.add('traceparent', '00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
          return metadata;
        },
      },
      {
        name: 'binary keys only (traceparent-bin, grpc-trace-bin, baggage-bin)',
        metadata: () => {
          const metadata = new Metadata();
          metadata.set('traceparent-bin', Buffer.from(GOOD));
          metadata.set('grpc-trace-bin', Buffer.from([0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 1, 1, 2, 3, 4, 5, 6, 7, 8, 2, 1]));
          metadata.set('baggage-bin', Buffer.from('tenant.id=evil'));
          return metadata;
        },
      },
      { name: 'malformed baggage, valid traceparent', metadata: () => md({ traceparent: GOOD, baggage: '=;;,tenant.id,=%%%' }), parent: GOOD, tenant: '' },
      { name: 'oversized baggage, valid traceparent', metadata: () => md({ traceparent: GOOD, baggage: `tenant.id=${'x'.repeat(6000)}` }), parent: GOOD, tenant: '' },
    ];

    function md(values: Record<string, string>): Metadata {
      const metadata = new Metadata();
      for (const [key, value] of Object.entries(values)) {
        metadata.set(key, value);
      }
      return metadata;
    }

    it.each(hostile)('$name: no crash, a fresh root (or the valid parent), nothing echoed', async ({ metadata, parent, tenant }) => {
      const sent = metadata();
      const { error, response, headers } = await rawUnary(raw, { id: 'h' }, sent);
      expect(error).toBeUndefined();
      const spans = await waitFor(M.get, SpanKind.SERVER);
      const server = getSpan(spans, { name: M.get, kind: SpanKind.SERVER });
      if (parent) {
        expect(server.parentSpanContext?.spanId).toBe(parent.split('-')[2]);
        expect(server.spanContext().traceId).toBe(parent.split('-')[1]);
      } else {
        expectSpan(server, spans).toBeRoot();
        expect(server.spanContext().traceId).not.toBe(GOOD.split('-')[1]);
      }
      expect(response!.traceId).toBe(server.spanContext().traceId);
      expect(response!.tenant).toBe(tenant ?? '');
      // The response names the server's span, and carries none of what was sent.
      expect(headers!.get('traceparent')).toEqual([traceparentOf(server)]);
      expect(headers!.get('baggage')).toEqual([]);
      for (const [key, values] of Object.entries(sent.toJSON())) {
        if (key !== 'traceparent' || !parent) {
          expect(headers!.get(key).map(String)).not.toEqual(expect.arrayContaining(values.map(String)));
        }
      }
    });

    it('a valid context from a plain client is continued, and the response metadata names the SERVER span', async () => {
      const { response, headers } = await rawUnary(raw, { id: 'p' }, md({ traceparent: GOOD, baggage: 'tenant.id=acme' }));
      const spans = await waitFor(M.get, SpanKind.SERVER);
      const server = getSpan(spans, { name: M.get, kind: SpanKind.SERVER });
      expect(server.parentSpanContext?.spanId).toBe('b7ad6b7169203331');
      expect(response).toMatchObject({ tenant: 'acme', traceparent: GOOD, spanId: server.spanContext().spanId });
      expect(headers!.get('traceparent')).toEqual([traceparentOf(server)]);
      expect(server.spanContext().traceId).toBe('0af7651916cd43dd8448eb211c80319c');
      expect(headers!.get('baggage')).toEqual([]);
    });

    it('an error before any response (trailers-only) carries the context in the trailers', async () => {
      const { error, trailers } = await rawUnary(raw, { id: 'e', failCode: GrpcStatus.NOT_FOUND }, md({ traceparent: GOOD }));
      expect(error?.code).toBe(GrpcStatus.NOT_FOUND);
      const spans = await waitFor(M.get, SpanKind.SERVER);
      const server = getSpan(spans, { name: M.get, kind: SpanKind.SERVER });
      expect(trailers!.get('traceparent')).toEqual([traceparentOf(server)]);
    });

    it('the server still serves and traces normally afterwards', async () => {
      const { caller } = await asCaller(() => firstValueFrom(orders.getOrder({ id: 'after' })));
      const spans = await waitFor(M.get, SpanKind.SERVER);
      expectSpan(getSpan(spans, { name: M.get, kind: SpanKind.SERVER }), spans).toBeInTraceOf(caller.spanContext());
    });
  });
});

describe('gRPC: a server shut down mid-call', () => {
  it('ends the SERVER span of the call in flight, CANCELLED as its caller sees it, an ERROR server_shutdown', async () => {
    spanRecorder.reset();
    const url = `127.0.0.1:${await freePort()}`;
    @Module({
      imports: [
        OtelTestingModule.forRoot({ serviceName: 'orders' }),
        ClientsModule.register([{ name: ORDERS, customClass: OtelClientGrpc, options: { package: ORDERS_PACKAGE, protoPath: ORDERS_PROTO, url } }]),
      ],
      controllers: [OrdersController],
    })
    class ShutdownModule {}
    const app = (await Test.createTestingModule({ imports: [ShutdownModule] }).compile()).createNestMicroservice({
      strategy: new OtelServerGrpc({ package: ORDERS_PACKAGE, protoPath: ORDERS_PROTO, url }),
    });
    await app.listen();
    const raw = rawOrdersClient(url);
    try {
      const pending = rawUnary(raw, { id: 'slow', delayMs: 2000 }, new Metadata());
      await sleep(100);
      await app.close();
      const { error } = await pending;
      expect(error?.code).toBe(GrpcStatus.CANCELLED);
      const spans = await waitForServer();
      expectSpan(getSpan(spans, { name: M.get, kind: SpanKind.SERVER }), spans)
        .toHaveStatus(SpanStatusCode.ERROR, 'server shut down')
        .toHaveAttributes({ 'rpc.status_code': 'CANCELLED', 'error.type': 'server_shutdown' });
    } finally {
      raw.close();
    }

    function waitForServer(): Promise<ReadableSpan[]> {
      return spanRecorder.waitForSpans((all) => findSpans(all, { name: M.get, kind: SpanKind.SERVER }).length === 1);
    }
  });
});
