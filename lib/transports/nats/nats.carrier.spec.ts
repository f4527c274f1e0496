import { diag, DiagLogLevel, propagation, ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTestingSdk, type TestingSdk } from '../../testing/testing-sdk.js';
import { extractContext, injectContext } from '../../propagation/carrier.js';
import {
  copyNatsHeaders,
  createNatsHeaders,
  loadedNatsDriver,
  loadNatsDriver,
  natsHeaderGetter,
  natsHeaderSetter,
  type NatsHeaders,
} from './nats.carrier.js';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN_ID = '00f067aa0ba902b7';
const TRACEPARENT = `00-${TRACE_ID}-${SPAN_ID}-01`;

/** A headers object from the driver Nest loads (keys are case-sensitive there, values repeatable). */
function driverHeaders(entries: Array<[string, string]> = []): NatsHeaders {
  const headers = createNatsHeaders();
  if (!headers) {
    throw new Error('the NATS driver is not loaded');
  }
  for (const [key, value] of entries) {
    headers.append(key, value);
  }
  return headers;
}

function entries(headers: NatsHeaders): Array<[string, string[]]> {
  return headers.keys().map((key) => [key, headers.values(key)]);
}

/** A headers object whose every method throws: a broken or hostile carrier. */
const throwingHeaders: NatsHeaders = {
  keys: () => {
    throw new Error('keys');
  },
  values: () => {
    throw new Error('values');
  },
  set: () => {
    throw new Error('set');
  },
  append: () => {
    throw new Error('append');
  },
  delete: () => {
    throw new Error('delete');
  },
};

describe('NATS carrier', () => {
  let sdk: TestingSdk;

  beforeAll(async () => {
    sdk = startTestingSdk();
    await loadNatsDriver();
  });
  afterEach(() => diag.disable());
  afterAll(() => sdk.shutdown());

  it('loads the driver Nest uses', () => {
    expect(loadedNatsDriver()).toMatch(/^(@nats-io\/transport-node|nats)$/);
  });

  describe('natsHeaderGetter', () => {
    it('finds a header whatever the case of its name on the wire', () => {
      for (const name of ['traceparent', 'Traceparent', 'TRACEPARENT']) {
        const headers = driverHeaders([[name, TRACEPARENT]]);
        expect(natsHeaderGetter.get(headers, 'traceparent'), name).toBe(TRACEPARENT);
        expect(trace.getSpanContext(extractContext(headers, natsHeaderGetter))?.spanId, name).toBe(SPAN_ID);
      }
    });

    it('hands over every value of a repeated header, under one or several spellings', () => {
      // Combined as HTTP does: a list-valued field stays one list.
      expect(natsHeaderGetter.get(driverHeaders([['tracestate', 'a=1'], ['tracestate', 'b=2']]), 'tracestate')).toBe('a=1,b=2');
      expect(natsHeaderGetter.get(driverHeaders([['Baggage', 'k1=v1'], ['baggage', 'k2=v2']]), 'baggage')).toBe('k1=v1,k2=v2');
    });

    it('reads a traceparent sent twice (even under two spellings) as absent: a fresh root', () => {
      for (const headers of [
        driverHeaders([['traceparent', TRACEPARENT], ['traceparent', TRACEPARENT]]),
        driverHeaders([['traceparent', TRACEPARENT], ['Traceparent', TRACEPARENT]]),
      ]) {
        expect(natsHeaderGetter.get(headers, 'traceparent')).toBeUndefined();
        expect(trace.getSpanContext(extractContext(headers, natsHeaderGetter))).toBeUndefined();
      }
    });

    it('reads values over the length limit as absent, and stops reading once over it', () => {
      const long = 'x'.repeat(8193);
      // Exactly at the limit is fine.
      expect(natsHeaderGetter.get(driverHeaders([['baggage', `k=${'v'.repeat(8190)}`]]), 'baggage')).toHaveLength(8192);
      expect(natsHeaderGetter.get(driverHeaders([['baggage', `k=${'v'.repeat(8191)}`]]), 'baggage')).toBeUndefined();
      expect(natsHeaderGetter.get(driverHeaders([['baggage', 'k=v'], ['BAGGAGE', long]]), 'baggage')).toBeUndefined();
      expect(natsHeaderGetter.get(driverHeaders([['traceparent', `${TRACEPARENT}-${'0'.repeat(500)}`]]), 'traceparent')).toBeUndefined();

      const headers = driverHeaders([['baggage', long], ['Baggage', 'k=v'], ['BAGGAGE', 'k=v']]);
      const values = vi.spyOn(headers, 'values');
      expect(natsHeaderGetter.get(headers, 'baggage')).toBeUndefined();
      expect(values).toHaveBeenCalledTimes(1);
    });

    it('reads values with control characters as absent', () => {
      const headers: NatsHeaders = { ...throwingHeaders, keys: () => ['traceparent'], values: () => [`${TRACEPARENT}\u0000`] };
      expect(natsHeaderGetter.get(headers, 'traceparent')).toBeUndefined();
    });

    it('lists the header names, and nothing for a missing or throwing headers object', () => {
      expect(natsHeaderGetter.keys(driverHeaders([['Traceparent', TRACEPARENT], ['x-id', '1']]))).toEqual(['Traceparent', 'x-id']);
      expect(natsHeaderGetter.keys(undefined)).toEqual([]);
      expect(natsHeaderGetter.keys(null)).toEqual([]);
      expect(natsHeaderGetter.keys(throwingHeaders)).toEqual([]);
      const odd = { ...throwingHeaders, keys: () => ['a', 7, null, 'b'] as unknown as string[] };
      expect(natsHeaderGetter.keys(odd)).toEqual(['a', 'b']);
    });

    it('never throws: a missing or throwing headers object reads as absent', () => {
      expect(natsHeaderGetter.get(undefined, 'traceparent')).toBeUndefined();
      expect(natsHeaderGetter.get(null, 'traceparent')).toBeUndefined();
      expect(natsHeaderGetter.get(throwingHeaders, 'traceparent')).toBeUndefined();
      const valuesThrow = { ...throwingHeaders, keys: () => ['traceparent'] };
      expect(natsHeaderGetter.get(valuesThrow, 'traceparent')).toBeUndefined();
      expect(trace.getSpanContext(extractContext(throwingHeaders, natsHeaderGetter))).toBeUndefined();
    });
  });

  describe('natsHeaderSetter', () => {
    it('writes a value, replacing the one of the same name', () => {
      const headers = driverHeaders([['traceparent', 'old']]);
      natsHeaderSetter.set(headers, 'traceparent', TRACEPARENT);
      expect(entries(headers)).toEqual([['traceparent', [TRACEPARENT]]]);
    });

    it('removes differently-cased copies, so that the receiver sees the field once', () => {
      const headers = driverHeaders([
        ['Traceparent', 'stale-1'],
        ['TRACEPARENT', 'stale-2'],
        ['x-request-id', 'r-1'],
      ]);
      natsHeaderSetter.set(headers, 'traceparent', TRACEPARENT);
      expect(entries(headers)).toEqual([
        ['x-request-id', ['r-1']],
        ['traceparent', [TRACEPARENT]],
      ]);
      expect(natsHeaderGetter.get(headers, 'traceparent')).toBe(TRACEPARENT);
    });

    it('skips (and logs) a value the driver refuses; the other headers are untouched and nothing throws', () => {
      const warnings: string[] = [];
      diag.setLogger(
        { error: () => {}, warn: (msg: string) => warnings.push(msg), info: () => {}, debug: () => {}, verbose: () => {} },
        DiagLogLevel.WARN,
      );
      const headers = driverHeaders([['x-request-id', 'r-1']]);
      expect(() => natsHeaderSetter.set(headers, 'baggage', 'k=v\r\nInjected: yes')).not.toThrow();
      expect(entries(headers)).toEqual([['x-request-id', ['r-1']]]);
      expect(warnings.some((w) => w.includes('"baggage"'))).toBe(true);
    });

    it('never throws on a missing or throwing headers object', () => {
      expect(() => natsHeaderSetter.set(undefined, 'traceparent', TRACEPARENT)).not.toThrow();
      expect(() => natsHeaderSetter.set(null, 'traceparent', TRACEPARENT)).not.toThrow();
      expect(() => natsHeaderSetter.set(throwingHeaders, 'traceparent', TRACEPARENT)).not.toThrow();
    });

    it('carries the active context through inject and extract', () => {
      const span = trace.getTracer('test').startSpan('send');
      const ctx = propagation.setBaggage(
        trace.setSpan(ROOT_CONTEXT, span),
        propagation.createBaggage({ 'tenant.id': { value: 'acme' } }),
      );
      const headers = driverHeaders([['Traceparent', 'stale']]);
      injectContext(ctx, headers, natsHeaderSetter);
      span.end();
      expect(headers.keys().sort()).toEqual(['baggage', 'traceparent']);
      const extracted = extractContext(headers, natsHeaderGetter);
      expect(trace.getSpanContext(extracted)?.spanId).toBe(span.spanContext().spanId);
      expect(propagation.getBaggage(extracted)?.getEntry('tenant.id')?.value).toBe('acme');
    });
  });

  describe('copyNatsHeaders', () => {
    it('copies every value of every header into a new object and never changes the source', () => {
      const source = driverHeaders([
        ['Traceparent', 'stale'],
        ['x-tag', 'a'],
        ['x-tag', 'b'],
      ]);
      const before = entries(source);
      const copy = copyNatsHeaders(source)!;
      expect(copy).not.toBe(source);
      expect(entries(copy)).toEqual(before);

      natsHeaderSetter.set(copy, 'traceparent', TRACEPARENT);
      copy.append('x-tag', 'c');
      expect(entries(source)).toEqual(before);
      expect(natsHeaderGetter.get(copy, 'traceparent')).toBe(TRACEPARENT);
    });

    it('gives a new empty headers object without a source', () => {
      for (const source of [undefined, null]) {
        const copy = copyNatsHeaders(source);
        expect(copy).toBeDefined();
        expect(copy!.keys()).toEqual([]);
      }
    });
  });
});
