import { baggageEntryMetadataFromString, defaultTextMapGetter, defaultTextMapSetter, propagation, ROOT_CONTEXT } from '@opentelemetry/api';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isSafeHeaderValue } from './header-values.js';
import {
  BAGGAGE_MAX_BYTES,
  BAGGAGE_MAX_MEMBERS,
  parseBaggage,
  percentDecode,
  serializeBaggage,
  W3CBaggagePropagator,
} from './baggage.propagator.js';

const propagator = new W3CBaggagePropagator();

function roundTrip(header: string): string | undefined {
  const ctx = propagator.extract(ROOT_CONTEXT, { baggage: header }, defaultTextMapGetter);
  const out: Record<string, string> = {};
  propagator.inject(ctx, out, defaultTextMapSetter);
  return out.baggage;
}

function entries(header: string): Record<string, { value: string; metadata?: string }> {
  return Object.fromEntries(
    Object.entries(parseBaggage(header)).map(([k, e]) => [k, { value: e.value, ...(e.metadata ? { metadata: e.metadata.toString() } : {}) }]),
  );
}

describe('W3C baggage: members', () => {
  it('parses members with OWS, properties and percent-encoding', () => {
    expect(entries(' userId = alice , serverNode=DF%2028 ;p1 ; p2 = v2, isProduction=false')).toEqual({
      userId: { value: 'alice' },
      serverNode: { value: 'DF 28', metadata: 'p1;p2=v2' },
      isProduction: { value: 'false' },
    });
  });

  it.each([
    ['a key that is not a token', 'bad key=1,ok=2'],
    ['an empty key', '=1,ok=2'],
    ['no =', 'novalue,ok=2'],
    ['a value with a space inside', 'k=a b,ok=2'],
    ['a value with a double quote', 'k="x",ok=2'],
    ['a value with a backslash', 'k=a\\b,ok=2'],
  ])('drops a member with %s and keeps the others', (_name, header) => {
    expect(entries(header)).toEqual({ ok: { value: '2' } });
  });

  it('keeps members whose keys are Object.prototype names (__proto__, constructor)', () => {
    expect(Object.entries(parseBaggage('__proto__=a,constructor=b,toString=c')).map(([key, entry]) => [key, entry.value])).toEqual([
      ['__proto__', 'a'],
      ['constructor', 'b'],
      ['toString', 'c'],
    ]);
    expect(roundTrip('__proto__=a;p,k=v')).toBe('__proto__=a;p,k=v');
  });

  it('accepts an empty value', () => {
    expect(entries('k=')).toEqual({ k: { value: '' } });
  });

  it.each([
    ['a=b;;;;', { a: { value: 'b' } }],
    ['a=b;p=v;bad key;q', { a: { value: 'b', metadata: 'p=v;q' } }],
    ['a=b;p=v v', { a: { value: 'b' } }],
    ['a=b;=v', { a: { value: 'b' } }],
  ])('drops invalid properties of %j, keeps the member', (header, expected) => {
    expect(entries(header)).toEqual(expected);
  });

  it('decodes percent-encoding as UTF-8, invalid sequences as U+FFFD, a lone % as itself', () => {
    expect(percentDecode('%E2%82%AC')).toBe('€');
    expect(percentDecode('%FF%FE')).toBe('\uFFFD\uFFFD');
    expect(percentDecode('100%')).toBe('100%');
    expect(percentDecode('%zz')).toBe('%zz');
  });

  it(`keeps at most ${BAGGAGE_MAX_MEMBERS} members`, () => {
    const header = [...Array(BAGGAGE_MAX_MEMBERS + 20).keys()].map((i) => `k${i}=v`).join(',');
    expect(Object.keys(parseBaggage(header.slice(0, BAGGAGE_MAX_BYTES)))).toHaveLength(BAGGAGE_MAX_MEMBERS);
  });

  it('ignores a header over 8192 bytes and a member over 4096 bytes', () => {
    expect(parseBaggage(`k=${'v'.repeat(BAGGAGE_MAX_BYTES)}`)).toEqual({});
    expect(entries(`big=${'v'.repeat(4100)},ok=1`)).toEqual({ ok: { value: '1' } });
  });
});

describe('W3C baggage: what is sent', () => {
  it('round-trips a valid header (values re-encoded, properties normalized)', () => {
    expect(roundTrip('userId=alice,serverNode=DF%2028;p1;p2=v2')).toBe('userId=alice,serverNode=DF%2028;p1;p2=v2');
  });

  it('never forwards invalid properties (a=b;;;; goes out as a=b)', () => {
    expect(roundTrip('a=b;;;;')).toBe('a=b');
  });

  it('percent-encodes control characters and non-ASCII set by the application; drops non-token keys and bad metadata', () => {
    const baggage = propagation.createBaggage({
      crlf: { value: 'a\r\nb' },
      euro: { value: '€ \u0001' },
      lone: { value: '\uD800' },
      'bad key': { value: 'x' },
      meta: { value: 'v', metadata: baggageEntryMetadataFromString('p\u0001;q=1') },
    });
    const out: Record<string, string> = {};
    propagator.inject(propagation.setBaggage(ROOT_CONTEXT, baggage), out, defaultTextMapSetter);
    expect(out.baggage).toBe('crlf=a%0D%0Ab,euro=%E2%82%AC%20%01,lone=%EF%BF%BD,meta=v;q=1');
  });

  it('sends nothing when nothing valid is left', () => {
    expect(serializeBaggage([['bad key', { value: 'x' }]])).toBeUndefined();
    expect(roundTrip('bad key=1')).toBeUndefined();
  });

  it('whatever arrives, what goes out is a safe header value within limits, and parses back to the same entries (property)', () => {
    const piece = fc.oneof(
      fc.string(),
      fc.string({ unit: 'binary' }),
      fc.constantFrom('k=v', ';', ',', '=', '%', '%0D%0A', '%E2%82', ' ', '\t', '\r\n', '\u0001', 'p;q=1', 'a=b;;;;'),
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 30 }), (parts) => {
        const header = parts.join('');
        const sent = roundTrip(header);
        if (sent !== undefined) {
          expect(isSafeHeaderValue(sent)).toBe(true);
          expect(Buffer.byteLength(sent)).toBeLessThanOrEqual(BAGGAGE_MAX_BYTES);
          expect(roundTrip(sent)).toBe(sent);
        }
      }),
      { seed: 21, numRuns: 3000 },
    );
  });
});
