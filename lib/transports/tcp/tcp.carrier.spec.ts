import { propagation, ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extractContext } from '../../propagation/carrier.js';
import { startTestingSdk, type TestingSdk } from '../../testing/testing-sdk.js';
import { metadataWithContext, tcpMetadataGetter, tcpMetadataSetter, type TcpMetadata } from './tcp.carrier.js';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN_ID = '00f067aa0ba902b7';
const TRACEPARENT = `00-${TRACE_ID}-${SPAN_ID}-01`;

describe('TCP packet metadata carrier', () => {
  let sdk: TestingSdk;

  beforeAll(() => {
    sdk = startTestingSdk();
  });
  afterAll(() => sdk.shutdown());

  describe('tcpMetadataGetter', () => {
    it('reads a string value, whatever the case of its key', () => {
      for (const key of ['traceparent', 'Traceparent', 'TRACEPARENT']) {
        expect(tcpMetadataGetter.get({ [key]: TRACEPARENT }, 'traceparent'), key).toBe(TRACEPARENT);
        expect(trace.getSpanContext(extractContext({ [key]: TRACEPARENT }, tcpMetadataGetter))?.spanId, key).toBe(SPAN_ID);
      }
    });

    it('reads metadata that is not a JSON object as no context', () => {
      for (const metadata of [undefined, null, 42, true, TRACEPARENT, [TRACEPARENT], [['traceparent', TRACEPARENT]]]) {
        expect(tcpMetadataGetter.get(metadata, 'traceparent'), JSON.stringify(metadata)).toBeUndefined();
        expect(tcpMetadataGetter.keys(metadata)).toEqual([]);
        expect(extractContext(metadata, tcpMetadataGetter)).toBe(ROOT_CONTEXT);
      }
    });

    it('reads values that are not strings as absent, even next to a string under another spelling', () => {
      for (const value of [42, null, true, [TRACEPARENT], { value: TRACEPARENT }]) {
        expect(tcpMetadataGetter.get({ traceparent: value }, 'traceparent'), JSON.stringify(value)).toBeUndefined();
        expect(tcpMetadataGetter.get({ Traceparent: TRACEPARENT, traceparent: value }, 'traceparent')).toBeUndefined();
      }
    });

    it('reads a traceparent under two spellings as repeated, so absent; a list-valued field is combined', () => {
      expect(tcpMetadataGetter.get({ traceparent: TRACEPARENT, Traceparent: TRACEPARENT }, 'traceparent')).toBeUndefined();
      expect(tcpMetadataGetter.get({ tracestate: 'a=1', Tracestate: 'b=2' }, 'tracestate')).toBe('a=1,b=2');
    });

    it('reads oversized values, control characters and non-ASCII as absent', () => {
      expect(tcpMetadataGetter.get({ baggage: `k=${'v'.repeat(8190)}` }, 'baggage')).toHaveLength(8192);
      expect(tcpMetadataGetter.get({ baggage: `k=${'v'.repeat(10_240)}` }, 'baggage')).toBeUndefined();
      expect(tcpMetadataGetter.get({ traceparent: `${TRACEPARENT}\n` }, 'traceparent')).toBeUndefined();
      expect(tcpMetadataGetter.get({ traceparent: `${TRACEPARENT}\u0000` }, 'traceparent')).toBeUndefined();
      expect(tcpMetadataGetter.get({ baggage: 'k=é' }, 'baggage')).toBeUndefined();
    });

    it('does not search metadata with more than 256 keys', () => {
      const many = Object.fromEntries(Array.from({ length: 256 }, (_, i) => [`k${i}`, 'v']));
      expect(tcpMetadataGetter.get({ ...many, traceparent: TRACEPARENT }, 'traceparent')).toBeUndefined();
      delete many.k0;
      expect(tcpMetadataGetter.get({ ...many, traceparent: TRACEPARENT }, 'traceparent')).toBe(TRACEPARENT);
    });

    it('never throws, on a getter that throws either', () => {
      const throwing = new Proxy({}, { ownKeys: () => { throw new Error('keys'); } });
      expect(tcpMetadataGetter.get(throwing, 'traceparent')).toBeUndefined();
      expect(tcpMetadataGetter.keys(throwing)).toEqual([]);
    });
  });

  describe('tcpMetadataSetter and metadataWithContext', () => {
    it('writes a field, removing differently-cased copies', () => {
      const metadata: TcpMetadata = { Traceparent: 'stale', 'x-id': '1' };
      tcpMetadataSetter.set(metadata, 'traceparent', TRACEPARENT);
      expect(metadata).toEqual({ 'x-id': '1', traceparent: TRACEPARENT });
    });

    it('keeps the application\'s entries, replaces its context fields, and never changes its object', () => {
      const span = trace.getTracer('test').startSpan('send');
      const ctx = propagation.setBaggage(trace.setSpan(ROOT_CONTEXT, span), propagation.createBaggage({ 'tenant.id': { value: 'acme' } }));
      const own = Object.freeze({ 'x-request-id': 'r-1', TraceParent: 'stale', tracestate: 'stale=1', BAGGAGE: 'stale=1' });
      const metadata = metadataWithContext(own, ctx, { 'otel-reply-context': '1' });
      span.end();
      expect(metadata).toEqual({
        'x-request-id': 'r-1',
        traceparent: `00-${span.spanContext().traceId}-${span.spanContext().spanId}-01`,
        baggage: 'tenant.id=acme',
        'otel-reply-context': '1',
      });
      expect(own).toEqual({ 'x-request-id': 'r-1', TraceParent: 'stale', tracestate: 'stale=1', BAGGAGE: 'stale=1' });
    });

    it('gives no metadata when there is neither context nor application metadata', () => {
      expect(metadataWithContext(undefined, ROOT_CONTEXT, { 'otel-reply-context': '1' })).toBeUndefined();
      expect(metadataWithContext({ 'x-id': '1' }, ROOT_CONTEXT)).toEqual({ 'x-id': '1' });
      // Application metadata of the wrong shape is not sent on (Nest types it as a record of strings).
      expect(metadataWithContext('not an object', ROOT_CONTEXT)).toBeUndefined();
    });
  });
});
