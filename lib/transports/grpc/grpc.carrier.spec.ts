import { Metadata } from '@grpc/grpc-js';
import { propagation, ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { grpcMetadataGetter, grpcMetadataSetter, loadGrpcDriver, loadedGrpcDriver, type GrpcMetadata } from './grpc.carrier.js';

const GOOD = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

function metadata(entries: Array<[string, string | Buffer]>): GrpcMetadata {
  const md = new Metadata();
  for (const [key, value] of entries) {
    md.add(key, value);
  }
  return md as unknown as GrpcMetadata;
}

describe('gRPC metadata carrier', () => {
  it('reads a text value; a repeated key gives every value (which the validating layer refuses for traceparent)', () => {
    expect(grpcMetadataGetter.get(metadata([['traceparent', GOOD]]), 'traceparent')).toBe(GOOD);
    expect(grpcMetadataGetter.get(metadata([['TraceParent', GOOD]]), 'traceparent')).toBe(GOOD);
    expect(grpcMetadataGetter.get(metadata([['traceparent', GOOD], ['traceparent', GOOD]]), 'traceparent')).toBeUndefined();
    expect(grpcMetadataGetter.get(metadata([['tracestate', 'a=1'], ['tracestate', 'b=2']]), 'tracestate')).toBe('a=1,b=2');
  });

  it('never reads binary metadata, lists no -bin key, and reads oversized values as absent', () => {
    const md = metadata([
      ['traceparent-bin', Buffer.from(GOOD)],
      ['baggage-bin', Buffer.from('a=b')],
      ['baggage', `k=${'x'.repeat(10_000)}`],
    ]);
    expect(grpcMetadataGetter.get(md, 'traceparent-bin')).toBeUndefined();
    expect(grpcMetadataGetter.get(md, 'traceparent')).toBeUndefined();
    expect(grpcMetadataGetter.get(md, 'baggage')).toBeUndefined();
    expect(grpcMetadataGetter.keys(md)).toEqual(['baggage']);
  });

  it('never throws on broken carriers', () => {
    const broken = {
      get: () => {
        throw new Error('no');
      },
      getMap: () => {
        throw new Error('no');
      },
    } as unknown as GrpcMetadata;
    expect(grpcMetadataGetter.get(broken, 'traceparent')).toBeUndefined();
    expect(grpcMetadataGetter.keys(broken)).toEqual([]);
    expect(grpcMetadataGetter.get(undefined, 'traceparent')).toBeUndefined();
    expect(() => grpcMetadataSetter.set(broken, 'traceparent', GOOD)).not.toThrow();
  });

  describe('with the W3C propagator', () => {
    beforeEach(() => propagation.setGlobalPropagator(new W3CTraceContextPropagator()));
    afterEach(() => propagation.disable());

    it('round-trips a context, replacing a value already there', () => {
      const ctx = trace.setSpanContext(ROOT_CONTEXT, { traceId: '1'.repeat(32), spanId: '2'.repeat(16), traceFlags: 1 });
      const md = metadata([['traceparent', GOOD]]);
      propagation.inject(ctx, md, grpcMetadataSetter);
      expect((md as unknown as Metadata).get('traceparent')).toEqual([`00-${'1'.repeat(32)}-${'2'.repeat(16)}-01`]);
      const extracted = trace.getSpanContext(propagation.extract(ROOT_CONTEXT, md, grpcMetadataGetter));
      expect(extracted).toMatchObject({ traceId: '1'.repeat(32), spanId: '2'.repeat(16), isRemote: true });
    });
  });

  it('loads @grpc/grpc-js lazily, once', async () => {
    const driver = await loadGrpcDriver();
    expect(typeof driver?.InterceptingCall).toBe('function');
    expect(typeof driver?.ServerInterceptingCall).toBe('function');
    expect(loadedGrpcDriver()).toBe(driver);
    expect(await loadGrpcDriver()).toBe(driver);
  });
});
