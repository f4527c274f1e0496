import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { KafkaRetriableException } from '@nestjs/microservices';
import { context, propagation, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import { TracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace';
import { of, throwError } from 'rxjs';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { NEST_MAJOR } from '../../../test/support/nest-version.js';
import { OtelServerKafka } from './otel-server-kafka.js';

const exporter = new InMemorySpanExporter();
const PRODUCER = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7' };
const TRACEPARENT = `00-${PRODUCER.traceId}-${PRODUCER.spanId}-01`;

type Payload = Parameters<OtelServerKafka['handleMessage']>[0];

function payload(topic: string, headers: Record<string, unknown>, offset = '5'): Payload {
  return {
    topic,
    partition: 1,
    message: {
      key: Buffer.from('order-1'),
      value: Buffer.from(JSON.stringify({ id: 1 })),
      headers,
      offset,
      timestamp: '0',
      attributes: 0,
      size: 0,
    },
    heartbeat: async () => undefined,
    pause: () => () => undefined,
  } as unknown as Payload;
}

/** A server wired like `listen()` would, with a producer that records the replies it is given. */
function server(options: ConstructorParameters<typeof OtelServerKafka>[0] = {}, publishError?: Error) {
  const instance = new OtelServerKafka({ client: { brokers: ['kafka.local:9093'] }, consumer: { groupId: 'unit' }, ...options });
  const replies: Array<{ topic: string; messages: Array<{ headers: Record<string, unknown> }> }> = [];
  const send = async (record: (typeof replies)[number]) => {
    await new Promise((resolve) => setTimeout(resolve, 5));
    if (publishError) {
      throw publishError;
    }
    replies.push(record);
  };
  Object.assign(instance, { producer: { send } });
  return { instance, replies };
}

const REQUEST_HEADERS = {
  traceparent: TRACEPARENT,
  baggage: 'tenant.id=acme',
  kafka_correlationId: Buffer.from('c-1'),
  kafka_replyTopic: Buffer.from('orders.get.reply'),
  kafka_replyPartition: Buffer.from('0'),
};

describe('OtelServerKafka (without a broker)', () => {
  beforeAll(() => {
    // Nest logs a reply it could not publish; that is its behaviour, not under test here.
    Logger.overrideLogger(false);
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    propagation.setGlobalPropagator(
      new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }),
    );
    trace.setGlobalTracerProvider(new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] }));
  });
  afterAll(() => {
    trace.disable();
    propagation.disable();
    context.disable();
  });
  beforeEach(() => exporter.reset());

  it('an event: CONSUMER span linked to the producer, with Kafka attributes, ended once; user hooks run inside it', async () => {
    const { instance } = server();
    const seen: Array<string | undefined> = [];
    const ends: unknown[] = [];
    instance.setOnProcessingStartHook((_t, _ctx, done) => {
      seen.push(trace.getActiveSpan()?.spanContext().spanId);
      return done();
    });
    instance.setOnProcessingEndHook((_t, ctx) => ends.push(ctx));
    instance.addHandler('orders.created', async () => 'done', true);

    await instance.handleMessage(payload('orders.created', { traceparent: Buffer.from(TRACEPARENT) }));

    const [span, ...others] = exporter.getFinishedSpans();
    expect(others).toEqual([]);
    expect(span!.name).toBe('process orders.created');
    expect(span!.kind).toBe(SpanKind.CONSUMER);
    expect(span!.parentSpanContext).toBeUndefined();
    expect(span!.links.map((link) => link.context.spanId)).toEqual([PRODUCER.spanId]);
    expect(span!.attributes).toMatchObject({
      'messaging.system': 'kafka',
      'messaging.destination.name': 'orders.created',
      'messaging.destination.partition.id': '1',
      'messaging.kafka.offset': 5,
      'messaging.kafka.message.key': 'order-1',
      'messaging.message.body.size': Buffer.byteLength(JSON.stringify({ id: 1 })),
      'messaging.consumer.group.name': 'unit-server',
      'server.address': 'kafka.local',
      'server.port': 9093,
      'nestjs.handler.type': 'event',
    });
    expect(seen).toEqual([span!.spanContext().spanId]);
    // The user's end hook runs when Nest calls it: Nest 12 does for every event, Nest 11 only after
    // a handler that returned an Observable (the next test simulates that on Nest 12).
    expect(ends).toHaveLength(NEST_MAJOR >= 12 ? 1 : 0);
  });

  it('Nest 11 behaviour (no end hook after a handler that returns a Promise): the span still ends, user end hook not invented', async () => {
    const { instance } = server();
    const ends: unknown[] = [];
    instance.setOnProcessingEndHook((_t, ctx) => ends.push(ctx));
    // Nest 11's ServerKafka#handleEvent never runs the end hook for a non-Observable result.
    Object.assign(instance, { createProcessingEndHookRunner: () => () => undefined });
    instance.addHandler('orders.created', async () => 'done', true);

    await instance.handleMessage(payload('orders.created', {}));

    expect(exporter.getFinishedSpans().map((span) => span.name)).toEqual(['process orders.created']);
    expect(ends).toEqual([]);
  });

  it('an event handler whose stream fails: ERROR span, the failure reaches kafkajs (which redelivers)', async () => {
    const { instance } = server();
    instance.addHandler('orders.created', async () => throwError(() => new TypeError('boom')), true);

    await expect(instance.handleMessage(payload('orders.created', {}))).rejects.toThrow('boom');
    const [span] = exporter.getFinishedSpans();
    expect(span!.status.code).toBe(SpanStatusCode.ERROR);
    expect(span!.attributes['error.type']).toBe('TypeError');
  });

  it('a request: CONSUMER span is the producer\'s child, ends once its reply is published, and the reply carries its context', async () => {
    const { instance, replies } = server();
    const ends: unknown[] = [];
    instance.setOnProcessingEndHook((_t, ctx) => ends.push(ctx));
    instance.addHandler('orders.get', async () => of({ ok: true }), false);

    await instance.handleMessage(payload('orders.get', REQUEST_HEADERS));
    // Nest 12 has run the end hook already; the span waits for the reply to be published.
    expect(exporter.getFinishedSpans()).toEqual([]);
    await vi.waitFor(() => expect(exporter.getFinishedSpans()).toHaveLength(1));

    const [span] = exporter.getFinishedSpans();
    expect(span!.parentSpanContext?.spanId).toBe(PRODUCER.spanId);
    expect(span!.status.code).toBe(SpanStatusCode.UNSET);
    expect(span!.attributes).toMatchObject({ 'messaging.message.conversation_id': 'c-1', 'nestjs.handler.type': 'message' });
    expect(replies).toHaveLength(1);
    expect(replies[0]!.topic).toBe('orders.get.reply');
    expect(replies[0]!.messages[0]!.headers).toMatchObject({
      traceparent: `00-${PRODUCER.traceId}-${span!.spanContext().spanId}-01`,
      baggage: 'tenant.id=acme',
      kafka_correlationId: Buffer.from('c-1'),
    });
    expect(ends).toHaveLength(1);
  });

  it('a reply that cannot be published fails the CONSUMER span; the publish error goes on to Nest unchanged', async () => {
    const { instance } = server({}, new Error('broker gone'));
    instance.addHandler('orders.get', async () => of({ ok: true }), false);
    // What Nest's Server#send gets back from the reply publisher. Nest 12 logs such a rejection;
    // Nest 11 does not catch it (an unhandled rejection, as without otel-nest), so the test
    // takes it here, on both, before Nest does.
    const rejections: unknown[] = [];
    const send = instance.send.bind(instance);
    instance.send = (stream$, respond) =>
      send(stream$, (packet) => Promise.resolve(respond(packet)).catch((err: unknown) => void rejections.push(err)));

    await instance.handleMessage(payload('orders.get', REQUEST_HEADERS));
    await vi.waitFor(() => expect(exporter.getFinishedSpans()).toHaveLength(1));
    const [span] = exporter.getFinishedSpans();
    expect(span!.status).toMatchObject({ code: SpanStatusCode.ERROR, message: 'broker gone' });
    await vi.waitFor(() => expect(rejections).toEqual([new Error('broker gone')]));
  });

  it('a request failing with KafkaRetriableException: ERROR span, no reply, kafkajs gets the error (and redelivers)', async () => {
    const { instance, replies } = server();
    const ends: unknown[] = [];
    instance.setOnProcessingEndHook((_t, ctx) => ends.push(ctx));
    instance.addHandler('orders.get', async () => throwError(() => new KafkaRetriableException('later')), false);

    await expect(instance.handleMessage(payload('orders.get', REQUEST_HEADERS))).rejects.toBeInstanceOf(KafkaRetriableException);
    const [span] = exporter.getFinishedSpans();
    expect(span!.status.code).toBe(SpanStatusCode.ERROR);
    expect(span!.attributes['error.type']).toBe('KafkaRetriableException');
    expect(replies).toEqual([]);
    // Nest 12 runs the end hook when processing rejects, Nest 11 does not; the span ends either way.
    expect(ends).toHaveLength(NEST_MAJOR >= 12 ? 1 : 0);
  });

  it('`otel` options are ours: Nest\'s server does not see them', () => {
    const { instance } = server({ otel: { eventConsume: 'parent' } });
    expect((instance as unknown as { options: Record<string, unknown> }).options).not.toHaveProperty('otel');
  });
});
