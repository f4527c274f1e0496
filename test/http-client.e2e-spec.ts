import 'reflect-metadata';
import { HttpModule, HttpService } from '@nestjs/axios';
import { Controller, Get, Headers, Inject, Module, Param, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { firstValueFrom, map, type Observable } from 'rxjs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { plainRequest } from './support/http-request.js';
import { OtelTestingModule, expectSpan, findSpans, getSpan, spanRecorder, traceOf } from '../lib/testing/index.js';

const BACKEND_URL = Symbol('BACKEND_URL');

@Controller('stock')
class StockController {
  @Get(':sku')
  find(@Param('sku') sku: string, @Headers('traceparent') traceparent?: string): { sku: string; traceparent?: string } {
    return { sku, traceparent };
  }

  @Get(':sku/missing')
  missing(): never {
    throw new (class NotHere extends Error {})('no such sku');
  }
}

@Module({ imports: [OtelTestingModule.forRoot({ serviceName: 'inventory' })], controllers: [StockController] })
class BackendModule {}

@Controller('gateway')
class GatewayController {
  constructor(
    private readonly http: HttpService,
    @Inject(BACKEND_URL) private readonly backend: { url: string },
  ) {}

  @Get('fetch/:sku')
  async viaFetch(@Param('sku') sku: string): Promise<unknown> {
    const response = await fetch(`${this.backend.url}/stock/${sku}`);
    return response.json();
  }

  @Get('axios/:sku')
  viaHttpService(@Param('sku') sku: string): Observable<unknown> {
    return this.http.get(`${this.backend.url}/stock/${sku}`).pipe(map((response) => response.data));
  }

  @Get('axios-fail/:sku')
  async viaHttpServiceFailing(@Param('sku') sku: string): Promise<{ status: number }> {
    try {
      await firstValueFrom(this.http.get(`${this.backend.url}/stock/${sku}/missing`));
      return { status: 200 };
    } catch (error) {
      return { status: (error as { response?: { status: number } }).response?.status ?? -1 };
    }
  }
}

describe('outgoing HTTP: fetch and HttpService continue the trace into a second Nest app', () => {
  let backend: INestApplication;
  let gateway: INestApplication;
  let gatewayUrl: string;
  const backendRef = { url: '' };

  beforeAll(async () => {
    backend = (await Test.createTestingModule({ imports: [BackendModule] }).compile()).createNestApplication();
    await backend.listen(0, '127.0.0.1');
    backendRef.url = (await backend.getUrl()).replace('[::1]', '127.0.0.1');

    @Module({
      imports: [OtelTestingModule.forRoot({ serviceName: 'gateway' }), HttpModule],
      controllers: [GatewayController],
      providers: [{ provide: BACKEND_URL, useValue: backendRef }],
    })
    class GatewayModule {}

    gateway = (await Test.createTestingModule({ imports: [GatewayModule] }).compile()).createNestApplication();
    await gateway.listen(0, '127.0.0.1');
    gatewayUrl = (await gateway.getUrl()).replace('[::1]', '127.0.0.1');
  });

  afterAll(async () => {
    await gateway?.close();
    await backend?.close();
  });

  beforeEach(() => spanRecorder.reset());

  function threeHopTrace(spans: readonly ReadableSpan[], gatewayRoute: string): { server: ReadableSpan; client: ReadableSpan; downstream: ReadableSpan } {
    const server = getSpan(spans, { name: `GET ${gatewayRoute}`, kind: SpanKind.SERVER });
    const client = getSpan(traceOf(spans, server), { kind: SpanKind.CLIENT });
    const downstream = getSpan(traceOf(spans, server), { name: 'GET /stock/:sku', kind: SpanKind.SERVER });
    return { server, client, downstream };
  }

  it.each([
    ['fetch', '/gateway/fetch/:sku'],
    ['axios', '/gateway/axios/:sku'],
  ])('%s: gateway SERVER -> CLIENT -> backend SERVER is one trace', async (kind, route) => {
    const response = await plainRequest(`${gatewayUrl}/gateway/${kind}/sku-1`);
    const body = response.json() as { sku: string; traceparent: string };
    expect(body.sku).toBe('sku-1');

    const spans = await spanRecorder.waitForSpans((s) => findSpans(s, { kind: SpanKind.SERVER }).length >= 2 && findSpans(s, { kind: SpanKind.CLIENT }).length >= 1);
    const { server, client, downstream } = threeHopTrace(spans, route);
    expectSpan(client, spans)
      .toHaveParent(server)
      .toHaveName('GET')
      .toHaveAttributes({
        'http.request.method': 'GET',
        'server.address': '127.0.0.1',
        'server.port': Number(new URL(backendRef.url).port),
        'http.response.status_code': 200,
      });
    expect(client.attributes['url.full']).toBe(`${backendRef.url}/stock/sku-1`);
    expectSpan(downstream, spans).toHaveParent(client);
    // What went over the wire: the traceparent header names the CLIENT span (sampled, and random:
    // Level 2's flag for a trace this SDK started).
    expect(body.traceparent).toBe(`00-${client.spanContext().traceId}-${client.spanContext().spanId}-03`);
  });

  it('HttpService: a 500 answer makes the CLIENT span ERROR with error.type', async () => {
    const response = await plainRequest(`${gatewayUrl}/gateway/axios-fail/sku-2`);
    expect(response.json()).toEqual({ status: 500 });
    const spans = await spanRecorder.waitForSpans((s) => findSpans(s, { kind: SpanKind.SERVER }).length >= 2);
    const server = getSpan(spans, { name: 'GET /gateway/axios-fail/:sku' });
    const client = getSpan(traceOf(spans, server), { kind: SpanKind.CLIENT });
    expectSpan(client, spans)
      .toHaveParent(server)
      .toHaveStatus(SpanStatusCode.ERROR)
      .toHaveAttributes({ 'http.response.status_code': 500, 'error.type': '500' });
    expectSpan(getSpan(traceOf(spans, server), { name: 'GET /stock/:sku/missing' }), spans)
      .toHaveParent(client)
      .toHaveStatus(SpanStatusCode.ERROR);
    // The caller handled the failure: its own SERVER span is fine.
    expectSpan(server, spans).toHaveStatus(SpanStatusCode.UNSET);
  });
});
