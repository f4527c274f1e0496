import { propagation, ROOT_CONTEXT, trace, type Context } from '@opentelemetry/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestingSdk, type TestingSdk } from '../../testing/testing-sdk.js';
import { extractContext } from '../../propagation/carrier.js';
import {
  metadataWithContext,
  redisMetadataGetter,
  REPLY_CONTEXT_KEY,
  replyWithContext,
  requestsReplyContext,
  withoutReplyMetadata,
} from './redis.carrier.js';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN_ID = '00f067aa0ba902b7';
const TRACEPARENT = `00-${TRACE_ID}-${SPAN_ID}-01`;

const spanIdOf = (metadata: unknown): string | undefined => trace.getSpanContext(extractContext(metadata, redisMetadataGetter))?.spanId;

function withSpan(): Context {
  return trace.setSpanContext(ROOT_CONTEXT, { traceId: TRACE_ID, spanId: SPAN_ID, traceFlags: 1, isRemote: false });
}

describe('Redis packet metadata carrier', () => {
  let sdk: TestingSdk;

  beforeAll(() => {
    sdk = startTestingSdk();
  });
  afterAll(() => sdk.shutdown());

  describe('redisMetadataGetter', () => {
    it('reads trace context from a metadata object, whatever the case of the key', () => {
      for (const key of ['traceparent', 'Traceparent', 'TRACEPARENT']) {
        expect(redisMetadataGetter.get({ [key]: TRACEPARENT }, 'traceparent'), key).toBe(TRACEPARENT);
        expect(spanIdOf({ [key]: TRACEPARENT }), key).toBe(SPAN_ID);
      }
      expect(redisMetadataGetter.keys({ traceparent: TRACEPARENT, tenant: 'acme' })).toEqual(['traceparent', 'tenant']);
    });

    it('reads a traceparent under two spellings as repeated, and so absent', () => {
      expect(redisMetadataGetter.get({ traceparent: TRACEPARENT, Traceparent: TRACEPARENT }, 'traceparent')).toBeUndefined();
      expect(spanIdOf({ traceparent: TRACEPARENT, Traceparent: TRACEPARENT })).toBeUndefined();
    });

    it('reads only strings: numbers, objects, null, booleans and arrays (even of one string) are absent', () => {
      for (const value of [42, { v: TRACEPARENT }, null, true, [TRACEPARENT], [TRACEPARENT, TRACEPARENT]]) {
        expect(redisMetadataGetter.get({ traceparent: value }, 'traceparent'), JSON.stringify(value)).toBeUndefined();
        expect(spanIdOf({ traceparent: value }), JSON.stringify(value)).toBeUndefined();
      }
    });

    it('has no fields when the metadata is not a plain object', () => {
      for (const metadata of [undefined, null, 'traceparent', 7, [TRACEPARENT], [['traceparent', TRACEPARENT]]]) {
        expect(redisMetadataGetter.get(metadata, 'traceparent'), JSON.stringify(metadata)).toBeUndefined();
        expect(redisMetadataGetter.keys(metadata), JSON.stringify(metadata)).toEqual([]);
      }
    });

    it('reads oversized values and values with control or non-ASCII characters as absent', () => {
      expect(redisMetadataGetter.get({ baggage: `k=${'v'.repeat(10 * 1024)}` }, 'baggage')).toBeUndefined();
      expect(redisMetadataGetter.get({ traceparent: `${TRACEPARENT}-${'0'.repeat(500)}` }, 'traceparent')).toBeUndefined();
      for (const bad of [`${TRACEPARENT}\r\n`, `${TRACEPARENT}\u0000`, `\u001b${TRACEPARENT}`, `${TRACEPARENT}é`]) {
        expect(redisMetadataGetter.get({ traceparent: bad }, 'traceparent'), JSON.stringify(bad)).toBeUndefined();
      }
    });

    it('does not search metadata with more than 256 keys', () => {
      const many = (count: number): Record<string, string> => ({
        ...Object.fromEntries(Array.from({ length: count - 1 }, (_, i) => [`k${i}`, 'v'])),
        traceparent: TRACEPARENT,
      });
      expect(spanIdOf(many(256))).toBe(SPAN_ID);
      expect(spanIdOf(many(257))).toBeUndefined();
    });

    it('never throws, even on an object whose keys or values throw', () => {
      const hostile = new Proxy(
        {},
        {
          ownKeys: () => {
            throw new Error('keys');
          },
        },
      );
      expect(redisMetadataGetter.get(hostile, 'traceparent')).toBeUndefined();
      expect(redisMetadataGetter.keys(hostile)).toEqual([]);
      const getterThrows = Object.defineProperty({}, 'traceparent', {
        enumerable: true,
        get: () => {
          throw new Error('value');
        },
      });
      expect(redisMetadataGetter.get(getterThrows, 'traceparent')).toBeUndefined();
    });
  });

  describe('metadataWithContext', () => {
    it('adds the context to a copy of the application\'s metadata, never changing it', () => {
      const own = Object.freeze({ tenant: 'acme', Traceparent: 'stale' });
      const metadata = metadataWithContext(own, withSpan(), false) as Record<string, string>;
      expect(metadata).toEqual({ tenant: 'acme', traceparent: TRACEPARENT });
      expect(own).toEqual({ tenant: 'acme', Traceparent: 'stale' });
    });

    it('asks for the reply context on requests only', () => {
      expect(metadataWithContext(undefined, withSpan(), true)).toEqual({ traceparent: TRACEPARENT, [REPLY_CONTEXT_KEY]: '1' });
      expect(metadataWithContext(undefined, withSpan(), false)).toEqual({ traceparent: TRACEPARENT });
    });

    it('writes baggage too, and adds no metadata field when there is nothing to send', () => {
      const ctx = propagation.setBaggage(withSpan(), propagation.createBaggage({ 'tenant.id': { value: 'acme' } }));
      expect(metadataWithContext(undefined, ctx, false)).toEqual({ traceparent: TRACEPARENT, baggage: 'tenant.id=acme' });
      expect(metadataWithContext(undefined, ROOT_CONTEXT, false)).toBeUndefined();
      expect(metadataWithContext({}, ROOT_CONTEXT, false)).toEqual({});
    });

    it('leaves metadata that is not an object (the application\'s own choice) as it is', () => {
      for (const own of ['a string', 7, null, ['x']]) {
        expect(metadataWithContext(own, withSpan(), true)).toBe(own);
      }
    });
  });

  it('requestsReplyContext: only the exact request', () => {
    expect(requestsReplyContext({ [REPLY_CONTEXT_KEY]: '1' })).toBe(true);
    for (const metadata of [{ [REPLY_CONTEXT_KEY]: 1 }, { [REPLY_CONTEXT_KEY]: 'yes' }, {}, undefined, 'otel-reply-context', [REPLY_CONTEXT_KEY]]) {
      expect(requestsReplyContext(metadata), JSON.stringify(metadata)).toBe(false);
    }
  });

  it('replyWithContext writes fresh metadata, never a copy of anything, and leaves non-objects alone', () => {
    const reply = { id: 'r1', response: { ok: true }, isDisposed: true };
    expect(replyWithContext(reply, withSpan())).toEqual({ ...reply, metadata: { traceparent: TRACEPARENT } });
    expect(reply).not.toHaveProperty('metadata');
    // A reply that had metadata (a custom serializer's) gets ours instead of it.
    expect(replyWithContext({ ...reply, metadata: { traceparent: 'hostile', x: 'y' } }, withSpan())).toEqual({
      ...reply,
      metadata: { traceparent: TRACEPARENT },
    });
    expect(replyWithContext(reply, ROOT_CONTEXT)).toBe(reply);
    expect(replyWithContext('serialized', withSpan())).toBe('serialized');
  });

  it('withoutReplyMetadata removes metadata from a Nest reply envelope only', () => {
    const envelope = { id: 'r1', response: 1, isDisposed: true, metadata: { traceparent: TRACEPARENT } };
    expect(withoutReplyMetadata(envelope)).toEqual({ id: 'r1', response: 1, isDisposed: true });
    expect(withoutReplyMetadata({ id: 'r1', err: 'x', metadata: {} })).toEqual({ id: 'r1', err: 'x' });
    // Foreign payloads (Nest hands them to the caller whole) are not touched.
    const foreign = { id: 'r1', metadata: { a: 1 }, total: 3 };
    expect(withoutReplyMetadata(foreign)).toBe(foreign);
    const noId = { response: 1, metadata: {} };
    expect(withoutReplyMetadata(noId)).toBe(noId);
    for (const value of ['text', 7, null, undefined, [1]]) {
      expect(withoutReplyMetadata(value)).toBe(value);
    }
  });
});
