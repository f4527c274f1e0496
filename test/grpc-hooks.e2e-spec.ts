import 'reflect-metadata';
import * as grpc from '@grpc/grpc-js';
import { Controller, Module, type INestApplication } from '@nestjs/common';
import { ClientsModule, GrpcMethod, RpcException, type ClientGrpc } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import type { Span } from '@opentelemetry/api';
import { firstValueFrom } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OtelModule } from '../lib/index.js';
import { OtelClientGrpc, otelGrpc, type GrpcCallInfo, type GrpcCallResultInfo } from '../lib/transports/grpc/index.js';
import { freePort, M, ORDER_SERVICE, ORDERS_PACKAGE, ORDERS_PROTO, type OrderRequest, type OrderServiceClient } from './support/grpc-fixtures.js';
import { startOtlpReceiver, type OtlpReceiver } from './support/otlp-receiver.js';

const SERVER = 2;
const CLIENT = 3;

@Controller()
class OrdersController {
  @GrpcMethod(ORDER_SERVICE, 'GetOrder')
  getOrder(request: OrderRequest): { id: string } {
    if (request.failCode) {
      throw new RpcException({ code: request.failCode, message: 'no such order' });
    }
    return { id: request.id };
  }
}

describe('gRPC hooks and ignore: requestHook / responseHook on SERVER and CLIENT spans, ignore leaves no span of ours', () => {
  let receiver: OtlpReceiver;
  let app: INestApplication;
  let orders: OrderServiceClient;
  let quiet: OrderServiceClient;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    const url = `127.0.0.1:${await freePort()}`;
    const requestHook = (span: Span, info: GrpcCallInfo): void => {
      span.setAttribute('app.side', info.side);
      span.setAttribute('app.method', info.method);
      if (info.side === 'server') {
        const tenant = (info.metadata as grpc.Metadata).get('x-tenant')[0];
        span.setAttribute('app.tenant', String(tenant ?? 'none'));
        if (tenant === 'break') {
          throw new Error('a broken request hook');
        }
      }
    };
    const responseHook = (span: Span, info: GrpcCallResultInfo): void => {
      span.setAttribute('app.code', info.code);
      span.setAttribute('app.had_error', info.error !== undefined);
    };

    @Module({
      imports: [
        OtelModule.forRoot({ serviceName: 'grpc-hooks', exporter: { url: receiver.url }, batch: false, logSummary: false }),
        ClientsModule.register([
          { name: 'ORDERS', customClass: OtelClientGrpc, options: { package: ORDERS_PACKAGE, protoPath: ORDERS_PROTO, url, otel: { requestHook, responseHook } } },
          { name: 'QUIET', customClass: OtelClientGrpc, options: { package: ORDERS_PACKAGE, protoPath: ORDERS_PROTO, url, otel: { ignore: () => true } } },
        ]),
      ],
      controllers: [OrdersController],
    })
    class AppModule {}
    app = (await Test.createTestingModule({ imports: [AppModule] }).compile()).createNestApplication({ logger: false });
    app.connectMicroservice(
      otelGrpc({
        package: ORDERS_PACKAGE,
        protoPath: ORDERS_PROTO,
        url,
        otel: { requestHook, responseHook, ignore: (info) => (info.metadata as grpc.Metadata).get('x-skip').length > 0 },
      }),
      // Global enhancers (otel-nest's interceptor, which keeps the handler's error) apply to a connected microservice only so.
      { inheritAppConfig: true },
    );
    await app.startAllMicroservices();
    await app.init();
    orders = app.get<ClientGrpc>('ORDERS').getService<OrderServiceClient>(ORDER_SERVICE);
    quiet = app.get<ClientGrpc>('QUIET').getService<OrderServiceClient>(ORDER_SERVICE);
  });

  afterAll(async () => {
    await app?.close();
    await receiver?.close();
  });

  const metadata = (entries: Record<string, string>): grpc.Metadata => {
    const m = new grpc.Metadata();
    for (const [key, value] of Object.entries(entries)) {
      m.set(key, value);
    }
    return m;
  };

  it('both hooks run on both sides, with the method, the metadata (server) and the status', async () => {
    await firstValueFrom(orders.getOrder({ id: 'o-1' }, metadata({ 'x-tenant': 'acme' })));
    const [server] = await receiver.waitForSpans((s) => s.kind === SERVER && s.attributes['app.tenant'] === 'acme');
    const client = (await receiver.waitForSpans((s) => s.kind === CLIENT && s.spanId === server!.parentSpanId))[0]!;
    expect(server!.attributes).toMatchObject({ 'app.side': 'server', 'app.method': M.get, 'app.code': 0, 'app.had_error': false });
    expect(client.attributes).toMatchObject({ 'app.side': 'client', 'app.method': M.get, 'app.code': 0 });
  });

  it('responseHook sees the failing status and the handler\'s error', async () => {
    await expect(firstValueFrom(orders.getOrder({ id: 'o-2', failCode: 13 }, metadata({ 'x-tenant': 'fail' })))).rejects.toMatchObject({ code: 13 });
    const [server] = await receiver.waitForSpans((s) => s.kind === SERVER && s.attributes['app.tenant'] === 'fail');
    expect(server!.attributes).toMatchObject({ 'app.code': 13, 'app.had_error': true });
  });

  it('a throwing requestHook is ignored: the call succeeds and its span is exported', async () => {
    await expect(firstValueFrom(orders.getOrder({ id: 'o-3' }, metadata({ 'x-tenant': 'break' })))).resolves.toMatchObject({ id: 'o-3' });
    const [server] = await receiver.waitForSpans((s) => s.kind === SERVER && s.attributes['app.tenant'] === 'break');
    expect(server!.attributes['app.code']).toBe(0);
  });

  it('server ignore: no SERVER span; the call is answered', async () => {
    await expect(firstValueFrom(orders.getOrder({ id: 'o-4' }, metadata({ 'x-skip': '1', 'x-tenant': 'skipped' })))).resolves.toMatchObject({ id: 'o-4' });
    const [client] = await receiver.waitForSpans((s) => s.kind === CLIENT && s.attributes['app.code'] === 0 && !receiver.spans.some((x) => x.parentSpanId === s.spanId));
    expect(client).toBeDefined();
    expect(receiver.spans.filter((s) => s.attributes['app.tenant'] === 'skipped')).toEqual([]);
  });

  it('client ignore: no CLIENT span; the server span is a root continuing nothing of ours, or the caller\'s context', async () => {
    const before = receiver.spans.length;
    await expect(firstValueFrom(quiet.getOrder({ id: 'o-5' }, metadata({ 'x-tenant': 'quiet' })))).resolves.toMatchObject({ id: 'o-5' });
    const [server] = await receiver.waitForSpans((s) => s.kind === SERVER && s.attributes['app.tenant'] === 'quiet');
    // Called outside any span: the caller's context is empty, so the SERVER span starts a trace.
    expect(server!.parentSpanId).toBeUndefined();
    expect(receiver.spans.slice(before).filter((s) => s.kind === CLIENT)).toEqual([]);
  });
});
