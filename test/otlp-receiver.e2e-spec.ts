import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type HrTime } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  TracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './support/otlp-receiver.js';

type ExporterConfig = NonNullable<ConstructorParameters<typeof OTLPTraceExporter>[0]>;

let receiver: OtlpReceiver;

beforeAll(async () => {
  receiver = await startOtlpReceiver();
});

afterEach(() => {
  receiver.reset();
});

afterAll(async () => {
  await receiver.close();
});

/** A provider that sends OTLP/HTTP to the receiver and keeps a copy of every span in memory. */
function setup(config: ExporterConfig = {}): { provider: TracerProvider; memory: InMemorySpanExporter } {
  const memory = new InMemorySpanExporter();
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'otlp-receiver-self-test', 'service.instance.id': 'i-1' }),
    spanProcessors: [
      new SimpleSpanProcessor({ exporter: new OTLPTraceExporter({ url: receiver.url, ...config }) }),
      new SimpleSpanProcessor({ exporter: memory }),
    ],
  });
  return { provider, memory };
}

function hrTimeToNanos(time: HrTime): string {
  return (BigInt(time[0]) * 1_000_000_000n + BigInt(time[1])).toString();
}

/** What the receiver must produce for an SDK span, derived independently of its decoder. */
function expectedFor(span: ReadableSpan): ReceivedSpan {
  const context = span.spanContext();
  const expected: ReceivedSpan = {
    traceId: context.traceId,
    spanId: context.spanId,
    // OTLP span flags: W3C trace flags, 0x100 "remoteness known", 0x200 "the parent is remote".
    flags: (context.traceFlags & 0xff) | 0x100 | (span.parentSpanContext?.isRemote ? 0x200 : 0),
    name: span.name,
    kind: span.kind + 1,
    startTimeUnixNano: hrTimeToNanos(span.startTime),
    endTimeUnixNano: hrTimeToNanos(span.endTime),
    attributes: { ...span.attributes } as ReceivedSpan['attributes'],
    status: { code: span.status.code, message: span.status.message ?? '' },
    links: span.links.map((link) => ({
      traceId: link.context.traceId,
      spanId: link.context.spanId,
      attributes: { ...link.attributes } as ReceivedSpan['attributes'],
    })),
    events: span.events.map((event) => ({
      name: event.name,
      timeUnixNano: hrTimeToNanos(event.time),
      attributes: { ...event.attributes } as ReceivedSpan['attributes'],
    })),
    resource: { ...span.resource.attributes } as ReceivedSpan['resource'],
    service: String(span.resource.attributes['service.name']),
    scope: { name: span.instrumentationScope.name, version: span.instrumentationScope.version! },
  };
  if (span.parentSpanContext?.spanId) {
    expected.parentSpanId = span.parentSpanContext.spanId;
  }
  return expected;
}

function byName(spans: readonly ReceivedSpan[], name: string): ReceivedSpan {
  const found = spans.filter((span) => span.name === name);
  expect(found, `spans named ${name}`).toHaveLength(1);
  return found[0]!;
}

describe('OTLP receiver', () => {
  it('decodes what a real OTLPTraceExporter sends, exactly', async () => {
    const { provider, memory } = setup({ headers: { 'x-api-key': 'secret-1' } });
    const tracer = provider.getTracer('otel-nest.self-test', '1.2.3');

    const target = tracer.startSpan('send orders.created', { kind: SpanKind.PRODUCER }, ROOT_CONTEXT);
    target.end();
    const serverAttributes: Attributes = {
      'http.request.method': 'GET',
      'http.response.status_code': 200,
      'app.ratio': 1.5,
      'app.cached': false,
      'app.tags': ['a', 'b'],
      'app.codes': [1, 2, 3],
      'app.flags': [true, false],
      'app.weights': [0.25, 2.5],
    };
    const server = tracer.startSpan(
      'GET /orders/:id',
      { kind: SpanKind.SERVER, attributes: serverAttributes },
      ROOT_CONTEXT,
    );
    const inServer = trace.setSpan(ROOT_CONTEXT, server);
    const consumer = tracer.startSpan(
      'process orders.created',
      {
        kind: SpanKind.CONSUMER,
        links: [
          { context: target.spanContext(), attributes: { 'messaging.operation.type': 'process', attempt: 2 } },
        ],
      },
      inServer,
    );
    consumer.addEvent('exception', { 'exception.type': 'TypeError', 'exception.message': 'boom' });
    consumer.setStatus({ code: SpanStatusCode.ERROR, message: 'boom' });
    consumer.end();
    tracer.startSpan('SELECT orders', { kind: SpanKind.CLIENT }, inServer).end();
    tracer.startSpan('OrdersService.load', {}, inServer).end();
    server.end();
    await provider.forceFlush();

    const received = await receiver.waitForSpans(5);
    const serverContext = server.spanContext();

    // Spelled out by hand, so the check does not depend on how the SDK span is read.
    const process = byName(received, 'process orders.created');
    expect(process.traceId).toBe(serverContext.traceId);
    expect(process.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(process.spanId).toBe(consumer.spanContext().spanId);
    expect(process.parentSpanId).toBe(serverContext.spanId);
    expect(process.kind).toBe(5);
    expect(process.attributes).toEqual({});
    expect(process.status).toEqual({ code: 2, message: 'boom' });
    expect(process.links).toEqual([
      {
        traceId: target.spanContext().traceId,
        spanId: target.spanContext().spanId,
        attributes: { 'messaging.operation.type': 'process', attempt: 2 },
      },
    ]);
    expect(process.events).toHaveLength(1);
    expect(process.events[0]).toMatchObject({
      name: 'exception',
      attributes: { 'exception.type': 'TypeError', 'exception.message': 'boom' },
    });
    expect(process.events[0]!.timeUnixNano).toMatch(/^\d{19}$/);
    expect(process.scope).toEqual({ name: 'otel-nest.self-test', version: '1.2.3' });
    expect(process.resource).toMatchObject({ 'service.name': 'otlp-receiver-self-test', 'service.instance.id': 'i-1' });

    const root = byName(received, 'GET /orders/:id');
    expect(root.parentSpanId).toBeUndefined();
    expect(root.kind).toBe(2);
    expect(root.status).toEqual({ code: 0, message: '' });
    expect(root.attributes).toEqual({
      'http.request.method': 'GET',
      'http.response.status_code': 200,
      'app.ratio': 1.5,
      'app.cached': false,
      'app.tags': ['a', 'b'],
      'app.codes': [1, 2, 3],
      'app.flags': [true, false],
      'app.weights': [0.25, 2.5],
    });
    expect(Object.fromEntries(received.map((span) => [span.name, span.kind]))).toEqual({
      'OrdersService.load': 1,
      'GET /orders/:id': 2,
      'SELECT orders': 3,
      'send orders.created': 4,
      'process orders.created': 5,
    });
    expect(byName(received, 'send orders.created').traceId).not.toBe(serverContext.traceId);

    // And every field of every span equals what the SDK recorded.
    const sdkSpans = memory.getFinishedSpans();
    expect(sdkSpans).toHaveLength(5);
    const bySpanId = (a: ReceivedSpan, b: ReceivedSpan): number => a.spanId.localeCompare(b.spanId);
    expect([...received].sort(bySpanId)).toEqual(sdkSpans.map(expectedFor).sort(bySpanId));

    // The transport was real OTLP/HTTP JSON: one request per span (SimpleSpanProcessor).
    expect(receiver.requests).toHaveLength(5);
    for (const request of receiver.requests) {
      expect(request).toMatchObject({ method: 'POST', path: '/v1/traces', contentType: 'application/json', statusCode: 200, spanCount: 1 });
      expect(request.headers['user-agent']).toMatch(/^OTel-OTLP-Exporter-JavaScript\/\d+\.\d+\.\d+/);
      expect(request.headers['x-api-key']).toBe('secret-1');
      expect(request.contentEncoding).toBeUndefined();
      expect(JSON.parse(request.body.toString('utf8'))).toHaveProperty('resourceSpans');
    }
    await provider.shutdown();
  });

  it('accepts gzip-compressed requests', async () => {
    const { provider } = setup({ compression: 'gzip' as ExporterConfig['compression'] });
    const span = provider.getTracer('gzip').startSpan('compressed', { attributes: { big: 'x'.repeat(2000) } });
    span.end();
    await provider.forceFlush();

    const [received] = await receiver.waitForSpans(1);
    expect(received).toMatchObject({ spanId: span.spanContext().spanId, attributes: { big: 'x'.repeat(2000) } });
    expect(receiver.requests[0]).toMatchObject({ contentEncoding: 'gzip', statusCode: 200 });
    await provider.shutdown();
  });

  it('decodes the other OTLP/JSON spellings: base64 ids, enum names, snake_case, int64 strings', async () => {
    const traceId = '5b8efff798038103d269b633813fc60c';
    const spanId = 'eee19b7ec3c1b174';
    const body = {
      resource_spans: [
        {
          resource: { attributes: [{ key: 'service.name', value: { string_value: 'other-sdk' } }] },
          scope_spans: [
            {
              scope: { name: 'other' },
              spans: [
                {
                  trace_id: Buffer.from(traceId, 'hex').toString('base64'),
                  span_id: Buffer.from(spanId, 'hex').toString('base64'),
                  parent_span_id: '',
                  name: 'other span',
                  kind: 'SPAN_KIND_CLIENT',
                  start_time_unix_nano: '1700000000000000000',
                  end_time_unix_nano: '1700000000500000000',
                  attributes: [
                    { key: 'count', value: { int_value: '42' } },
                    { key: 'huge', value: { intValue: '9007199254740993' } },
                    { key: 'map', value: { kvlistValue: { values: [{ key: 'k', value: { boolValue: true } }] } } },
                    { key: 'raw', value: { bytesValue: Buffer.from([1, 2, 3]).toString('base64') } },
                    { key: 'empty', value: {} },
                  ],
                  status: { code: 'STATUS_CODE_OK' },
                },
              ],
            },
          ],
        },
      ],
    };
    const response = await fetch(receiver.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json; charset=utf-8' },
      body: JSON.stringify(body),
    });

    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({});
    expect(receiver.spans).toEqual([
      {
        traceId,
        spanId,
        // No flags field was sent.
        flags: 0,
        name: 'other span',
        kind: 3,
        startTimeUnixNano: '1700000000000000000',
        endTimeUnixNano: '1700000000500000000',
        attributes: { count: 42, huge: '9007199254740993', map: { k: true }, raw: Buffer.from([1, 2, 3]).toString('base64'), empty: null },
        status: { code: 1, message: '' },
        links: [],
        events: [],
        resource: { 'service.name': 'other-sdk' },
        service: 'other-sdk',
        scope: { name: 'other' },
      },
    ]);
  });

  it('refuses protobuf with 415, and wrong paths, methods and bodies', async () => {
    const { provider, memory } = setup();
    provider.getTracer('proto').startSpan('proto span').end();
    await provider.forceFlush();
    await receiver.waitForSpans(1);
    receiver.reset();

    const protobuf = await fetch(receiver.url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-protobuf' },
      body: ProtobufTraceSerializer.serializeRequest(memory.getFinishedSpans()),
    });
    expect(protobuf.status).toBe(415);
    expect(((await protobuf.json()) as { message: string }).message).toMatch(/OTLP\/protobuf is not decoded/);

    const wrongPath = await fetch(`${receiver.endpoint}/v1/profiles`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    expect(wrongPath.status).toBe(404);
    const wrongMethod = await fetch(receiver.url);
    expect(wrongMethod.status).toBe(405);
    const malformed = await fetch(receiver.url, { method: 'POST', body: '{"resourceSpans": [', headers: { 'content-type': 'application/json' } });
    expect(malformed.status).toBe(400);
    const noIds = await fetch(receiver.url, {
      method: 'POST',
      body: JSON.stringify({ resourceSpans: [{ scopeSpans: [{ spans: [{ name: 'x' }] }] }] }),
      headers: { 'content-type': 'application/json' },
    });
    expect(noIds.status).toBe(400);

    expect(receiver.spans).toEqual([]);
    expect(receiver.requests.map((request) => [request.contentType, request.statusCode])).toEqual([
      ['application/x-protobuf', 415],
      ['application/json', 404],
      ['', 405],
      ['application/json', 400],
      ['application/json', 400],
    ]);
    expect(receiver.requests[4]!.error).toMatch(/spans\[0\]\.traceId is missing/);
    await provider.shutdown();
  });

  it('waitForSpans resolves with the spans a per-span predicate matches, and times out with the received spans as a tree', async () => {
    const { provider } = setup();
    const tracer = provider.getTracer('wait');
    const parent = tracer.startSpan('parent', { kind: SpanKind.SERVER }, ROOT_CONTEXT);
    setTimeout(() => {
      tracer.startSpan('child', {}, trace.setSpan(ROOT_CONTEXT, parent)).end();
      parent.end();
    }, 50);

    const matching = await receiver.waitForSpans((span) => span.name === 'parent' || span.name === 'child');
    expect(matching.length).toBeGreaterThanOrEqual(1);
    const [received] = await receiver.waitForSpans((span) => span.name === 'parent');
    expect(received).toMatchObject({ spanId: parent.spanContext().spanId, kind: 2 });
    expect(receiver.spans.map((span) => span.name)).toEqual(['child', 'parent']);
    await expect(
      receiver.waitForSpans((span) => {
        if (span.name === 'parent') {
          throw new Error('predicate exploded');
        }
        return false;
      }, 100),
    ).rejects.toThrow(/a span matching the predicate at the OTLP receiver[\s\S]*Last check failed with: predicate exploded/);

    await expect(receiver.waitForSpans(3, 100)).rejects.toThrow(
      new RegExp(
        'Timed out after 100 ms waiting for at least 3 span\\(s\\) at the OTLP receiver; 2 span\\(s\\) received in 2 request\\(s\\):\\n' +
          `trace ${parent.spanContext().traceId}\\n  parent \\[SERVER\\] UNSET\\n    child \\[INTERNAL\\] UNSET$`,
      ),
    );
    await provider.shutdown();
  });

  it('rejects pending waits when closed', async () => {
    const other = await startOtlpReceiver();
    const pending = other.waitForSpans(1, 10_000);
    await other.close();

    await expect(pending).rejects.toThrow(/closed while spans were awaited/);
  });
});
