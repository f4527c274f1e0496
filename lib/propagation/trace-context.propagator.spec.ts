import {
  createTraceState,
  defaultTextMapGetter,
  defaultTextMapSetter,
  ROOT_CONTEXT,
  trace,
  TraceFlags,
  type SpanContext,
} from '@opentelemetry/api';
import { suppressTracing } from '@opentelemetry/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  parseTraceParent,
  parseTraceState,
  fitTraceState,
  traceStateToSend,
  W3CTraceContextPropagator,
  TRACE_FLAG_RANDOM,
} from './trace-context.propagator.js';

const TRACE = '12345678901234567890123456789012';
const SPAN = '1234567890123456';
const VALID = `00-${TRACE}-${SPAN}-01`;
const propagator = new W3CTraceContextPropagator();

/** What the propagator extracts from HTTP-like headers given as [name, value] pairs (a repeated name = several values). */
function extract(headers: Array<[string, string]>): SpanContext | undefined {
  const carrier: Record<string, string | string[]> = {};
  for (const [name, value] of headers) {
    // Header names are case-insensitive; a Node HTTP server hands them over in lower case.
    const key = name.toLowerCase();
    const previous = carrier[key];
    carrier[key] = previous === undefined ? value : [...(Array.isArray(previous) ? previous : [previous]), value];
  }
  return trace.getSpanContext(propagator.extract(ROOT_CONTEXT, carrier, defaultTextMapGetter));
}

function injected(spanContext: SpanContext, ctx = ROOT_CONTEXT): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagator.inject(trace.setSpanContext(ctx, spanContext), carrier, defaultTextMapSetter);
  return carrier;
}

// Cases from the W3C Trace Context test suite (w3c/trace-context test/test.py, STRICT_LEVEL 2),
// and the Level 2 specification's traceparent grammar.
describe('traceparent (W3C Trace Context Level 2)', () => {
  it.each([
    ['version 00', VALID, TRACE, SPAN, TraceFlags.SAMPLED],
    ['not sampled', `00-${TRACE}-${SPAN}-00`, TRACE, SPAN, 0],
    ['random flag kept', `00-${TRACE}-${SPAN}-03`, TRACE, SPAN, TraceFlags.SAMPLED | TRACE_FLAG_RANDOM],
    ['random, not sampled', `00-${TRACE}-${SPAN}-02`, TRACE, SPAN, TRACE_FLAG_RANDOM],
    ['unknown flag bits dropped', `00-${TRACE}-${SPAN}-ff`, TRACE, SPAN, TraceFlags.SAMPLED | TRACE_FLAG_RANDOM],
    ['future version 0xcc', `cc-${TRACE}-${SPAN}-01`, TRACE, SPAN, 1],
    ['future version with more fields', `cc-${TRACE}-${SPAN}-01-what-the-future-will-be-like`, TRACE, SPAN, 1],
    ['leading space', ` ${VALID}`, TRACE, SPAN, 1],
    ['leading tab', `\t${VALID}`, TRACE, SPAN, 1],
    ['trailing space', `${VALID} `, TRACE, SPAN, 1],
    ['trailing tab', `${VALID}\t`, TRACE, SPAN, 1],
    ['both', `\t ${VALID} \t`, TRACE, SPAN, 1],
  ])('accepts %s', (_name, header, traceId, spanId, flags) => {
    expect(extract([['traceparent', header]])).toEqual({ traceId, spanId, traceFlags: flags, isRemote: true });
  });

  it.each([
    ['version 00 with a trailing character', `${VALID}.`],
    ['version 00 with more fields', `${VALID}-what-the-future-will-be-like`],
    ['future version followed by a non-dash', `cc-${TRACE}-${SPAN}-01.what-the-future-will-be-like`],
    ['version ff', `ff-${TRACE}-${SPAN}-01`],
    ['version with illegal characters (.0)', `.0-${TRACE}-${SPAN}-01`],
    ['version with illegal characters (0.)', `0.-${TRACE}-${SPAN}-01`],
    ['version too long (3)', `000-${TRACE}-${SPAN}-01`],
    ['version too long (4)', `0000-${TRACE}-${SPAN}-01`],
    ['version too short', `0-${TRACE}-${SPAN}-01`],
    ['upper-case version', `0A-${TRACE}-${SPAN}-01`],
    ['trace id all zero', `00-${'0'.repeat(32)}-${SPAN}-01`],
    ['trace id with an illegal first character', `00-.2345678901234567890123456789012-${SPAN}-01`],
    ['trace id with an illegal last character', `00-1234567890123456789012345678901.-${SPAN}-01`],
    ['trace id too long', `00-123456789012345678901234567890123-${SPAN}-01`],
    ['trace id too short', `00-1234567890123456789012345678901-${SPAN}-01`],
    ['upper-case trace id', `00-${TRACE.replace('1', 'A').replace('2', 'B')}ABCDEF`.slice(0, 35) + `-${SPAN}-01`],
    ['parent id all zero', `00-${TRACE}-0000000000000000-01`],
    ['parent id with an illegal first character', `00-${TRACE}-.234567890123456-01`],
    ['parent id with an illegal last character', `00-${TRACE}-123456789012345.-01`],
    ['parent id too long', `00-${TRACE}-12345678901234567-01`],
    ['parent id too short', `00-${TRACE}-123456789012345-01`],
    ['trace flags with an illegal first character', `00-${TRACE}-${SPAN}-.0`],
    ['trace flags with an illegal last character', `00-${TRACE}-${SPAN}-0.`],
    ['trace flags too long', `00-${TRACE}-${SPAN}-001`],
    ['trace flags too short', `00-${TRACE}-${SPAN}-1`],
    ['empty', ''],
    ['wrong delimiters', `00_${TRACE}_${SPAN}_01`],
  ])('rejects %s: a new trace starts', (_name, header) => {
    expect(extract([['traceparent', header]])).toBeUndefined();
  });

  it('rejects a duplicated traceparent (two headers)', () => {
    expect(extract([['traceparent', VALID], ['traceparent', `00-${TRACE.replace('1', '9')}-${SPAN}-01`]])).toBeUndefined();
  });

  it.each(['trace-parent', 'trace.parent'])('ignores a traceparent under the wrong name %j', (name) => {
    expect(extract([[name, VALID]])).toBeUndefined();
  });

  it('sends version 00 with the sampled and random bits only, even for a future version received', () => {
    const received = extract([['traceparent', `cc-${TRACE}-${SPAN}-ff-future`]])!;
    expect(injected(received)).toEqual({ traceparent: `00-${TRACE}-${SPAN}-03` });
  });

  it('parseTraceParent never throws and accepts only its grammar (property)', () => {
    const grammar = /^[ \t]*(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}(-.*)?[ \t]*$/s;
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.constantFrom(VALID, `cc-${TRACE}-${SPAN}-01-x`), fc.string({ unit: 'binary' })), (value) => {
        const parsed = parseTraceParent(value);
        if (parsed) {
          expect(value).toMatch(grammar);
          expect(parsed.traceFlags & ~0x03).toBe(0);
        }
      }),
      { seed: 11, numRuns: 2000 },
    );
  });
});

describe('tracestate (validated as a whole header)', () => {
  const withState = (...states: string[]): string | undefined =>
    extract([['traceparent', `00-${TRACE}-${SPAN}-00`], ...states.map((s): [string, string] => ['tracestate', s])])?.traceState?.serialize();

  it('inherits foo=1,bar=2', () => {
    expect(withState('foo=1,bar=2')).toBe('foo=1,bar=2');
  });

  it.each(['TraceState', 'TrAcEsTaTe', 'TRACESTATE'])('reads it under %s', (name) => {
    const state = extract([['traceparent', VALID], [name, 'foo=1']])?.traceState;
    expect(state?.get('foo')).toBe('1');
  });

  it.each(['trace-state', 'trace.state'])('ignores it under the wrong name %j', (name) => {
    expect(extract([['traceparent', VALID], [name, 'foo=1']])?.traceState).toBeUndefined();
  });

  it('discards tracestate without traceparent (no context at all)', () => {
    expect(extract([['tracestate', 'foo=1']])).toBeUndefined();
  });

  it('an empty header is discarded, others kept, in order', () => {
    expect(withState('')).toBeUndefined();
    expect(withState('foo=1', '')).toBe('foo=1');
    expect(withState('', 'foo=1')).toBe('foo=1');
  });

  it('combines several headers in order', () => {
    expect(withState('foo=1,bar=2', 'rojo=1,congo=2', 'baz=3')).toBe('foo=1,bar=2,rojo=1,congo=2,baz=3');
  });

  it('accepts every allowed character and spaces/tabs around commas', () => {
    const keyWithoutVendor = 'abcdefghijklmnopqrstuvwxyz0123456789_-*/';
    const keyWithVendor = `${keyWithoutVendor}@a-z0-9_-*/`;
    const value = [...Array(0x7f - 0x20).keys()]
      .map((i) => String.fromCharCode(0x20 + i))
      .filter((c) => c !== ',' && c !== '=')
      .join('');
    expect(extract([['traceparent', VALID], ['tracestate', `${keyWithoutVendor}=${value}`]])?.traceState?.get(keyWithoutVendor)).toBe(value);
    expect(extract([['traceparent', VALID], ['tracestate', `${keyWithVendor}=${value}`]])?.traceState?.get(keyWithVendor)).toBe(value);
    expect(withState('foo=1 \t , \t bar=2, \t baz=3')).toBe('foo=1,bar=2,baz=3');
    expect(withState('foo=1\t \t,\t \tbar=2,\t \tbaz=3')).toBe('foo=1,bar=2,baz=3');
    for (const state of [' foo=1', '\tfoo=1', 'foo=1 ', 'foo=1\t', '\t foo=1 \t']) {
      expect(withState(state)).toBe('foo=1');
    }
  });

  it('32 members are kept; 33 discard the whole header', () => {
    const members = (n: number): string[] => [...Array(n).keys()].map((i) => `bar${String(i + 1).padStart(2, '0')}=${i + 1}`);
    expect(withState(members(32).slice(0, 10).join(','), members(32).slice(10).join(','))).toBe(members(32).join(','));
    expect(withState(members(33).slice(0, 10).join(','), members(33).slice(10).join(','))).toBeUndefined();
  });

  it.each([
    ['duplicated key in one header', ['foo=1,foo=1']],
    ['duplicated key with another value', ['foo=1,foo=2']],
    ['duplicated key across headers', ['foo=1', 'foo=1']],
    ['duplicated key across headers, other value', ['foo=1', 'foo=2']],
    ['key with a space', ['foo =1']],
    ['upper-case key', ['FOO=1']],
    ['key with a dot', ['foo.bar=1']],
    ['empty vendor', ['foo@=1,bar=2']],
    ['empty tenant', ['@foo=1,bar=2']],
    ['double @', ['foo@@bar=1,bar=2']],
    ['two @', ['foo@bar@baz=1,bar=2']],
    ['key of 257 characters', ['foo=1', `${'z'.repeat(257)}=1`]],
    ['tenant of 242 characters', ['foo=1', `${'t'.repeat(242)}@v=1`]],
    ['vendor of 15 characters', ['foo=1', `t@${'v'.repeat(15)}=1`]],
    ['value with =', ['foo=bar=baz']],
    ['empty value', ['foo=,bar=3']],
    ['value with DEL (0x7f)', ['foo=1\x7f,bar=2']],
    ['value of 257 characters', [`foo=${'v'.repeat(257)}`]],
    ['member without =', ['foo,bar=2']],
  ])('discards all of it for %s', (_name, states) => {
    expect(withState(...states)).toBeUndefined();
  });

  it.each([
    ['key of 256 characters', `${'z'.repeat(256)}=1`],
    ['tenant of 241 and vendor of 14 characters', `${'t'.repeat(241)}@${'v'.repeat(14)}=1`],
  ])('keeps %s', (_name, state) => {
    expect(withState('foo=1', state)).toBe(`foo=1,${state}`);
  });

  it('never sends an empty tracestate header', () => {
    const spanContext: SpanContext = { traceId: TRACE, spanId: SPAN, traceFlags: 1, traceState: createTraceState('') };
    expect(injected(spanContext)).toEqual({ traceparent: `00-${TRACE}-${SPAN}-01` });
  });

  it('sends at most 512 characters: long members first, then from the end', () => {
    const long = `long=${'x'.repeat(200)}`;
    const short = [...Array(40).keys()].map((i) => `k${i}=${'y'.repeat(10)}`);
    const members = [long, ...short.slice(0, 30)];
    const received = extract([['traceparent', VALID], ['tracestate', members.join(',')]]);
    const sent = traceStateToSend(received?.traceState)!;
    expect(sent.length).toBeLessThanOrEqual(512);
    expect(sent).not.toContain('long=');
    expect(sent.startsWith('k0=')).toBe(true);
    expect(parseTraceState(sent)).toEqual(sent.split(','));
    expect(sent).toBe(fitTraceState(members).join(','));
    // A valid header of more than 512 characters is shortened, not lost.
    expect(sent.split(',').length).toBeGreaterThan(20);
  });

  it('parseTraceState accepts a header only if every member follows the grammar (property)', () => {
    const member = /^([a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.string(), fc.constantFrom('a=1', 'b@c=2', ' ', '')), { maxLength: 40 }), (parts) => {
        const members = parseTraceState(parts.join(','));
        if (members) {
          expect(members.length).toBeGreaterThan(0);
          expect(members.length).toBeLessThanOrEqual(32);
          members.forEach((m) => expect(m).toMatch(member));
          expect(new Set(members.map((m) => m.split('=')[0])).size).toBe(members.length);
        }
      }),
      { seed: 12, numRuns: 2000 },
    );
  });
});

describe('random flag (Level 2) on outgoing headers', () => {
  it('a child span of a remote parent with the random flag sends it, sampled or not', () => {
    for (const flags of ['02', '03']) {
      const parentContext = propagator.extract(ROOT_CONTEXT, { traceparent: `00-${TRACE}-${SPAN}-${flags}` }, defaultTextMapGetter);
      // What the SDK does for a child span: same trace, new span id, flags from the sampler only.
      const child: SpanContext = { traceId: TRACE, spanId: 'abcdefabcdefabcd', traceFlags: flags === '03' ? 1 : 0 };
      expect(injected(child, parentContext).traceparent).toBe(`00-${TRACE}-abcdefabcdefabcd-${flags}`);
    }
  });

  it('a parent without it does not give it to the child', () => {
    const parentContext = propagator.extract(ROOT_CONTEXT, { traceparent: `00-${TRACE}-${SPAN}-01` }, defaultTextMapGetter);
    const child: SpanContext = { traceId: TRACE, spanId: 'abcdefabcdefabcd', traceFlags: 1 };
    expect(injected(child, parentContext).traceparent).toBe(`00-${TRACE}-abcdefabcdefabcd-01`);
  });

  it('is not carried over to another trace in the same context chain', () => {
    const parentContext = propagator.extract(ROOT_CONTEXT, { traceparent: `00-${TRACE}-${SPAN}-03` }, defaultTextMapGetter);
    const other: SpanContext = { traceId: 'f'.repeat(32), spanId: 'abcdefabcdefabcd', traceFlags: 1 };
    expect(injected(other, parentContext).traceparent).toBe(`00-${'f'.repeat(32)}-abcdefabcdefabcd-01`);
  });

  it('sends nothing for an invalid span context or when tracing is suppressed', () => {
    expect(injected({ traceId: '0'.repeat(32), spanId: SPAN, traceFlags: 1 })).toEqual({});
    expect(injected({ traceId: TRACE, spanId: SPAN, traceFlags: 1 }, suppressTracing(ROOT_CONTEXT))).toEqual({});
  });
});
