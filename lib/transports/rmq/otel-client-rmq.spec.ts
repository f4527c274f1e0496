import 'reflect-metadata';
import { EventEmitter } from 'node:events';
import { Logger } from '@nestjs/common';
import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SEND_CANCELLED, SEND_CONNECTION_LOST } from '../shared/producer-tracer.js';
import { OtelClientRMQ, type OtelClientRmqOptions } from './otel-client-rmq.js';

const exporter = new InMemorySpanExporter();

/**
 * A client as Nest's `connect()` leaves it, without a broker: a channel that accepts every
 * message, the reply emitter, and `manager` (the connection manager) given to Nest's seam for its
 * disconnect listener. test/broker-faults.e2e-spec.ts drops real connections.
 */
function connectedClient(options: Partial<OtelClientRmqOptions> = {}) {
  const client = new OtelClientRMQ({ urls: ['amqp://rabbit.local:5672'], queue: 'orders', ...options });
  const manager = new EventEmitter();
  const published: unknown[] = [];
  Object.assign(client, {
    connect: async () => undefined,
    responseEmitter: new EventEmitter(),
    channel: { sendToQueue: async (_queue: string, content: Buffer) => published.push(content) },
  });
  client.registerDisconnectListener(manager as never);
  return { client, manager, published };
}

const producers = () => exporter.getFinishedSpans().filter((span) => span.kind === SpanKind.PRODUCER);

describe('OtelClientRMQ: a connection that drops under requests waiting for their replies (without a broker)', () => {
  beforeAll(() => {
    // Nest logs the drop; that is its behaviour, not under test here.
    Logger.overrideLogger(false);
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    trace.setGlobalTracerProvider(new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] }));
  });
  afterAll(() => {
    trace.disable();
    context.disable();
  });
  beforeEach(() => exporter.reset());

  it(`direct reply-to (Nest's default): the PRODUCER spans end at the drop, ERROR ${SEND_CONNECTION_LOST}, once; the callers still wait`, async () => {
    const { client, manager, published } = connectedClient();
    const outcomes: unknown[] = [];
    const subscriptions = [1, 2].map((n) => client.send('orders.get', { n }).subscribe({ next: (v) => outcomes.push(v), error: (e) => outcomes.push(e) }));
    await new Promise((resolve) => setImmediate(resolve));
    expect(published).toHaveLength(2);
    expect(producers()).toEqual([]);

    manager.emit('disconnect', { err: new Error('CONNECTION_FORCED') });
    expect(producers()).toHaveLength(2);
    for (const span of producers()) {
      expect(span.status.code).toBe(SpanStatusCode.ERROR);
      expect(span.attributes['error.type']).toBe(SEND_CONNECTION_LOST);
    }
    // Nest's behaviour is unchanged: the requests stay pending until the callers give up.
    expect(outcomes).toEqual([]);
    subscriptions.forEach((subscription) => subscription.unsubscribe());
    manager.emit('disconnect', { err: new Error('again') });
    expect(producers().map((span) => span.attributes['error.type'])).toEqual([SEND_CONNECTION_LOST, SEND_CONNECTION_LOST]);
  });

  it('a later drop ends only the requests sent since, and adds no listener', async () => {
    const { client, manager } = connectedClient();
    const listeners = manager.listenerCount('disconnect');
    const first = client.send('orders.get', { n: 1 }).subscribe();
    manager.emit('disconnect', {});
    const second = client.send('orders.get', { n: 2 }).subscribe();
    await new Promise((resolve) => setImmediate(resolve));
    expect(producers()).toHaveLength(1);
    manager.emit('disconnect', {});
    expect(producers()).toHaveLength(2);
    expect(manager.listenerCount('disconnect')).toBe(listeners);
    first.unsubscribe();
    second.unsubscribe();
  });

  it('a reply queue of the application: the span waits (its reply may still come after the reconnect)', async () => {
    const { client, manager } = connectedClient({ replyQueue: 'orders.replies' });
    const subscription = client.send('orders.get', { n: 1 }).subscribe();
    await new Promise((resolve) => setImmediate(resolve));
    manager.emit('disconnect', {});
    expect(producers()).toEqual([]);
    subscription.unsubscribe();
    expect(producers().map((span) => span.attributes['error.type'])).toEqual([SEND_CANCELLED]);
  });
});
