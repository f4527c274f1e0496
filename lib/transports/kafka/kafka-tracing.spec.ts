import { context, propagation, ROOT_CONTEXT, trace, type Span } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ackAttributes,
  brokerAttributes,
  keyAttribute,
  offsetAttribute,
  recordAttributes,
  sinkOfRecord,
  withProducerSink,
  withTraceHeaders,
  type KafkaRecordLike,
  type ProducerSpanSink,
} from './kafka-tracing.js';

const PARENT = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 1 };
const inParent = () => trace.setSpanContext(ROOT_CONTEXT, PARENT);

describe('withTraceHeaders', () => {
  beforeAll(() => {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  });
  afterAll(() => {
    propagation.disable();
    context.disable();
  });

  const nestLike = { serialize: (value: any) => ({ ...value, headers: value.headers ?? {} }) };

  it('writes the active context into a copy of the record\'s headers, keeping the user\'s', () => {
    const userHeaders = { 'x-user': 'kept', traceparent: 'stale' };
    const record = context.with(inParent(), () =>
      withTraceHeaders(nestLike).serialize({ value: 'v', headers: userHeaders }),
    ) as KafkaRecordLike;
    expect(record.headers).toEqual({ 'x-user': 'kept', traceparent: `00-${PARENT.traceId}-${PARENT.spanId}-01` });
    expect(userHeaders).toEqual({ 'x-user': 'kept', traceparent: 'stale' });
  });

  it('handles serializers that return a Promise, with the context of the call', async () => {
    const serializer = withTraceHeaders({ serialize: async (value: any) => ({ value }) });
    const pending = context.with(inParent(), () => serializer.serialize('v')) as Promise<KafkaRecordLike>;
    expect((await pending).headers).toEqual({ traceparent: `00-${PARENT.traceId}-${PARENT.spanId}-01` });
  });

  it('passes non-records through and writes nothing without a context', () => {
    expect(withTraceHeaders({ serialize: () => 'raw' }).serialize('x')).toBe('raw');
    expect(withTraceHeaders({ serialize: () => null }).serialize('x')).toBeNull();
    expect(withTraceHeaders(nestLike).serialize({ value: 'v' })).toEqual({ value: 'v', headers: {} });
  });

  it('reports each record to the producer span of the context, for attributes and the acknowledgement', () => {
    const seen: KafkaRecordLike[] = [];
    const sink: ProducerSpanSink = { span: {} as Span, onRecord: (record) => seen.push(record), onAck: () => undefined };
    const record = context.with(withProducerSink(inParent(), sink), () => withTraceHeaders(nestLike).serialize({ key: 'k', value: 'v' }));
    expect(seen).toEqual([record]);
    expect(sinkOfRecord(record)).toBe(sink);
    expect(sinkOfRecord({})).toBeUndefined();
    expect(sinkOfRecord('x')).toBeUndefined();
  });
});

describe('Kafka attributes', () => {
  it('record key and body size', () => {
    expect(recordAttributes({ key: 'k', value: 'héllo' })).toEqual({
      'messaging.kafka.message.key': 'k',
      'messaging.message.body.size': 6,
    });
    expect(recordAttributes({ key: Buffer.from('k2'), value: Buffer.alloc(3) })).toEqual({
      'messaging.kafka.message.key': 'k2',
      'messaging.message.body.size': 3,
    });
    expect(recordAttributes({ key: null, value: null })).toEqual({ 'messaging.kafka.message.tombstone': true });
    expect(keyAttribute(7)).toBe('7');
    expect(keyAttribute({})).toBeUndefined();
  });

  it('partition and offset of a single-record acknowledgement only', () => {
    expect(ackAttributes([{ topicName: 't', partition: 2, baseOffset: '41' }])).toEqual({
      'messaging.destination.partition.id': '2',
      'messaging.kafka.offset': 41,
    });
    expect(ackAttributes([{ partition: 0, baseOffset: '-1' }])).toEqual({ 'messaging.destination.partition.id': '0' });
    expect(ackAttributes([{ partition: 0 }, { partition: 1 }])).toEqual({});
    expect(ackAttributes([])).toEqual({});
    expect(ackAttributes(undefined)).toEqual({});
    expect(offsetAttribute('9007199254740993')).toBeUndefined();
    expect(offsetAttribute('')).toBeUndefined();
    expect(offsetAttribute('12')).toBe(12);
  });

  it('server address and port of the first bootstrap broker', () => {
    expect(brokerAttributes(['kafka-1:9092', 'kafka-2:9092'])).toEqual({ 'server.address': 'kafka-1', 'server.port': 9092 });
    expect(brokerAttributes(['[::1]:19092'])).toEqual({ 'server.address': '::1', 'server.port': 19092 });
    expect(brokerAttributes(['::1'])).toEqual({ 'server.address': '::1' });
    expect(brokerAttributes(['kafka'])).toEqual({ 'server.address': 'kafka' });
    expect(brokerAttributes(async () => ['kafka:9092'])).toEqual({});
    expect(brokerAttributes([])).toEqual({});
  });
});

describe('recordAttributes', () => {
  it('flags a tombstone (null value) and nothing else', () => {
    expect(recordAttributes({ key: 'k-1', value: null })).toEqual({ 'messaging.kafka.message.key': 'k-1', 'messaging.kafka.message.tombstone': true });
    expect(recordAttributes({ key: 'k-1', value: undefined })['messaging.kafka.message.tombstone']).toBe(true);
    expect(recordAttributes({ key: 'k-1', value: '' })).toEqual({ 'messaging.kafka.message.key': 'k-1', 'messaging.message.body.size': 0 });
    expect(recordAttributes({ value: Buffer.from('{}') })).toEqual({ 'messaging.message.body.size': 2 });
    // Read without its value (a parsed record only): unknown, so not flagged.
    expect(recordAttributes({ key: 'k-1' })).toEqual({ 'messaging.kafka.message.key': 'k-1' });
  });
});
