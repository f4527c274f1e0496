import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type HrTime } from '@opentelemetry/api';
import { JsonTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { TracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { describe, expect, it } from 'vitest';
import { decodeOtlpTraceRequest, OtlpDecodeError } from './otlp-json.decoder.js';
import type { ViewerSpan } from './devtools.interfaces.js';

const TRACE_ID = '0af7651916cd43dd8448eb211c80319c';
const SPAN_ID = 'b7ad6b7169203331';

function nanos(time: HrTime): string {
  return (BigInt(time[0]) * 1_000_000_000n + BigInt(time[1])).toString();
}

/** Real SDK spans, serialized exactly as exporter-trace-otlp-http sends them. */
function exportedRequest(): { body: unknown; spans: ReadableSpan[] } {
  const memory = new InMemorySpanExporter();
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'checkout', 'service.version': '1.0.0' }),
    spanProcessors: [new SimpleSpanProcessor({ exporter: memory })],
  });
  const tracer = provider.getTracer('decoder-spec', '9.9.9');
  const other = { traceId: TRACE_ID, spanId: SPAN_ID, traceFlags: 1 };
  const parent = tracer.startSpan('GET /orders/:id', { kind: SpanKind.SERVER, attributes: { 'http.route': '/orders/:id' } });
  const child = tracer.startSpan(
    'process orders.created',
    {
      kind: SpanKind.CONSUMER,
      links: [{ context: other, attributes: { 'messaging.operation.type': 'process' } }],
      attributes: {
        str: 'value',
        int: 42,
        double: 1.5,
        bool: true,
        strings: ['a', 'b'],
        numbers: [1, 2],
      },
    },
    trace.setSpan(ROOT_CONTEXT, parent),
  );
  child.addEvent('exception', { 'exception.type': 'Declined', 'exception.message': 'card declined' });
  child.setStatus({ code: SpanStatusCode.ERROR, message: 'card declined' });
  child.end();
  parent.end();
  const spans = memory.getFinishedSpans();
  const body = JSON.parse(new TextDecoder().decode(JsonTraceSerializer.serializeRequest(spans)!));
  return { body, spans };
}

describe('decodeOtlpTraceRequest', () => {
  it('decodes what the OTLP/HTTP JSON exporter sends, field by field', () => {
    const { body, spans } = exportedRequest();
    const decoded = decodeOtlpTraceRequest(body);
    expect(decoded).toHaveLength(2);
    const [sdkChild, sdkParent] = spans as [ReadableSpan, ReadableSpan];
    const child = decoded.find((span) => span.name === 'process orders.created')!;
    const parent = decoded.find((span) => span.name === 'GET /orders/:id')!;

    expect(child).toEqual({
      traceId: sdkChild.spanContext().traceId,
      spanId: sdkChild.spanContext().spanId,
      parentSpanId: sdkParent.spanContext().spanId,
      // W3C trace flags in the low byte; 0x100: the exporter says whether the parent is remote (0x200: it is).
      flags: (sdkChild.spanContext().traceFlags & 0xff) | 0x100,
      name: 'process orders.created',
      kind: 5,
      startTimeUnixNano: nanos(sdkChild.startTime),
      endTimeUnixNano: nanos(sdkChild.endTime),
      attributes: { str: 'value', int: 42, double: 1.5, bool: true, strings: ['a', 'b'], numbers: [1, 2] },
      status: { code: 2, message: 'card declined' },
      events: [
        {
          name: 'exception',
          timeUnixNano: nanos(sdkChild.events[0]!.time),
          attributes: { 'exception.type': 'Declined', 'exception.message': 'card declined' },
        },
      ],
      links: [{ traceId: TRACE_ID, spanId: SPAN_ID, attributes: { 'messaging.operation.type': 'process' } }],
      resource: expect.objectContaining({ 'service.name': 'checkout', 'service.version': '1.0.0' }),
      service: 'checkout',
      scope: { name: 'decoder-spec', version: '9.9.9' },
    } satisfies ViewerSpan);
    expect(parent).toMatchObject({ kind: 2, status: { code: 0, message: '' }, links: [], events: [] });
    expect(parent.parentSpanId).toBeUndefined();
  });

  it('reads snake_case fields, base64 ids, enum names, string int64s and nested values', () => {
    const [span] = decodeOtlpTraceRequest({
      resource_spans: [
        {
          resource: { attributes: [{ key: 'service.name', value: { string_value: 'legacy' } }] },
          scope_spans: [
            {
              scope: { name: 's' },
              spans: [
                {
                  trace_id: Buffer.from(TRACE_ID, 'hex').toString('base64'),
                  span_id: Buffer.from(SPAN_ID, 'hex').toString('base64'),
                  parent_span_id: '',
                  name: 'n',
                  kind: 'SPAN_KIND_PRODUCER',
                  start_time_unix_nano: '1700000000000000001',
                  end_time_unix_nano: 1700000000000000,
                  status: { code: 'STATUS_CODE_OK' },
                  attributes: [
                    { key: 'big', value: { int_value: '9007199254740993' } },
                    { key: 'small', value: { intValue: '-7' } },
                    { key: 'kv', value: { kvlist_value: { values: [{ key: 'inner', value: { array_value: { values: [{ bool_value: false }, {}] } } }] } } },
                    { key: 'raw', value: { bytesValue: 'AQID' } },
                    { key: 'empty' },
                  ],
                },
              ],
            },
          ],
        },
      ],
    });
    expect(span).toMatchObject({
      traceId: TRACE_ID,
      spanId: SPAN_ID,
      kind: 4,
      startTimeUnixNano: '1700000000000000001',
      endTimeUnixNano: '1700000000000000',
      status: { code: 1, message: '' },
      service: 'legacy',
      attributes: { big: '9007199254740993', small: -7, kv: { inner: [false, null] }, raw: 'AQID', empty: null },
    });
    expect(span!.parentSpanId).toBeUndefined();
  });

  it('keeps an attribute named __proto__ as a plain key', () => {
    const [span] = decodeOtlpTraceRequest({
      resourceSpans: [
        {
          scopeSpans: [
            {
              spans: [
                {
                  traceId: TRACE_ID,
                  spanId: SPAN_ID,
                  attributes: [{ key: '__proto__', value: { stringValue: 'x' } }],
                },
              ],
            },
          ],
        },
      ],
    });
    expect(Object.keys(span!.attributes)).toEqual(['__proto__']);
    expect(span!.service).toBe('unknown_service');
    expect(span!.startTimeUnixNano).toBe('0');
  });

  it('accepts an empty request', () => {
    expect(decodeOtlpTraceRequest({})).toEqual([]);
    expect(decodeOtlpTraceRequest({ resourceSpans: [] })).toEqual([]);
  });

  const spanWith = (fields: Record<string, unknown>): unknown => ({
    resourceSpans: [{ scopeSpans: [{ spans: [{ traceId: TRACE_ID, spanId: SPAN_ID, ...fields }] }] }],
  });
  let deep: unknown = { stringValue: 'bottom' };
  for (let level = 0; level < 40; level++) {
    deep = { arrayValue: { values: [deep] } };
  }

  it.each([
    ['not an object', 'spans'],
    ['resourceSpans not an array', { resourceSpans: {} }],
    ['a resourceSpans entry not an object', { resourceSpans: [42] }],
    ['no traceId', { resourceSpans: [{ scopeSpans: [{ spans: [{ spanId: SPAN_ID }] }] }] }],
    ['an all-zero traceId', spanWith({ traceId: '0'.repeat(32) })],
    ['a short span id', spanWith({ spanId: 'abc' })],
    ['a non-hex trace id', spanWith({ traceId: 'z'.repeat(32) })],
    ['a negative timestamp', spanWith({ startTimeUnixNano: '-5' })],
    ['a fractional timestamp', spanWith({ endTimeUnixNano: 1.5 })],
    ['an unknown kind name', spanWith({ kind: 'SPAN_KIND_SIDEWAYS' })],
    ['a name that is not a string', spanWith({ name: { evil: true } })],
    ['an attribute without key', spanWith({ attributes: [{ value: { stringValue: 'x' } }] })],
    ['a non-integer intValue', spanWith({ attributes: [{ key: 'k', value: { intValue: '1e3' } }] })],
    ['values nested 40 deep', spanWith({ attributes: [{ key: 'k', value: deep }] })],
    ['a link without span id', spanWith({ links: [{ traceId: TRACE_ID }] })],
    ['events not an array', spanWith({ events: 'boom' })],
  ])('refuses %s with OtlpDecodeError', (_label, request) => {
    expect(() => decodeOtlpTraceRequest(request)).toThrow(OtlpDecodeError);
  });

  it('names the offending field in the error', () => {
    expect(() => decodeOtlpTraceRequest(spanWith({ spanId: 'abc' }))).toThrow(
      /resourceSpans\[0\]\.scopeSpans\[0\]\.spans\[0\]\.spanId is not an 8-byte id/,
    );
  });
});
