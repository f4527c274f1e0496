import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { Controller, Module, type INestMicroservice } from '@nestjs/common';
import { EventPattern, MessagePattern, Payload } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { SpanKind } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import amqp from 'amqplib';
import { lastValueFrom } from 'rxjs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { OtelTestingModule, findSpans, getSpan, spanRecorder } from '../lib/testing/index.js';
import { OtelClientNats, OtelServerNats } from '../lib/transports/nats/index.js';
import { OtelClientRMQ, OtelServerRMQ } from '../lib/transports/rmq/index.js';
import { connect, type Msg, type NatsConnection } from './support/nats-driver.js';

// The messaging attributes the README's table lists, checked on the real brokers: wildcard
// subscriptions as `messaging.destination.template` (and in the span name), topic exchanges,
// reply and exclusive/server-named destinations as temporary / anonymous. Kafka's tombstone is in
// kafka.e2e-spec.ts, next to its broker.

const RUN = `otel-nest-e2e.${randomUUID().slice(0, 8)}`;
const NATS = { servers: ['nats://127.0.0.1:4222'] };
const RMQ_URL = 'amqp://guest:guest@127.0.0.1:5672';

const destinationAttributes = (span: ReadableSpan) =>
  Object.fromEntries(Object.entries(span.attributes).filter(([key]) => key.startsWith('messaging.destination.')));

describe('NATS: wildcard handlers and reply inboxes', () => {
  const S = {
    probe: `${RUN}.probe.*.get`,
    audit: `${RUN}.audit.>`,
    exact: `${RUN}.exact.get`,
  };
  const seen: string[] = [];

  @Controller()
  class ProbeController {
    @MessagePattern(S.probe)
    probe(@Payload() data: { n: number }): number {
      return data.n;
    }

    @EventPattern<string>(S.audit)
    audit(@Payload() data: { n: number }): void {
      seen.push(`audit ${data.n}`);
    }

    @MessagePattern(S.exact)
    exact(): string {
      return 'exact';
    }
  }

  let service: INestMicroservice;
  let client: OtelClientNats;
  let raw: NatsConnection;

  beforeAll(async () => {
    @Module({ imports: [OtelTestingModule.forRoot({ serviceName: 'probes' })], controllers: [ProbeController] })
    class ProbeModule {}
    const server = new OtelServerNats(NATS);
    service = (await Test.createTestingModule({ imports: [ProbeModule] }).compile()).createNestMicroservice({ strategy: server });
    await service.listen();
    await server.unwrap<NatsConnection>().flush();
    client = new OtelClientNats(NATS);
    await client.connect();
    raw = await connect(NATS);
  });

  afterAll(async () => {
    await client?.close();
    await service?.close();
    await raw?.close();
  });

  beforeEach(() => spanRecorder.reset());

  it('a request to a wildcard handler: CONSUMER `process {pattern}`, the pattern as template, the subject as name', async () => {
    for (const n of [1, 2, 3]) {
      expect(await lastValueFrom(client.send(`${RUN}.probe.${n}.get`, { n }))).toBe(n);
    }
    const spans = await spanRecorder.waitForSpans((all) => findSpans(all, { kind: SpanKind.CONSUMER }).length >= 3);
    const consumers = findSpans(spans, { kind: SpanKind.CONSUMER });
    // One span name for every concrete subject: no cardinality from the subjects.
    expect(new Set(consumers.map((span) => span.name))).toEqual(new Set([`process ${S.probe}`]));
    expect(consumers.map(destinationAttributes).sort((a, b) => String(a['messaging.destination.name']).localeCompare(String(b['messaging.destination.name'])))).toEqual(
      [1, 2, 3].map((n) => ({ 'messaging.destination.name': `${RUN}.probe.${n}.get`, 'messaging.destination.template': S.probe })),
    );
    for (const consumer of consumers) {
      expect(consumer.attributes['nestjs.pattern']).toBe(S.probe);
    }
    // The client sends to a subject and knows no pattern: its span is named after the subject.
    const producer = getSpan(spans, { kind: SpanKind.PRODUCER, name: `send ${RUN}.probe.2.get` });
    expect(destinationAttributes(producer)).toEqual({ 'messaging.destination.name': `${RUN}.probe.2.get` });
  });

  it('an event to a `>` handler, and a plain subject (no template)', async () => {
    await lastValueFrom(client.emit(`${RUN}.audit.eu.orders`, { n: 7 }));
    expect(await lastValueFrom(client.send(S.exact, {}))).toBe('exact');
    const spans = await spanRecorder.waitForSpans((all) => findSpans(all, { kind: SpanKind.CONSUMER }).length >= 2);
    const audit = getSpan(spans, { kind: SpanKind.CONSUMER, name: `process ${S.audit}` });
    expect(destinationAttributes(audit)).toEqual({
      'messaging.destination.name': `${RUN}.audit.eu.orders`,
      'messaging.destination.template': S.audit,
    });
    const exact = getSpan(spans, { kind: SpanKind.CONSUMER, name: `process ${S.exact}` });
    expect(destinationAttributes(exact)).toEqual({ 'messaging.destination.name': S.exact });
    expect(seen).toContain('audit 7');
  });

  it('a message to a reply inbox: temporary and anonymous, left out of the span name', async () => {
    // A non-Nest requester waits on its inbox; the traced client answers it there.
    const inbox = `_INBOX.${randomUUID().replace(/-/g, '')}`;
    const received = new Promise<Msg>((resolve) => raw.subscribe(inbox, { max: 1, callback: (_err, msg) => resolve(msg) }));
    await raw.flush();
    await lastValueFrom(client.emit(inbox, { answer: 42 }));
    expect((await received).json()).toMatchObject({ data: { answer: 42 } });
    const producer = getSpan(await spanRecorder.waitForSpans(1), { kind: SpanKind.PRODUCER });
    expect(producer.name).toBe('send');
    expect(destinationAttributes(producer)).toEqual({
      'messaging.destination.name': inbox,
      'messaging.destination.temporary': true,
      'messaging.destination.anonymous': true,
    });
  });
});

describe('RabbitMQ: a topic exchange with wildcard bindings, exclusive and server-named queues', () => {
  const EXCHANGE = `${RUN}.shop`;
  const Q = {
    /** A shared work queue (autoDelete, so the broker cleans up): neither temporary nor anonymous. */
    orders: `${RUN}.orders`,
    /** One instance's own queue: exclusive, so temporary. */
    news: `${RUN}.news`,
  };
  const seen: string[] = [];

  @Controller()
  class ShopController {
    @EventPattern('orders.*')
    order(@Payload() data: { id: string }): void {
      seen.push(`order ${data.id}`);
    }

    @EventPattern('orders.exact')
    exact(@Payload() data: { id: string }): void {
      seen.push(`exact ${data.id}`);
    }
  }

  @Controller()
  class NewsController {
    @EventPattern('news.#')
    news(@Payload() data: { id: string }): void {
      seen.push(`news ${data.id}`);
    }
  }

  @Controller()
  class AlertsController {
    @EventPattern('alerts.*')
    alert(@Payload() data: { id: string }): void {
      seen.push(`alert ${data.id}`);
    }
  }

  const topic = { urls: [RMQ_URL], exchange: EXCHANGE, exchangeType: 'topic' as const, wildcards: true };
  const services: INestMicroservice[] = [];
  let client: OtelClientRMQ;

  async function start(controller: new (...args: never[]) => unknown, options: Record<string, unknown>): Promise<void> {
    @Module({ imports: [OtelTestingModule.forRoot({ serviceName: 'shop' })], controllers: [controller] })
    class ShopModule {}
    const service = (await Test.createTestingModule({ imports: [ShopModule] }).compile()).createNestMicroservice({
      strategy: new OtelServerRMQ({ ...topic, ...options }),
    });
    await service.listen();
    services.push(service);
  }

  beforeAll(async () => {
    await start(ShopController, { queue: Q.orders, queueOptions: { durable: false, autoDelete: true } });
    await start(NewsController, { queue: Q.news, queueOptions: { durable: false, exclusive: true } });
    // A server-named queue (`amq.gen-…`): Nest asserts the empty name and consumes what the broker made.
    await start(AlertsController, { queue: '', queueOptions: { durable: false, exclusive: true } });
    // Nest 11.1.4's client asserts its queue in wildcard mode too: with the options the server used.
    client = new OtelClientRMQ({ ...topic, queue: Q.orders, queueOptions: { durable: false, autoDelete: true } });
    await client.connect();
  });

  afterAll(async () => {
    await client?.close();
    await Promise.all(services.map((service) => service.close()));
    // Nest declares the exchange durable; leave nothing behind on the shared broker.
    const connection = await amqp.connect(RMQ_URL);
    const channel = await connection.createChannel();
    await channel.deleteExchange(EXCHANGE);
    await connection.close();
  });

  beforeEach(() => {
    spanRecorder.reset();
    seen.length = 0;
  });

  const consumerOf = (spans: readonly ReadableSpan[], routingKey: string) =>
    getSpan(spans, { kind: SpanKind.CONSUMER, attributes: { 'messaging.rabbitmq.destination.routing_key': routingKey } });

  it('routing keys matched by `orders.*`: one span name from the template, the routing key in the destination name', async () => {
    for (const key of ['orders.created', 'orders.paid', 'orders.exact']) {
      await lastValueFrom(client.emit(key, { id: key }));
    }
    const spans = await spanRecorder.waitForSpans((all) => findSpans(all, { kind: SpanKind.CONSUMER }).length >= 3);
    for (const key of ['orders.created', 'orders.paid']) {
      const consumer = consumerOf(spans, key);
      expect(consumer.name).toBe(`process ${EXCHANGE}:orders.*:${Q.orders}`);
      expect(destinationAttributes(consumer)).toEqual({
        'messaging.destination.name': `${EXCHANGE}:${key}:${Q.orders}`,
        'messaging.destination.template': `${EXCHANGE}:orders.*:${Q.orders}`,
      });
      expect(consumer.attributes['nestjs.pattern']).toBe(key);
      const producer = getSpan(spans, { kind: SpanKind.PRODUCER, name: `send ${EXCHANGE}:${key}` });
      expect(destinationAttributes(producer)).toEqual({ 'messaging.destination.name': `${EXCHANGE}:${key}` });
      expect(producer.attributes['messaging.rabbitmq.destination.routing_key']).toBe(key);
    }
    // A handler registered under the exact routing key: no template, the destination is the name.
    const exact = consumerOf(spans, 'orders.exact');
    expect(exact.name).toBe(`process ${EXCHANGE}:orders.exact:${Q.orders}`);
    expect(destinationAttributes(exact)).toEqual({ 'messaging.destination.name': `${EXCHANGE}:orders.exact:${Q.orders}` });
    expect(seen.sort()).toEqual(['exact orders.exact', 'order orders.created', 'order orders.paid']);
  });

  it('an exclusive queue is temporary; a server-named one is anonymous too and stays out of the name', async () => {
    await lastValueFrom(client.emit('news.eu.today', { id: 'n-1' }));
    await lastValueFrom(client.emit('alerts.high', { id: 'a-1' }));
    const spans = await spanRecorder.waitForSpans((all) => findSpans(all, { kind: SpanKind.CONSUMER }).length >= 2);
    const news = consumerOf(spans, 'news.eu.today');
    expect(news.name).toBe(`process ${EXCHANGE}:news.#:${Q.news}`);
    expect(destinationAttributes(news)).toEqual({
      'messaging.destination.name': `${EXCHANGE}:news.eu.today:${Q.news}`,
      'messaging.destination.template': `${EXCHANGE}:news.#:${Q.news}`,
      'messaging.destination.temporary': true,
    });
    const alert = consumerOf(spans, 'alerts.high');
    expect(alert.name).toBe(`process ${EXCHANGE}:alerts.*`);
    expect(destinationAttributes(alert)).toEqual({
      'messaging.destination.name': `${EXCHANGE}:alerts.high`,
      'messaging.destination.template': `${EXCHANGE}:alerts.*`,
      'messaging.destination.temporary': true,
      'messaging.destination.anonymous': true,
    });
    expect(seen.sort()).toEqual(['alert a-1', 'news n-1']);
  });
});
