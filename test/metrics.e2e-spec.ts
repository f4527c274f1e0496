import 'reflect-metadata';
import { Controller, Get, HttpException, Module, Param, type INestApplication } from '@nestjs/common';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OtelModule } from '../lib/index.js';
import type { OtelModuleOptions } from '../lib/interfaces/otel-module-options.interface.js';
import { DURATION_BUCKETS } from '../lib/metrics/instruments.js';
import { plainRequest } from './support/http-request.js';
import { latestMetricPoints, type ReceivedMetricPoint } from './support/otlp-metrics.js';
import { freePort } from './support/private-brokers.js';
import { startOtlpReceiver, type OtlpReceiver } from './support/otlp-receiver.js';

@Controller('orders')
class OrdersController {
  @Get(':id')
  find(@Param('id') id: string): { id: string } {
    return { id };
  }

  @Get(':id/fail')
  fail(): never {
    throw new (class StockLookupFailed extends Error {})('boom');
  }

  @Get(':id/missing')
  missing(): never {
    throw new HttpException('no such order', 404);
  }

  @Get(':id/proxy')
  async proxy(@Param('id') id: string): Promise<unknown> {
    const response = await fetch(`${baseUrl}/orders/${id}`);
    return response.json();
  }
}

let baseUrl = '';

async function startApp(options: OtelModuleOptions, platform: 'express' | 'fastify' = 'express'): Promise<INestApplication> {
  @Module({ imports: [OtelModule.forRoot({ batch: false, logSummary: false, ...options })], controllers: [OrdersController] })
  class AppModule {}
  const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
  const app = platform === 'fastify' ? moduleRef.createNestApplication(new FastifyAdapter()) : moduleRef.createNestApplication();
  await app.listen(0, '127.0.0.1');
  baseUrl = (await app.getUrl()).replace('[::1]', '127.0.0.1').replace('localhost', '127.0.0.1');
  return app;
}

function series(points: readonly ReceivedMetricPoint[], name: string, attributes: Record<string, unknown> = {}): ReceivedMetricPoint[] {
  return latestMetricPoints(points).filter(
    (p) => p.name === name && Object.entries(attributes).every(([key, value]) => p.attributes[key] === value),
  );
}

function one(points: readonly ReceivedMetricPoint[], name: string, attributes: Record<string, unknown>): ReceivedMetricPoint {
  const found = series(points, name, attributes);
  expect(found, `${name} ${JSON.stringify(attributes)} in\n${latestMetricPoints(points).map((p) => `${p.name} ${JSON.stringify(p.attributes)}`).join('\n')}`).toHaveLength(1);
  return found[0]!;
}

const UNSAMPLED = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00';

describe.each(['express', 'fastify'] as const)('HTTP RED metrics at a real OTLP receiver (%s)', (platform) => {
  let receiver: OtlpReceiver;
  let points: ReceivedMetricPoint[];

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    // A long interval: the only export is the one the shutdown makes, so every assertion below
    // also proves that app.close() exports the last interval.
    const app = await startApp({ serviceName: `metrics-${platform}`, exporter: { url: receiver.url }, metrics: { interval: 600_000 } }, platform);
    expect((await plainRequest(`${baseUrl}/orders/1`)).status).toBe(200);
    expect((await plainRequest(`${baseUrl}/orders/2`)).status).toBe(200);
    // Unsampled (the caller's flags say so): no span, but counted all the same.
    expect((await plainRequest(`${baseUrl}/orders/3`, { headers: { traceparent: UNSAMPLED } })).status).toBe(200);
    expect((await plainRequest(`${baseUrl}/orders/4/fail`)).status).toBe(500);
    expect((await plainRequest(`${baseUrl}/orders/5/missing`)).status).toBe(404);
    expect((await plainRequest(`${baseUrl}/orders/6/proxy`)).status).toBe(200);
    expect(receiver.metricPoints).toHaveLength(0);
    await app.close();
    points = await receiver.waitForMetrics((p) => p.name === 'http.server.request.duration');
    points = receiver.metricPoints;
  });

  afterAll(async () => {
    await receiver.close();
  });

  it('records http.server.request.duration per route template, sampled and unsampled, in seconds with the advised buckets', () => {
    const ok = one(points, 'http.server.request.duration', { 'http.route': '/orders/:id', 'http.response.status_code': 200 });
    expect(ok).toMatchObject({ service: `metrics-${platform}`, scope: 'otel-nest', unit: 's', kind: 'histogram' });
    // Two direct requests, the unsampled one, and the one the proxy route made with fetch.
    expect(ok.count).toBe(4);
    expect(ok.explicitBounds).toEqual([...DURATION_BUCKETS]);
    expect(ok.sum).toBeGreaterThan(0);
    expect(ok.attributes).toEqual({
      'http.request.method': 'GET',
      'url.scheme': 'http',
      'http.route': '/orders/:id',
      'http.response.status_code': 200,
    });
    // Never a raw path, id or URL.
    for (const point of series(points, 'http.server.request.duration')) {
      expect(Object.keys(point.attributes).sort()).not.toContain('url.path');
      expect(JSON.stringify(point.attributes)).not.toMatch(/\/orders\/\d/);
    }
  });

  it('gives 5xx answers error.type and leaves 4xx without it (server side)', () => {
    const failed = one(points, 'http.server.request.duration', { 'http.route': '/orders/:id/fail' });
    expect(failed.attributes).toMatchObject({ 'http.response.status_code': 500, 'error.type': '500' });
    expect(failed.count).toBe(1);
    const missing = one(points, 'http.server.request.duration', { 'http.route': '/orders/:id/missing' });
    expect(missing.attributes['http.response.status_code']).toBe(404);
    expect(missing.attributes).not.toHaveProperty('error.type');
  });

  it('counts http.server.active_requests up and back down to 0', () => {
    const active = one(points, 'http.server.active_requests', { 'http.request.method': 'GET' });
    expect(active).toMatchObject({ kind: 'sum', monotonic: false, unit: '{request}', value: 0 });
    expect(active.attributes).toEqual({ 'http.request.method': 'GET', 'url.scheme': 'http' });
  });

  it('records http.client.request.duration of fetch with server.address/port, not the URL', () => {
    const client = one(points, 'http.client.request.duration', { 'http.response.status_code': 200 });
    expect(client).toMatchObject({ unit: 's', kind: 'histogram', count: 1, service: `metrics-${platform}` });
    expect(client.attributes).toMatchObject({
      'http.request.method': 'GET',
      'server.address': '127.0.0.1',
      'server.port': Number(new URL(baseUrl).port),
      'url.scheme': 'http',
    });
    expect(client.attributes).not.toHaveProperty('url.full');
  });
});

describe('metrics set-up', () => {
  it('off by default: no /v1/metrics request at all', async () => {
    const receiver = await startOtlpReceiver();
    const app = await startApp({ serviceName: 'metrics-off', exporter: { url: receiver.url } });
    await plainRequest(`${baseUrl}/orders/1`);
    await app.close();
    await receiver.waitForSpans(1);
    expect(receiver.requests.map((r) => r.path)).not.toContain('/v1/metrics');
    expect(receiver.requests.length).toBeGreaterThan(0);
    await receiver.close();
  });

  it('a request made just before app.close() is in the final export', async () => {
    const receiver = await startOtlpReceiver();
    const app = await startApp({ serviceName: 'metrics-last', exporter: { url: receiver.url }, metrics: { interval: 600_000 } });
    await plainRequest(`${baseUrl}/orders/last`);
    await app.close();
    const [point] = await receiver.waitForMetrics((p) => p.name === 'http.server.request.duration');
    expect(point!.count).toBe(1);
    expect(receiver.requests.filter((r) => r.path === '/v1/metrics')).toHaveLength(1);
    await receiver.close();
  });

  it('OTEL_EXPORTER_OTLP_METRICS_ENDPOINT wins over the traces collector', async () => {
    const traces = await startOtlpReceiver();
    const metricsReceiver = await startOtlpReceiver();
    process.env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT = metricsReceiver.metricsUrl;
    try {
      const app = await startApp({ serviceName: 'metrics-env', exporter: { url: traces.url }, metrics: { interval: 600_000 } });
      await plainRequest(`${baseUrl}/orders/1`);
      await app.close();
    } finally {
      delete process.env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT;
    }
    await metricsReceiver.waitForMetrics((p) => p.name === 'http.server.request.duration');
    expect(traces.requests.map((r) => r.path)).not.toContain('/v1/metrics');
    await Promise.all([traces.close(), metricsReceiver.close()]);
  });

  it('serves the Prometheus scrape endpoint with the same metrics', async () => {
    const port = await freePort();
    const app = await startApp({ serviceName: 'metrics-prom', exporter: 'none', metrics: { exporter: { prometheus: { port, host: '127.0.0.1' } } } });
    try {
      await plainRequest(`${baseUrl}/orders/1`);
      await plainRequest(`${baseUrl}/orders/2/fail`);
      const scrape = await scrapeWhenReady(`http://127.0.0.1:${port}/metrics`);
      expect(scrape.status).toBe(200);
      const lines = scrape.text.split('\n');
      const count = lines.find(
        (line) => line.startsWith('http_server_request_duration_count{') && line.includes('http_route="/orders/:id"') && line.includes('http_response_status_code="200"'),
      );
      expect(count, scrape.text).toMatch(/ 1$/);
      // The SDK's exporter names it without a unit suffix, and keeps the advised buckets.
      expect(lines).toContain('# UNIT http_server_request_duration s');
      expect(lines.some((line) => line.startsWith('http_server_request_duration_bucket{') && line.includes('le="0.005"'))).toBe(true);
      expect(lines.some((line) => line.includes('error_type="500"'))).toBe(true);
      expect(lines.find((line) => line.startsWith('http_server_active_requests{'))).toMatch(/ 0$/);
    } finally {
      await app.close();
    }
    // The endpoint stops with the application.
    await expect(plainRequest(`http://127.0.0.1:${port}/metrics`)).rejects.toThrow();
  });
});

/**
 * The scrape, once the exporter's server answers: it starts listening asynchronously, and a request
 * is bounded so that a port taken by something that never answers fails the test, not hangs it.
 */
async function scrapeWhenReady(url: string): Promise<{ status: number; text: string }> {
  const deadline = Date.now() + 15_000;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      return { status: response.status, text: await response.text() };
    } catch (error) {
      last = error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw new Error(`no answer from ${url} within 15 s: ${String(last)}`);
}
