import 'reflect-metadata';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Controller, Module, type INestMicroservice } from '@nestjs/common';
import { ClientProxyFactory, GrpcMethod, GrpcStreamMethod, RpcException } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { Metadata, status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { firstValueFrom, from, lastValueFrom, map, type Observable, toArray } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TraceService } from '../lib/index.js';
import { OtelTestingModule, expectSpan, findSpans, getSpan, spanRecorder } from '../lib/testing/index.js';
import { OtelClientGrpc, OtelServerGrpc } from '../lib/transports/grpc/index.js';
import { startChildApp, type ChildApp } from './support/child-app.js';
import { freePort, M, ORDER_SERVICE, orderView, ORDERS_PACKAGE, ORDERS_PROTO, type Order, type OrderRequest, type OrderServiceClient } from './support/grpc-fixtures.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './support/otlp-receiver.js';

const PEER = fileURLToPath(new URL('./fixtures/grpc/plain-peer.cjs', import.meta.url));
/** instrumentation-grpc's span names: `grpc.` and the path without its leading slash. */
const PLAIN = { get: `grpc.${M.get}`, list: `grpc.${M.list}`, chat: `grpc.${M.chat}` };
const OTLP_SERVER = 2;
const OTLP_CLIENT = 3;

@Controller()
class OrdersController {
  constructor(private readonly traces: TraceService) {}

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
    return this.view(request.id, metadata);
  }

  @GrpcMethod(ORDER_SERVICE, 'ListOrders')
  listOrders(request: OrderRequest, metadata: Metadata): Observable<Order> {
    return from(Array.from({ length: request.count || 1 }, (_, i) => this.view(`${request.id}-${i}`, metadata)));
  }

  @GrpcStreamMethod(ORDER_SERVICE, 'Chat')
  chat(requests: Observable<OrderRequest>, metadata: Metadata): Observable<Order> {
    return requests.pipe(map((request) => this.view(request.id, metadata)));
  }
}

interface PeerResult {
  ok: boolean;
  value?: any;
  code?: number;
  caller: { traceId: string; spanId: string };
}

const tracer = trace.getTracer('grpc-interop-e2e');

async function asCaller<T>(fn: () => Promise<T>): Promise<{ caller: Span; result: T }> {
  const baggage = propagation.createBaggage({ 'tenant.id': { value: 'acme' } });
  const caller = tracer.startSpan('caller', {}, ROOT_CONTEXT);
  try {
    const result = await context.with(trace.setSpan(propagation.setBaggage(ROOT_CONTEXT, baggage), caller), fn);
    return { caller, result };
  } finally {
    caller.end();
  }
}

describe('gRPC interop with a plain grpc-js peer traced by @opentelemetry/instrumentation-grpc', () => {
  let receiver: OtlpReceiver;
  let app: INestMicroservice;
  let peer: ChildApp;
  let client: OtelClientGrpc;
  let orders: OrderServiceClient;
  /** What the peer's own calls to the Nest server resolved with, by name. */
  const results = new Map<string, PeerResult>();
  /** The SERVER spans of the Nest server, recorded while the peer called it. */
  let nestSpans: ReadableSpan[];

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    spanRecorder.reset();
    const target = `127.0.0.1:${await freePort()}`;
    @Module({ imports: [OtelTestingModule.forRoot({ serviceName: 'orders' })], controllers: [OrdersController] })
    class OrdersModule {}
    app = (await Test.createTestingModule({ imports: [OrdersModule] }).compile()).createNestMicroservice({
      strategy: new OtelServerGrpc({ package: ORDERS_PACKAGE, protoPath: ORDERS_PROTO, url: target }),
    });
    await app.listen();
    // The peer calls the Nest server first (five calls), then listens.
    peer = await startChildApp(PEER, { OTLP_URL: receiver.url, NEST_TARGET: target, PROTO: ORDERS_PROTO });
    for (const match of peer.output().matchAll(/^RESULT (\S+) (.*)$/gm)) {
      results.set(match[1]!, JSON.parse(match[2]!) as PeerResult);
    }
    nestSpans = await spanRecorder.waitForSpans((all) => findSpans(all, { kind: SpanKind.SERVER }).length >= 5);
    client = ClientProxyFactory.create({
      customClass: OtelClientGrpc,
      options: { package: ORDERS_PACKAGE, protoPath: ORDERS_PROTO, url: `127.0.0.1:${peer.port}` },
    }) as OtelClientGrpc;
    orders = client.getService<OrderServiceClient>(ORDER_SERVICE);
  });

  afterAll(async () => {
    client?.close();
    await peer?.stop();
    await app?.close();
    await receiver?.close();
  });

  /** The peer's span of `kind` named `name` in `traceId`. */
  async function peerSpan(name: string, kind: number, traceId: string): Promise<ReceivedSpan> {
    const [span] = await receiver.waitForSpans((s) => s.name === name && s.kind === kind && s.traceId === traceId, 5000);
    return span!;
  }

  /** The Nest SERVER span that answered the peer's call `result`. */
  function nestServerOf(result: PeerResult, name: string): ReadableSpan {
    return getSpan(nestSpans, (span) => span.name === name && span.kind === SpanKind.SERVER && span.spanContext().traceId === result.caller.traceId);
  }

  describe('plain client -> Nest server', () => {
    it('unary: one trace, the plain CLIENT span the parent of the SERVER span, baggage arriving', async () => {
      const result = results.get('unary')!;
      expect(result.ok).toBe(true);
      const plainClient = await peerSpan(PLAIN.get, OTLP_CLIENT, result.caller.traceId);
      expect(plainClient.parentSpanId).toBe(result.caller.spanId);
      const server = nestServerOf(result, M.get);
      expect(server.parentSpanContext?.spanId).toBe(plainClient.spanId);
      expect(result.value).toMatchObject({ tenant: 'acme', span_id: server.spanContext().spanId, trace_id: result.caller.traceId });
      expectSpan(server, nestSpans).toHaveAttributes({ 'rpc.status_code': 'OK', 'rpc.method': M.get });
    });

    it('an error status: ERROR on the plain CLIENT span, unset on the Nest SERVER span (NOT_FOUND)', async () => {
      const result = results.get('not-found')!;
      expect(result).toMatchObject({ ok: false, code: GrpcStatus.NOT_FOUND });
      const plainClient = await peerSpan(PLAIN.get, OTLP_CLIENT, result.caller.traceId);
      expect(plainClient.status.code).toBe(2);
      const server = nestServerOf(result, M.get);
      expect(server.parentSpanContext?.spanId).toBe(plainClient.spanId);
      expectSpan(server, nestSpans).toHaveStatus(SpanStatusCode.UNSET).toHaveAttributes({ 'rpc.status_code': 'NOT_FOUND' });
    });

    it("the plain client's deadline: DEADLINE_EXCEEDED on both", async () => {
      const result = results.get('deadline')!;
      expect(result).toMatchObject({ ok: false, code: GrpcStatus.DEADLINE_EXCEEDED });
      const plainClient = await peerSpan(PLAIN.get, OTLP_CLIENT, result.caller.traceId);
      expect(plainClient.attributes['rpc.grpc.status_code']).toBe(GrpcStatus.DEADLINE_EXCEEDED);
      const server = nestServerOf(result, M.get);
      expectSpan(server, nestSpans)
        .toHaveStatus(SpanStatusCode.ERROR)
        .toHaveAttributes({ 'rpc.status_code': 'DEADLINE_EXCEEDED', 'error.type': 'DEADLINE_EXCEEDED' });
    });

    it('server streaming and bidirectional: one trace each, every reply made in the SERVER span', async () => {
      for (const [name, method, plainName, count] of [
        ['server-stream', M.list, PLAIN.list, 3],
        ['bidi', M.chat, PLAIN.chat, 2],
      ] as const) {
        const result = results.get(name)!;
        expect(result.ok).toBe(true);
        expect(result.value).toHaveLength(count);
        const plainClient = await peerSpan(plainName, OTLP_CLIENT, result.caller.traceId);
        const server = nestServerOf(result, method);
        expect(server.parentSpanContext?.spanId).toBe(plainClient.spanId);
        for (const order of result.value as Array<{ span_id: string; tenant: string }>) {
          expect(order).toMatchObject({ span_id: server.spanContext().spanId, tenant: 'acme' });
        }
      }
    });
  });

  describe('Nest client -> plain server', () => {
    it('unary: one trace, the Nest CLIENT span the parent of the plain SERVER span, baggage arriving', async () => {
      spanRecorder.reset();
      const { caller, result } = await asCaller(() => firstValueFrom(orders.getOrder({ id: 'n-1' })));
      const spans = await spanRecorder.waitForSpans((all) => findSpans(all, { name: M.get, kind: SpanKind.CLIENT }).length === 1);
      const nestClient = getSpan(spans, { name: M.get, kind: SpanKind.CLIENT });
      expectSpan(nestClient, spans).toHaveParent(caller.spanContext()).toHaveAttributes({ 'rpc.status_code': 'OK' });
      const plainServer = await peerSpan(PLAIN.get, OTLP_SERVER, caller.spanContext().traceId);
      expect(plainServer.parentSpanId).toBe(nestClient.spanContext().spanId);
      expect(result).toMatchObject({ tenant: 'acme', traceId: caller.spanContext().traceId, spanId: plainServer.spanId });
    });

    it('an error status and a deadline: ERROR on the Nest CLIENT span, the plain SERVER span in the same trace', async () => {
      for (const [request, options, code] of [
        [{ id: 'n-2', failCode: GrpcStatus.ALREADY_EXISTS }, {}, GrpcStatus.ALREADY_EXISTS],
        [{ id: 'n-3', delayMs: 300 }, { deadline: Date.now() + 80 }, GrpcStatus.DEADLINE_EXCEEDED],
      ] as const) {
        spanRecorder.reset();
        const { caller, result } = await asCaller(() =>
          firstValueFrom(orders.getOrder(request, new Metadata(), options)).then(
            () => undefined,
            (error: ServiceError) => error,
          ),
        );
        expect(result?.code).toBe(code);
        const spans = await spanRecorder.waitForSpans((all) => findSpans(all, { name: M.get, kind: SpanKind.CLIENT }).length === 1);
        const nestClient = getSpan(spans, { name: M.get, kind: SpanKind.CLIENT });
        const name = code === GrpcStatus.ALREADY_EXISTS ? 'ALREADY_EXISTS' : 'DEADLINE_EXCEEDED';
        expectSpan(nestClient, spans).toHaveStatus(SpanStatusCode.ERROR).toHaveAttributes({ 'rpc.status_code': name, 'error.type': name });
        const plainServer = await peerSpan(PLAIN.get, OTLP_SERVER, caller.spanContext().traceId);
        expect(plainServer.parentSpanId).toBe(nestClient.spanContext().spanId);
      }
    });

    it('server streaming and bidirectional: one trace each', async () => {
      spanRecorder.reset();
      const { caller, result } = await asCaller(async () => ({
        list: await lastValueFrom(orders.listOrders({ id: 'n-4', count: 2 }).pipe(toArray())),
        chat: await lastValueFrom(orders.chat(from([{ id: 'n-5a' }, { id: 'n-5b' }])).pipe(toArray())),
      }));
      const spans = await spanRecorder.waitForSpans((all) => findSpans(all, { kind: SpanKind.CLIENT }).length === 2);
      for (const [method, plainName, replies] of [
        [M.list, PLAIN.list, result.list],
        [M.chat, PLAIN.chat, result.chat],
      ] as const) {
        const nestClient = getSpan(spans, { name: method, kind: SpanKind.CLIENT });
        expectSpan(nestClient, spans).toHaveParent(caller.spanContext()).toHaveAttributes({ 'rpc.status_code': 'OK' });
        const plainServer = await peerSpan(plainName, OTLP_SERVER, caller.spanContext().traceId);
        expect(plainServer.parentSpanId).toBe(nestClient.spanContext().spanId);
        expect(replies.map((order) => order.tenant)).toEqual(replies.map(() => 'acme'));
      }
    });
  });
});

