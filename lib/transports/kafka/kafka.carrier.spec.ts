import { propagation, ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import { describe, expect, it } from 'vitest';
import { kafkaHeaderGetter, kafkaHeaderSetter, type KafkaHeaderCarrier } from './kafka.carrier.js';

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const OTHER = '00-11111111111111111111111111111111-2222222222222222-01';

describe('kafkaHeaderGetter', () => {
  it('reads strings, Buffers and byte arrays as UTF-8 text', () => {
    const carrier: KafkaHeaderCarrier = {
      a: 'text',
      b: Buffer.from('buffer'),
      c: new TextEncoder().encode('bytes'),
      d: Buffer.from('xxsliced').subarray(2),
    };
    expect(kafkaHeaderGetter.get(carrier, 'a')).toBe('text');
    expect(kafkaHeaderGetter.get(carrier, 'b')).toBe('buffer');
    expect(kafkaHeaderGetter.get(carrier, 'c')).toBe('bytes');
    expect(kafkaHeaderGetter.get(carrier, 'd')).toBe('sliced');
  });

  it('joins a repeated key (kafkajs gives an array) with commas; a value it cannot read makes all of it absent', () => {
    const carrier: KafkaHeaderCarrier = { tracestate: [Buffer.from('a=1'), 'b=2'], mixed: [Buffer.from('a=1'), 42], empty: [], junk: [{}] };
    expect(kafkaHeaderGetter.get(carrier, 'tracestate')).toBe('a=1,b=2');
    expect(kafkaHeaderGetter.get(carrier, 'mixed')).toBeUndefined();
    expect(kafkaHeaderGetter.get(carrier, 'empty')).toBeUndefined();
    expect(kafkaHeaderGetter.get(carrier, 'junk')).toBeUndefined();
  });

  it('ignores values of any other type, and missing or non-object carriers, without throwing', () => {
    const carrier: KafkaHeaderCarrier = { n: 42, o: { x: 1 }, u: undefined, z: null, f: () => 'x', s: Symbol('s') };
    for (const key of Object.keys(carrier)) {
      expect(kafkaHeaderGetter.get(carrier, key)).toBeUndefined();
    }
    expect(kafkaHeaderGetter.get(carrier, 'absent')).toBeUndefined();
    expect(kafkaHeaderGetter.get(undefined, 'traceparent')).toBeUndefined();
    expect(kafkaHeaderGetter.get(null, 'traceparent')).toBeUndefined();
    expect(kafkaHeaderGetter.get('headers' as unknown as KafkaHeaderCarrier, 'traceparent')).toBeUndefined();
    expect(kafkaHeaderGetter.keys(undefined)).toEqual([]);
    expect(kafkaHeaderGetter.keys(null)).toEqual([]);
  });

  it('never throws on a hostile carrier', () => {
    const hostile = new Proxy(
      {},
      {
        get: () => {
          throw new Error('nope');
        },
        ownKeys: () => {
          throw new Error('nope');
        },
      },
    ) as KafkaHeaderCarrier;
    expect(kafkaHeaderGetter.get(hostile, 'traceparent')).toBeUndefined();
    expect(kafkaHeaderGetter.keys(hostile)).toEqual([]);
  });

  it('matches names case-insensitively; two spellings of traceparent are a repeat, so invalid', () => {
    expect(kafkaHeaderGetter.get({ Traceparent: TRACEPARENT }, 'traceparent')).toBe(TRACEPARENT);
    expect(kafkaHeaderGetter.get({ Traceparent: OTHER, traceparent: TRACEPARENT }, 'traceparent')).toBeUndefined();
    expect(kafkaHeaderGetter.get({ Tracestate: 'a=1', tracestate: 'b=2' }, 'tracestate')).toBe('a=1,b=2');
    expect(kafkaHeaderGetter.keys({ a: '1', B: Buffer.from('2') })).toEqual(['a', 'B']);
  });

  it('with the W3C propagators: a Buffer traceparent continues the trace, a duplicated one starts a new trace, repeated baggage adds up', () => {
    const w3c = new W3CTraceContextPropagator();
    const spanOf = (carrier: KafkaHeaderCarrier) => trace.getSpanContext(w3c.extract(ROOT_CONTEXT, carrier, kafkaHeaderGetter));
    expect(spanOf({ traceparent: Buffer.from(TRACEPARENT) })?.traceId).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
    expect(spanOf({ traceparent: [Buffer.from(TRACEPARENT), Buffer.from(OTHER)] })).toBeUndefined();
    expect(spanOf({ traceparent: [Buffer.from(TRACEPARENT), Buffer.from(TRACEPARENT)] })).toBeUndefined();
    expect(spanOf({ traceparent: Buffer.from([0, 0xff, 0xfe]) })).toBeUndefined();

    const baggage = new W3CBaggagePropagator();
    const extracted = baggage.extract(ROOT_CONTEXT, { baggage: [Buffer.from('tenant.id=acme'), 'user.id=42'] }, kafkaHeaderGetter);
    const entries = Object.fromEntries(
      (propagation.getBaggage(extracted)?.getAllEntries() ?? []).map(([key, entry]) => [key, entry.value]),
    );
    expect(entries).toEqual({ 'tenant.id': 'acme', 'user.id': '42' });
  });
});

describe('kafkaHeaderSetter', () => {
  it('writes string values and leaves other headers alone', () => {
    const carrier: KafkaHeaderCarrier = { 'x-user': Buffer.from('kept') };
    kafkaHeaderSetter.set(carrier, 'traceparent', TRACEPARENT);
    expect(carrier).toEqual({ 'x-user': Buffer.from('kept'), traceparent: TRACEPARENT });
  });

  it('ignores a missing carrier', () => {
    expect(() => kafkaHeaderSetter.set(undefined as unknown as KafkaHeaderCarrier, 'traceparent', TRACEPARENT)).not.toThrow();
  });
});
