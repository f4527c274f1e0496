import { propagation, ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extractContext } from '../../propagation/carrier.js';
import { startTestingSdk, type TestingSdk } from '../../testing/testing-sdk.js';
import { tcpMetadataGetter } from '../tcp/tcp.carrier.js';
import { mqttIncomingCarrier, mqttUserPropertiesGetter, mqttUserPropertiesSetter, userPropertiesWithContext } from './mqtt.carrier.js';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN_ID = '00f067aa0ba902b7';
const TRACEPARENT = `00-${TRACE_ID}-${SPAN_ID}-01`;
const OTHER = `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`;

describe('MQTT user properties carrier', () => {
  let sdk: TestingSdk;

  beforeAll(() => {
    sdk = startTestingSdk();
  });
  afterAll(() => sdk.shutdown());

  describe('mqttUserPropertiesGetter', () => {
    it('reads a value whatever the case of its name', () => {
      for (const name of ['traceparent', 'Traceparent', 'TRACEPARENT']) {
        expect(mqttUserPropertiesGetter.get({ [name]: TRACEPARENT }, 'traceparent'), name).toBe(TRACEPARENT);
        expect(trace.getSpanContext(extractContext({ [name]: TRACEPARENT }, mqttUserPropertiesGetter))?.spanId, name).toBe(SPAN_ID);
      }
    });

    it('reads a repeated traceparent (an array, or two spellings) as absent: a fresh root', () => {
      for (const properties of [{ traceparent: [TRACEPARENT, OTHER] }, { traceparent: TRACEPARENT, Traceparent: OTHER }]) {
        expect(mqttUserPropertiesGetter.get(properties, 'traceparent')).toBeUndefined();
        expect(extractContext(properties, mqttUserPropertiesGetter)).toBe(ROOT_CONTEXT);
      }
      // A one-element array is the value.
      expect(mqttUserPropertiesGetter.get({ traceparent: [TRACEPARENT] }, 'traceparent')).toBe(TRACEPARENT);
    });

    it('combines a repeated tracestate or baggage, as HTTP does', () => {
      expect(mqttUserPropertiesGetter.get({ tracestate: ['a=1', 'b=2'] }, 'tracestate')).toBe('a=1,b=2');
      expect(mqttUserPropertiesGetter.get({ baggage: 'k1=v1', Baggage: ['k2=v2'] }, 'baggage')).toBe('k1=v1,k2=v2');
    });

    it('reads values that are not strings, or with control or non-ASCII characters, or oversized, as absent', () => {
      for (const value of [42, null, true, { value: TRACEPARENT }, [TRACEPARENT, 7], [[TRACEPARENT]], `${TRACEPARENT}\u0000`, `${TRACEPARENT}\r\n`, `00-${'é'.repeat(32)}-${SPAN_ID}-01`, `${TRACEPARENT}-${'0'.repeat(600)}`]) {
        expect(mqttUserPropertiesGetter.get({ traceparent: value }, 'traceparent'), JSON.stringify(value)).toBeUndefined();
      }
      expect(mqttUserPropertiesGetter.get({ baggage: `k=${'v'.repeat(8190)}` }, 'baggage')).toHaveLength(8192);
      expect(mqttUserPropertiesGetter.get({ baggage: ['k=v', `k=${'v'.repeat(8190)}`] }, 'baggage')).toBeUndefined();
    });

    it('reads user properties that are not an object, or too many of them, as no context; never throws', () => {
      for (const properties of [undefined, null, 42, TRACEPARENT, [TRACEPARENT], [['traceparent', TRACEPARENT]]]) {
        expect(mqttUserPropertiesGetter.get(properties, 'traceparent'), JSON.stringify(properties)).toBeUndefined();
        expect(mqttUserPropertiesGetter.keys(properties)).toEqual([]);
      }
      const many = { ...Object.fromEntries(Array.from({ length: 300 }, (_, n) => [`p${n}`, 'x'])), traceparent: TRACEPARENT };
      expect(mqttUserPropertiesGetter.get(many, 'traceparent')).toBeUndefined();
      const throwing = new Proxy({}, { ownKeys: () => { throw new Error('hostile'); } });
      expect(mqttUserPropertiesGetter.get(throwing, 'traceparent')).toBeUndefined();
      expect(mqttUserPropertiesGetter.keys(throwing)).toEqual([]);
    });
  });

  describe('userPropertiesWithContext', () => {
    it("keeps the application's properties, replaces any spelling of a context field, and never changes the application's object", () => {
      const span = trace.getTracer('test').startSpan('send');
      const ctx = trace.setSpan(ROOT_CONTEXT, span);
      const own = { 'x-tenant': 'acme', tags: ['a', 'b'], Traceparent: OTHER, TRACESTATE: 'stale=1', baggage: 'stale=1' };
      const properties = userPropertiesWithContext(own, ctx)!;
      span.end();
      const { traceId, spanId } = span.spanContext();
      expect(properties).toEqual({ 'x-tenant': 'acme', tags: ['a', 'b'], traceparent: `00-${traceId}-${spanId}-01` });
      expect(own).toEqual({ 'x-tenant': 'acme', tags: ['a', 'b'], Traceparent: OTHER, TRACESTATE: 'stale=1', baggage: 'stale=1' });
    });

    it('writes the baggage too, and gives undefined when there is nothing to send (an empty set would make the broker drop the message)', () => {
      const ctx = propagation.setBaggage(trace.setSpanContext(ROOT_CONTEXT, { traceId: TRACE_ID, spanId: SPAN_ID, traceFlags: 1 }), propagation.createBaggage({ k: { value: 'v' } }));
      expect(userPropertiesWithContext(undefined, ctx)).toEqual({ traceparent: TRACEPARENT, baggage: 'k=v' });
      expect(userPropertiesWithContext(undefined, ROOT_CONTEXT)).toBeUndefined();
      expect(userPropertiesWithContext({}, ROOT_CONTEXT)).toBeUndefined();
      expect(userPropertiesWithContext({ traceparent: OTHER }, ROOT_CONTEXT)).toBeUndefined();
      expect(userPropertiesWithContext({ a: 'b' }, ROOT_CONTEXT)).toEqual({ a: 'b' });
    });

    it('mqttUserPropertiesSetter removes differently-cased copies', () => {
      const properties: Record<string, string | string[]> = { Traceparent: OTHER, TRACEPARENT: [OTHER], other: 'x' };
      mqttUserPropertiesSetter.set(properties, 'traceparent', TRACEPARENT);
      expect(properties).toEqual({ other: 'x', traceparent: TRACEPARENT });
    });
  });

  describe('mqttIncomingCarrier', () => {
    it('reads the user properties when any of them is a context field (a hostile one included), else the packet metadata', () => {
      const metadata = { traceparent: OTHER };
      expect(mqttIncomingCarrier({ traceparent: TRACEPARENT }, metadata)).toEqual({ carrier: { traceparent: TRACEPARENT }, getter: mqttUserPropertiesGetter });
      // Never mixed: user properties with a broken traceparent are still the source, a fresh root.
      const broken = mqttIncomingCarrier({ Traceparent: ['x', 'y'] }, metadata);
      expect(broken.getter).toBe(mqttUserPropertiesGetter);
      expect(extractContext(broken.carrier, broken.getter)).toBe(ROOT_CONTEXT);
      expect(mqttIncomingCarrier({ baggage: 'k=v' }, metadata).getter).toBe(mqttUserPropertiesGetter);
      for (const properties of [undefined, null, {}, { 'x-tenant': 'acme' }, ['traceparent']]) {
        const chosen = mqttIncomingCarrier(properties, metadata);
        expect(chosen, JSON.stringify(properties)).toEqual({ carrier: metadata, getter: tcpMetadataGetter });
        expect(trace.getSpanContext(extractContext(chosen.carrier, chosen.getter))?.traceId).toBe('a'.repeat(32));
      }
    });
  });
});
