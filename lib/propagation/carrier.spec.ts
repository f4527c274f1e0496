import { diag, DiagLogLevel, propagation, ROOT_CONTEXT, trace, type DiagLogger, type TextMapGetter } from '@opentelemetry/api';
import { CompositePropagator } from '@opentelemetry/core';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { resetDiagLimited } from '../utils/diag-limited.js';
import { W3CBaggagePropagator } from './baggage.propagator.js';
import { extractContext, findHeader, injectContext, validatingGetter } from './carrier.js';
import { contextFieldValue, isSafeHeaderValue } from './header-values.js';
import { W3CTraceContextPropagator } from './trace-context.propagator.js';

const TP = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
const recordGetter: TextMapGetter<Record<string, unknown>> = {
  keys: (c) => Object.keys(c),
  get: (c, k) => findHeader(c, k) as string | string[] | undefined,
};

describe('contextFieldValue: the one check every inbound value passes', () => {
  it.each([
    ['a string', TP, TP],
    ['a Buffer', Buffer.from(TP), TP],
    ['a byte array', new Uint8Array(Buffer.from(TP)), TP],
  ])('reads %s', (_name, raw, expected) => {
    expect(contextFieldValue('traceparent', raw)).toBe(expected);
  });

  it('combines a repeated list header with commas and rejects a repeated traceparent', () => {
    expect(contextFieldValue('tracestate', ['a=1', Buffer.from('b=2')])).toBe('a=1,b=2');
    expect(contextFieldValue('traceparent', [TP, TP])).toBeUndefined();
    expect(contextFieldValue('traceparent', [TP])).toBe(TP);
  });

  it('rejects a traceparent repeated and already combined into one value (Node req.headers, proxies)', () => {
    const future = 'cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz';
    expect(contextFieldValue('traceparent', `${future}, ${TP}`)).toBeUndefined();
    expect(contextFieldValue('traceparent', `${TP}, ${TP}`)).toBeUndefined();
    expect(contextFieldValue('traceparent', future)).toBe(future);
  });

  it.each([
    ['CR', 'k=v\r'],
    ['LF', 'k=v\nx'],
    ['NUL', 'k=\0'],
    ['a control byte in a property', 'k=v;p\x01'],
    ['DEL', 'k=\x7f'],
    ['non-ASCII', 'k=é'],
    ['a non-ASCII byte in a Buffer', Buffer.from([0x6b, 0x3d, 0xff])],
    ['a number', 42],
    ['an object', { toString: () => 'k=v' }],
    ['null', null],
    ['an empty array', []],
    ['an array holding a number', ['k=v', 1]],
  ])('treats a value with %s as absent', (_name, raw) => {
    expect(contextFieldValue('baggage', raw)).toBeUndefined();
  });

  it('treats a value over the field limit as absent, never truncates', () => {
    expect(contextFieldValue('baggage', `k=${'v'.repeat(8190)}`)).toBe(`k=${'v'.repeat(8190)}`);
    expect(contextFieldValue('baggage', `k=${'v'.repeat(8191)}`)).toBeUndefined();
    expect(contextFieldValue('traceparent', `${TP}-${'x'.repeat(600)}`)).toBeUndefined();
  });

  it('only safe text ever passes (property)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary' }), fc.uint8Array().map((b) => Buffer.from(b)), fc.array(fc.string({ unit: 'binary' }))), (raw) => {
        const value = contextFieldValue('baggage', raw);
        if (value !== undefined) {
          expect(isSafeHeaderValue(value)).toBe(true);
        }
      }),
      { seed: 31, numRuns: 3000 },
    );
  });
});

describe('findHeader: case-insensitive, every value', () => {
  it('finds Traceparent and TRACEPARENT; two spellings count as a repeat', () => {
    expect(findHeader({ Traceparent: TP }, 'traceparent')).toBe(TP);
    expect(findHeader({ TRACEPARENT: TP }, 'traceparent')).toBe(TP);
    expect(findHeader({ traceparent: TP, Traceparent: TP }, 'traceparent')).toEqual([TP, TP]);
    // An array nested in an array (AMQP) is no header value: it is not unwrapped into a repeated header.
    expect(contextFieldValue('traceparent', findHeader({ traceparent: [[TP]] }, 'traceparent'))).toBeUndefined();
    expect(contextFieldValue('baggage', findHeader({ baggage: [['k=v']] }, 'baggage'))).toBeUndefined();
    expect(contextFieldValue('traceparent', findHeader({ traceparent: [TP] }, 'traceparent'))).toBe(TP);
  });

  it('reads hostile carriers as absent', () => {
    const hostile = new Proxy({}, { ownKeys: () => { throw new Error('boom'); } });
    expect(findHeader(hostile, 'traceparent')).toBeUndefined();
    expect(findHeader(null, 'traceparent')).toBeUndefined();
    expect(findHeader('traceparent', 'traceparent')).toBeUndefined();
  });
});

describe('extractContext / injectContext', () => {
  let warnings: string[];
  beforeEach(() => {
    resetDiagLimited();
    warnings = [];
    const logger: DiagLogger = {
      error: (m) => warnings.push(m),
      warn: (m) => warnings.push(m),
      info: () => undefined,
      debug: () => undefined,
      verbose: () => undefined,
    };
    diag.setLogger(logger, DiagLogLevel.WARN);
    propagation.setGlobalPropagator(
      new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }),
    );
  });
  afterEach(() => {
    propagation.disable();
    diag.disable();
  });

  it('continues a valid parent sent as Buffers under canonical MIME names', () => {
    const ctx = extractContext({ Traceparent: Buffer.from(TP), Baggage: Buffer.from('tenant=acme') }, recordGetter);
    expect(trace.getSpanContext(ctx)?.traceId).toBe('0af7651916cd43dd8448eb211c80319c');
    expect(propagation.getBaggage(ctx)?.getEntry('tenant')?.value).toBe('acme');
  });

  it('a baggage property with a control byte never reaches the context (the crash of issue 12)', () => {
    const ctx = extractContext({ traceparent: TP, baggage: 'k=v;p\x01' }, recordGetter);
    expect(propagation.getBaggage(ctx)).toBeUndefined();
    const out: Record<string, string> = {};
    injectContext(ctx, out);
    expect(out.baggage).toBeUndefined();
    expect(Object.values(out).every(isSafeHeaderValue)).toBe(true);
  });

  it('a getter that throws gives a fresh root, and nothing is thrown', () => {
    const throwing: TextMapGetter<unknown> = { keys: () => { throw new Error('k'); }, get: () => { throw new Error('g'); } };
    expect(extractContext({}, throwing)).toBe(ROOT_CONTEXT);
    expect(validatingGetter(throwing).keys({})).toEqual([]);
  });

  it('a setter that throws is logged once per minute, not per message, and the caller goes on', () => {
    const ctx = extractContext({ traceparent: TP }, recordGetter);
    const setter = { set: vi.fn(() => { throw new Error('driver refuses'); }) };
    for (let i = 0; i < 50; i++) {
      injectContext(ctx, {}, setter);
    }
    expect(setter.set).toHaveBeenCalledTimes(50);
    expect(warnings.filter((w) => w.includes('could not write'))).toHaveLength(1);
  });

  it('a propagator that writes an unsafe value: the header is not sent', () => {
    propagation.disable();
    propagation.setGlobalPropagator({
      inject: (_c, carrier, setter) => setter.set(carrier, 'x-evil', 'a\r\nInjected: 1'),
      extract: (c) => c,
      fields: () => ['x-evil'],
    });
    const out: Record<string, string> = {};
    injectContext(ROOT_CONTEXT, out);
    expect(out).toEqual({});
    expect(warnings.some((w) => w.includes('not sending the "x-evil" header'))).toBe(true);
  });
});
