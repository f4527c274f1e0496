import { request as httpRequest } from 'node:http';
import { gzipSync } from 'node:zlib';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { TracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CLI_USAGE, CliUsageError, parseViewerArgs } from './cli-args.js';
import type { TraceDetail, TraceSummary } from './devtools.interfaces.js';
import { startTraceViewer, type TraceViewer } from './trace-viewer.server.js';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';

function otlpBody(spans: Array<Record<string, unknown>>, service = 'spec'): string {
  return JSON.stringify({
    resourceSpans: [
      {
        resource: { attributes: [{ key: 'service.name', value: { stringValue: service } }] },
        scopeSpans: [{ scope: { name: 'spec' }, spans }],
      },
    ],
  });
}

function rawSpan(spanId: string, fields: Record<string, unknown> = {}): Record<string, unknown> {
  return { traceId: TRACE_ID, spanId, name: `span ${spanId}`, kind: 2, startTimeUnixNano: '1700000000000000000', endTimeUnixNano: '1700000000500000000', ...fields };
}

async function post(viewer: TraceViewer, body: string | Buffer, headers: Record<string, string> = { 'content-type': 'application/json' }): Promise<{ status: number; body: unknown }> {
  const response = await fetch(viewer.otlpUrl, { method: 'POST', headers, body });
  return { status: response.status, body: await response.json() };
}

/** A request with a Host header of our choosing (fetch does not allow setting it). */
function getWithHost(viewer: TraceViewer, path: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = httpRequest({ host: '127.0.0.1', port: viewer.port, path, headers: { host } }, (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    });
    request.on('error', reject);
    request.end();
  });
}

describe('startTraceViewer', () => {
  let viewer: TraceViewer;

  beforeEach(async () => {
    viewer = await startTraceViewer({ port: 0, maxTraces: 5, maxSpansPerTrace: 3, maxBodyBytes: 64 * 1024 });
  });
  afterEach(async () => {
    await viewer.close();
  });

  it('listens on 127.0.0.1 and names its URLs', () => {
    expect(viewer.url).toBe(`http://127.0.0.1:${viewer.port}/`);
    expect(viewer.otlpUrl).toBe(`http://127.0.0.1:${viewer.port}/v1/traces`);
    expect(viewer.endpoint).toBe(`http://127.0.0.1:${viewer.port}`);
    expect(viewer.port).toBeGreaterThan(0);
  });

  it.each([['none'], ['gzip']] as const)('stores what the real OTLP/HTTP exporter sends (compression %s)', async (compression) => {
    const provider = new TracerProvider({
      resource: resourceFromAttributes({ 'service.name': 'exporter-spec' }),
      spanProcessors: [new SimpleSpanProcessor({ exporter: new OTLPTraceExporter({ url: viewer.otlpUrl, compression: compression as never }) })],
    });
    const tracer = provider.getTracer('spec');
    const root = tracer.startSpan('GET /orders', { kind: SpanKind.SERVER });
    const child = tracer.startSpan('SELECT orders', { kind: SpanKind.CLIENT }, trace.setSpan(ROOT_CONTEXT, root));
    child.setStatus({ code: SpanStatusCode.ERROR, message: 'timeout' });
    child.end();
    root.end();
    await provider.forceFlush();
    await provider.shutdown();

    const list = (await (await fetch(`${viewer.endpoint}/api/traces`)).json()) as TraceSummary[];
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ rootName: 'GET /orders', services: ['exporter-spec'], spanCount: 2, error: true });
    const detail = (await (await fetch(`${viewer.endpoint}/api/traces/${list[0]!.traceId}`)).json()) as TraceDetail;
    expect(detail.rows.map((row) => [row.span.name, row.depth, row.span.kind])).toEqual([
      ['GET /orders', 0, 2],
      ['SELECT orders', 1, 3],
    ]);
  });

  it('answers 200 {} to a valid request, gzip or deflate encoded', async () => {
    expect(await post(viewer, gzipSync(otlpBody([rawSpan('0000000000000001')])), { 'content-type': 'application/json', 'content-encoding': 'gzip' })).toEqual({
      status: 200,
      body: {},
    });
    expect(viewer.store.spans(TRACE_ID)).toHaveLength(1);
  });

  it('reports spans over the per-trace cap as a partial success', async () => {
    const spans = ['1', '2', '3', '4'].map((id) => rawSpan(id.padStart(16, '0')));
    const response = await post(viewer, otlpBody(spans));
    expect(response).toEqual({
      status: 200,
      body: { partialSuccess: { rejectedSpans: 1, errorMessage: expect.stringContaining('at most 3 spans') } },
    });
  });

  it.each([
    ['invalid JSON', '{"resourceSpans": [', 400, /Malformed OTLP\/JSON/],
    ['a bad span id', otlpBody([rawSpan('xyz')]), 400, /spanId/],
    ['a JSON array', '[]', 400, /must be an object/],
  ])('refuses %s with 400 and keeps serving', async (_label, body, status, message) => {
    const response = await post(viewer, body);
    expect(response.status).toBe(status);
    expect((response.body as { code: number; message: string }).message).toMatch(message);
    expect((response.body as { code: number }).code).toBe(3);
    expect((await post(viewer, otlpBody([rawSpan('00000000000000aa')]))).status).toBe(200);
  });

  it('refuses protobuf, unknown encodings, a broken gzip stream and oversized bodies', async () => {
    expect(await post(viewer, Buffer.from([0x0a, 0x00]), { 'content-type': 'application/x-protobuf' })).toMatchObject({
      status: 415,
      body: { message: expect.stringContaining('http/json') },
    });
    expect((await post(viewer, 'x', { 'content-type': 'application/json', 'content-encoding': 'br' })).status).toBe(415);
    expect((await post(viewer, 'not gzip', { 'content-type': 'application/json', 'content-encoding': 'gzip' })).status).toBe(400);
    expect((await post(viewer, 'x'.repeat(65 * 1024))).status).toBe(413);
    // A small gzip body that inflates past the limit.
    const bomb = gzipSync(Buffer.alloc(1024 * 1024, 0x20));
    expect((await post(viewer, bomb, { 'content-type': 'application/json', 'content-encoding': 'gzip' })).status).toBe(413);
    expect((await fetch(viewer.otlpUrl)).status).toBe(405);
    expect((await post(viewer, otlpBody([rawSpan('00000000000000ab')]))).status).toBe(200);
  });

  it('serves the page with a strict Content-Security-Policy and no span data in the markup', async () => {
    await post(viewer, otlpBody([rawSpan('0000000000000001', { name: '<img src=x onerror=alert(1)>' })]));
    for (const path of ['/', `/trace/${TRACE_ID}`]) {
      const response = await fetch(`${viewer.endpoint}${path}`);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
      const csp = response.headers.get('content-security-policy')!;
      expect(csp).toMatch(/default-src 'none'/);
      expect(csp).toMatch(/script-src 'sha256-[A-Za-z0-9+/=]+'/);
      expect(csp).not.toMatch(/unsafe-inline|unsafe-eval/);
      const html = await response.text();
      expect(html).toContain('<main id="app"></main>');
      expect(html).not.toContain('onerror');
      // The page builds its DOM with textContent; innerHTML never sees span data.
      expect(html).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
    }
  });

  it('serves the JSON API, 404 for an unknown trace, DELETE clears', async () => {
    await post(viewer, otlpBody([rawSpan('0000000000000001')]));
    expect((await fetch(`${viewer.endpoint}/api/traces/${TRACE_ID.toUpperCase()}`)).status).toBe(200);
    expect((await fetch(`${viewer.endpoint}/api/traces/${'1'.repeat(32)}`)).status).toBe(404);
    expect((await fetch(`${viewer.endpoint}/api/traces/not-an-id`)).status).toBe(404);
    expect((await fetch(`${viewer.endpoint}/nowhere`)).status).toBe(404);
    expect((await fetch(`${viewer.endpoint}/api/traces`, { method: 'DELETE' })).status).toBe(204);
    expect(await (await fetch(`${viewer.endpoint}/api/traces`)).json()).toEqual([]);
  });

  it('answers only loopback Host names while bound to loopback (no DNS rebinding)', async () => {
    expect(await getWithHost(viewer, '/api/traces', `127.0.0.1:${viewer.port}`)).toBe(200);
    expect(await getWithHost(viewer, '/api/traces', `localhost:${viewer.port}`)).toBe(200);
    expect(await getWithHost(viewer, '/api/traces', `[::1]:${viewer.port}`)).toBe(200);
    expect(await getWithHost(viewer, '/api/traces', `evil.example:${viewer.port}`)).toBe(403);
    expect(await getWithHost(viewer, '/', 'evil.example')).toBe(403);
  });

  it('says which port is taken', async () => {
    await expect(startTraceViewer({ port: viewer.port })).rejects.toThrow(/port is in use/);
  });

  it('checks its options', async () => {
    await expect(startTraceViewer({ port: -1 })).rejects.toThrow(/port must be a non-negative integer/);
    await expect(startTraceViewer({ port: 0, maxTraces: 0 })).rejects.toThrow(/maxTraces must be a positive integer/);
  });

  it('close() is idempotent', async () => {
    await viewer.close();
    await viewer.close();
    await expect(fetch(viewer.url)).rejects.toThrow();
  });
});

describe('parseViewerArgs', () => {
  it('reads every option', () => {
    expect(parseViewerArgs(['--port', '0', '--host', '0.0.0.0', '--max-traces', '50', '--max-spans-per-trace', '100'])).toEqual({
      port: 0,
      host: '0.0.0.0',
      maxTraces: 50,
      maxSpansPerTrace: 100,
    });
    expect(parseViewerArgs([])).toEqual({});
    expect(parseViewerArgs(['-h'])).toBe('help');
    expect(CLI_USAGE).toContain('--max-traces');
  });

  it.each([[['--port', 'abc']], [['--nope']], [['extra']]])('refuses %j', (args) => {
    expect(() => parseViewerArgs(args)).toThrow(CliUsageError);
  });
});
