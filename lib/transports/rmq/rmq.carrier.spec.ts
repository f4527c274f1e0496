import { propagation, ROOT_CONTEXT, trace, TraceFlags } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { consumeDestination, isTopicWildcard, publishDestination, queueFlags, serverAttributes } from './rmq.attributes.js';
import { rmqHeaderGetter, rmqHeaderSetter, type RmqHeaders } from './rmq.carrier.js';

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

describe('rmqHeaderGetter', () => {
  it('returns string values and decodes Buffers', () => {
    const headers: RmqHeaders = { traceparent: TRACEPARENT, tracestate: Buffer.from('a=1') };
    expect(rmqHeaderGetter.get(headers, 'traceparent')).toBe(TRACEPARENT);
    expect(rmqHeaderGetter.get(headers, 'tracestate')).toBe('a=1');
    expect(rmqHeaderGetter.keys(headers)).toEqual(['traceparent', 'tracestate']);
  });

  it('reads anything else as absent and never throws', () => {
    const hostile = Object.defineProperty({}, 'traceparent', {
      enumerable: true,
      get() {
        throw new Error('boom');
      },
    }) as RmqHeaders;
    const values: unknown[] = [12345, 1.5, true, null, undefined, [TRACEPARENT, 1], { value: TRACEPARENT }, new Date(0), 'x\r\ny'];
    for (const value of values) {
      expect(rmqHeaderGetter.get({ traceparent: value }, 'traceparent')).toBeUndefined();
    }
    expect(rmqHeaderGetter.get(hostile, 'traceparent')).toBeUndefined();
    // An AMQP array of one string is that string; names match case-insensitively.
    expect(rmqHeaderGetter.get({ traceparent: [TRACEPARENT] }, 'traceparent')).toBe(TRACEPARENT);
    expect(rmqHeaderGetter.get({ Traceparent: TRACEPARENT }, 'traceparent')).toBe(TRACEPARENT);
    expect(rmqHeaderGetter.get(undefined, 'traceparent')).toBeUndefined();
    expect(rmqHeaderGetter.get(null, 'traceparent')).toBeUndefined();
    expect(rmqHeaderGetter.get({}, 'traceparent')).toBeUndefined();
    // Inherited properties are not headers.
    expect(rmqHeaderGetter.get({}, 'toString')).toBeUndefined();
    expect(rmqHeaderGetter.keys(undefined)).toEqual([]);
    expect(rmqHeaderGetter.keys(null)).toEqual([]);
  });
});

describe('rmqHeaderSetter with the W3C propagator', () => {
  beforeAll(() => propagation.setGlobalPropagator(new W3CTraceContextPropagator()));
  afterAll(() => propagation.disable());

  it('round-trips a span context through AMQP headers, keeping the other headers', () => {
    const spanContext = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: TraceFlags.SAMPLED };
    const headers: RmqHeaders = { 'x-app': 'orders' };
    propagation.inject(trace.setSpanContext(ROOT_CONTEXT, spanContext), headers, rmqHeaderSetter);
    expect(headers).toEqual({ 'x-app': 'orders', traceparent: TRACEPARENT });
    const extracted = trace.getSpanContext(propagation.extract(ROOT_CONTEXT, headers, rmqHeaderGetter));
    expect(extracted).toEqual({ ...spanContext, isRemote: true });
  });
});

describe('RabbitMQ destinations and server attributes', () => {
  it('names publish destinations {exchange}:{routing key}, amq.default when both are empty', () => {
    expect(publishDestination('', 'orders')).toBe('orders');
    expect(publishDestination('shop', 'orders.created')).toBe('shop:orders.created');
    expect(publishDestination('shop', '')).toBe('shop');
    expect(publishDestination('', '')).toBe('amq.default');
  });

  it('names delivery destinations {exchange}:{routing key}:{queue}, collapsing routing key == queue', () => {
    expect(consumeDestination('', 'orders', 'orders')).toBe('orders');
    expect(consumeDestination('shop', 'orders.created', 'orders')).toBe('shop:orders.created:orders');
    expect(consumeDestination('shop', 'orders', 'orders')).toBe('shop:orders');
    expect(consumeDestination('', 'other', 'orders')).toBe('other:orders');
  });

  it('tells wildcard binding keys from plain ones', () => {
    expect(['orders.*', 'audit.#', '#', 'a.*.c'].map(isTopicWildcard)).toEqual([true, true, true, true]);
    expect(['orders', 'orders.created', 'a*b', 'a.#b', ''].map(isTopicWildcard)).toEqual([false, false, false, false, false]);
  });

  it('flags reply and server-named queues temporary / anonymous, and leaves named work queues alone', () => {
    expect(queueFlags('amq.rabbitmq.reply-to')).toEqual({ temporary: true, anonymous: true });
    expect(queueFlags('amq.rabbitmq.reply-to.g1h2AA5yZXBseUAyMjg4OTk1Ng==')).toEqual({ temporary: true, anonymous: true });
    expect(queueFlags('amq.gen-JzTY20BRgKO-HjmUJj0wLg')).toEqual({ anonymous: true });
    expect(queueFlags('')).toEqual({ anonymous: true });
    expect(queueFlags('amq.gen-x', true)).toEqual({ anonymous: true, temporary: true });
    expect(queueFlags('broadcast-1', true)).toEqual({ temporary: true });
    expect(queueFlags('orders')).toEqual({});
    expect(queueFlags('orders', false)).toEqual({});
  });

  it('reads server.address and server.port from the first URL, without credentials', () => {
    expect(serverAttributes(['amqp://guest:secret@10.0.0.5:5673/vhost'])).toEqual({ 'server.address': '10.0.0.5', 'server.port': 5673 });
    expect(serverAttributes(['amqps://broker.example'])).toEqual({ 'server.address': 'broker.example', 'server.port': 5671 });
    expect(serverAttributes(['amqp://[::1]'])).toEqual({ 'server.address': '::1', 'server.port': 5672 });
    expect(serverAttributes([{ hostname: 'rabbit', port: 5680 }])).toEqual({ 'server.address': 'rabbit', 'server.port': 5680 });
    expect(serverAttributes([{ protocol: 'amqps' }])).toEqual({ 'server.address': 'localhost', 'server.port': 5671 });
    expect(serverAttributes(undefined)).toEqual({ 'server.address': 'localhost', 'server.port': 5672 });
    expect(serverAttributes(['not a url'])).toEqual({});
  });
});
