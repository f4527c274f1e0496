import 'reflect-metadata';
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Controller, Module, type INestApplicationContext, type INestMicroservice } from '@nestjs/common';
import {
  ClientMqtt,
  ClientsModule,
  Ctx,
  EventPattern,
  MessagePattern,
  MqttContext,
  MqttRecordBuilder,
  Payload,
  RpcException,
  type ClientProxy,
} from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type SpanContext } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { firstValueFrom, lastValueFrom, timeout } from 'rxjs';
import mqtt, { type IPublishPacket, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Baggage, SEND_CANCELLED, TraceService, Traced } from '../lib/index.js';
import { OtelTestingModule, expectSpan, findSpans, getSpan, spanRecorder } from '../lib/testing/index.js';
import { OtelClientMqtt, OtelServerMqtt, otelMqtt } from '../lib/transports/mqtt/index.js';
import { SEND_CLIENT_CLOSED } from '../lib/transports/shared/producer-tracer.js';
import { NEST_MAJOR } from './support/nest-version.js';

const MQTT_URL = 'mqtt://127.0.0.1:1883';
// Unique topics: other runs on the same broker never see these messages.
const RUN = `otel-nest-e2e/${randomUUID().slice(0, 8)}`;
const T = {
  get: `${RUN}/orders/get`,
  echo: `${RUN}/orders/echo`,
  fail: `${RUN}/orders/fail`,
  slow: `${RUN}/orders/slow`,
  many: `${RUN}/orders/many`,
  created: `${RUN}/orders/created`,
  createdTraced: `${RUN}/orders/created-traced`,
  deviceFilter: `${RUN}/devices/+/temp`,
  auditFilter: `${RUN}/audit/#`,
  jobsShared: `$share/workers/${RUN}/jobs/+`,
  sink: `${RUN}/sink`,
  v4get: `${RUN}/v4/get`,
  v4created: `${RUN}/v4/created`,
};
const ORDERS_CLIENT = 'ORDERS_CLIENT';

interface HandlerView {
  traceId?: string;
  spanId?: string;
  tenant?: string;
  data?: unknown;
  userProperties?: unknown;
  topic?: string;
}

/** What each event handler saw, by handler. */
const seenEvents = new Map<string, HandlerView[]>();
function sawEvent(name: string, view: HandlerView): void {
  seenEvents.set(name, [...(seenEvents.get(name) ?? []), view]);
}

const OUT_OF_STOCK = { name: 'OutOfStockError', message: 'out of stock', sku: 'sku-9' };

@Controller()
class OrdersController {
  constructor(private readonly traces: TraceService) {}

  @MessagePattern(T.get)
  get(@Payload() data: { id: string }, @Baggage('tenant.id') tenant?: string): HandlerView & { id: string } {
    return { id: data.id, tenant, traceId: this.traces.getTraceId(), spanId: this.traces.getSpanId() };
  }

  @MessagePattern(T.echo)
  echo(@Payload() data: unknown, @Ctx() ctx: MqttContext): HandlerView {
    return {
      data,
      topic: ctx.getTopic(),
      userProperties: ctx.getPacket()?.properties?.userProperties ?? null,
      tenant: this.traces.getBaggage('tenant.id'),
      traceId: this.traces.getTraceId(),
      spanId: this.traces.getSpanId(),
    };
  }

  @MessagePattern(T.many)
  many(@Payload() data: { n: number }): { n: number; traceId?: string; spanId?: string } {
    return { n: data.n, traceId: this.traces.getTraceId(), spanId: this.traces.getSpanId() };
  }

  @MessagePattern(T.fail)
  fail(): never {
    throw new RpcException(OUT_OF_STOCK);
  }

  @MessagePattern(T.slow)
  async slow(): Promise<string> {
    await sleep(400);
    return 'late';
  }

  @MessagePattern(T.deviceFilter)
  device(@Ctx() ctx: MqttContext): HandlerView {
    return { topic: ctx.getTopic(), traceId: this.traces.getTraceId() };
  }

  @EventPattern(T.created)
  created(@Payload() data: unknown, @Baggage('tenant.id') tenant: unknown): void {
    sawEvent('created', { data, tenant: tenant as string | undefined, traceId: this.traces.getTraceId(), spanId: this.traces.getSpanId() });
  }

  @Traced({ consume: 'parent' })
  @EventPattern(T.createdTraced)
  createdTraced(@Payload() data: unknown): void {
    sawEvent('createdTraced', { data, traceId: this.traces.getTraceId() });
  }

  @EventPattern(T.auditFilter)
  audit(@Payload() _data: unknown, @Ctx() ctx: unknown): void {
    sawEvent('audit', { topic: (ctx as MqttContext).getTopic(), traceId: this.traces.getTraceId() });
  }

  @EventPattern(T.jobsShared)
  job(@Payload() _data: unknown, @Ctx() ctx: unknown): void {
    sawEvent('job', { topic: (ctx as MqttContext).getTopic(), traceId: this.traces.getTraceId() });
  }
}

/** The MQTT 3.1.1 service: no user properties on this connection. */
@Controller()
class V4Controller {
  constructor(private readonly traces: TraceService) {}

  @MessagePattern(T.v4get)
  get(@Payload() data: unknown, @Baggage('tenant.id') tenant?: string): HandlerView {
    return { data, tenant, traceId: this.traces.getTraceId(), spanId: this.traces.getSpanId() };
  }

  @EventPattern(T.v4created)
  created(@Payload() data: unknown): void {
    sawEvent('v4created', { data, traceId: this.traces.getTraceId() });
  }
}

const randomTraceId = (): string => randomBytes(16).toString('hex');
const randomSpanId = (): string => randomBytes(8).toString('hex');
const remoteParent = (): SpanContext => ({ traceId: randomTraceId(), spanId: randomSpanId(), traceFlags: 1, isRemote: true });
const inRemoteParent = (parent: SpanContext): Context => trace.setSpanContext(ROOT_CONTEXT, parent);
const withBaggage = (ctx: Context, entries: Record<string, string>): Context =>
  propagation.setBaggage(ctx, propagation.createBaggage(Object.fromEntries(Object.entries(entries).map(([k, value]) => [k, { value }]))));
/** The traceparent naming `span`, with its sampled and (Level 2) random flags. */
const traceparentOf = (span: ReadableSpan | SpanContext): string => {
  const { traceId, spanId, traceFlags } = 'spanContext' in span ? span.spanContext() : span;
  return `00-${traceId}-${spanId}-${(traceFlags & 0x03).toString(16).padStart(2, '0')}`;
};
const exceptionEvents = (span: ReadableSpan) => span.events.filter((event) => event.name === 'exception');

/** Waits for the one span matching, and returns all spans. */
async function waitForOne(name: string, kind: SpanKind): Promise<{ spans: ReadableSpan[]; span: ReadableSpan }> {
  const spans = await spanRecorder.waitForSpans((all) => getSpan(all, { name, kind }) !== undefined);
  return { spans, span: getSpan(spans, { name, kind }) };
}

/** Waits (bounded) until `ready()`; fails with `what` otherwise. */
async function until(ready: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ready()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await sleep(10);
  }
}

interface WireMessage {
  topic: string;
  payload: Buffer;
  packet: IPublishPacket;
}

/** A message's user properties, `{}` when it has none. */
const userPropertiesOf = (message: WireMessage): Record<string, string | string[]> =>
  (message.packet.properties?.userProperties as Record<string, string | string[]> | undefined) ?? {};
const jsonOf = <T = Record<string, unknown>>(message: WireMessage): T => JSON.parse(message.payload.toString('utf8')) as T;

/** Nest's wire format of a request, as a plain MQTT peer writes it. */
function nestRequest(pattern: string, data: unknown, id: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ pattern, data, id, ...extra });
}

/** A TCP port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('MQTT: OtelServerMqtt and OtelClientMqtt on the local Mosquitto', () => {
  let service: INestMicroservice;
  let v4Service: INestMicroservice;
  let gateway: INestApplicationContext;
  let client: ClientProxy;
  let v4Client: OtelClientMqtt;
  let raw: MqttClient;
  let raw4: MqttClient;
  const wire: WireMessage[] = [];

  /** Messages seen by the raw MQTT 5 sniffer (every topic under RUN) on `topic`. */
  const onWire = (topic: string, source = wire): WireMessage[] => source.filter((message) => message.topic === topic);

  /** Waits until the server's SUBSCRIBEs are done: the broker answers a later SUBSCRIBE on the same connection after them. */
  async function settled(server: OtelServerMqtt): Promise<void> {
    await server.unwrap<MqttClient>().subscribeAsync(`${RUN}/settle/${randomUUID()}`);
  }

  beforeAll(async () => {
    raw = await mqtt.connectAsync(MQTT_URL, { protocolVersion: 5 });
    raw.on('message', (topic, payload, packet) => wire.push({ topic, payload, packet }));
    await raw.subscribeAsync(`${RUN}/#`);

    @Module({
      imports: [OtelTestingModule.forRoot({ serviceName: 'orders' })],
      controllers: [OrdersController],
    })
    class OrdersModule {}
    const server = new OtelServerMqtt({ url: MQTT_URL, protocolVersion: 5 });
    service = (await Test.createTestingModule({ imports: [OrdersModule] }).compile()).createNestMicroservice({ strategy: server });
    await service.listen();
    await settled(server);

    @Module({ imports: [OtelTestingModule.forRoot({ serviceName: 'orders-v4' })], controllers: [V4Controller] })
    class V4Module {}
    // The short form.
    const v4Strategy = otelMqtt({ url: MQTT_URL, protocolVersion: 4 });
    expect(v4Strategy.strategy).toBeInstanceOf(OtelServerMqtt);
    v4Service = (await Test.createTestingModule({ imports: [V4Module] }).compile()).createNestMicroservice(v4Strategy);
    await v4Service.listen();
    await settled(v4Strategy.strategy as OtelServerMqtt);

    @Module({
      imports: [
        OtelTestingModule.forRoot({ serviceName: 'gateway' }),
        ClientsModule.register([
          {
            name: ORDERS_CLIENT,
            customClass: OtelClientMqtt,
            options: { url: MQTT_URL, protocolVersion: 5, userProperties: { 'x-origin': 'gateway' } },
          },
        ]),
      ],
    })
    class GatewayModule {}
    gateway = await (await Test.createTestingModule({ imports: [GatewayModule] }).compile()).createNestApplication().init();
    client = gateway.get<ClientProxy>(ORDERS_CLIENT);
    expect(client).toBeInstanceOf(OtelClientMqtt);
    await client.connect();

    v4Client = new OtelClientMqtt({ url: MQTT_URL, protocolVersion: 4 });
    await v4Client.connect();
    raw4 = await mqtt.connectAsync(MQTT_URL, { protocolVersion: 4 });
  });

  afterAll(async () => {
    await v4Client?.close();
    await gateway?.close();
    await v4Service?.close();
    await service?.close();
    await raw?.endAsync();
    await raw4?.endAsync();
  });

  beforeEach(() => {
    spanRecorder.reset();
    seenEvents.clear();
    wire.length = 0;
  });

  describe('request-reply (MQTT 5)', () => {
    it('PRODUCER send -> CONSUMER process is one trace, with attributes, baggage, and the context in user properties both ways', async () => {
      const parent = remoteParent();
      const reply = await context.with(withBaggage(inRemoteParent(parent), { 'tenant.id': 'acme' }), () =>
        firstValueFrom(client.send<HandlerView & { id: string }>(T.get, { id: 'o-42' })),
      );
      const spans = await spanRecorder.waitForSpans((all) => findSpans(all, { kind: SpanKind.CONSUMER }).length === 1);
      const producer = getSpan(spans, { name: `send ${T.get}`, kind: SpanKind.PRODUCER });
      const consumer = getSpan(spans, { name: `process ${T.get}`, kind: SpanKind.CONSUMER });
      expectSpan(producer, spans).toHaveParent(parent).toHaveStatus(SpanStatusCode.UNSET);
      expectSpan(consumer, spans).toHaveParent(producer).toHaveStatus(SpanStatusCode.UNSET);
      expect(reply).toEqual({ id: 'o-42', tenant: 'acme', traceId: parent.traceId, spanId: consumer.spanContext().spanId });

      // On the wire: Nest's JSON packet, untouched; the context in user properties, next to the client's own.
      await until(() => onWire(`${T.get}/reply`).length === 1, 'the reply on the wire');
      const [request] = onWire(T.get);
      const packet = jsonOf<{ pattern: string; data: unknown; id: string }>(request!);
      expect(Object.keys(packet).sort()).toEqual(['data', 'id', 'pattern']);
      expect(packet).toMatchObject({ pattern: T.get, data: { id: 'o-42' } });
      expect(userPropertiesOf(request!)).toEqual({
        'x-origin': 'gateway',
        traceparent: traceparentOf(producer),
        baggage: 'tenant.id=acme',
      });

      const attributes = {
        'messaging.system': 'mqtt',
        'messaging.destination.name': T.get,
        'messaging.message.id': packet.id,
        'messaging.message.conversation_id': packet.id,
        'messaging.message.body.size': request!.payload.length,
        'server.address': '127.0.0.1',
        'server.port': 1883,
        'nestjs.pattern': T.get,
        'nestjs.handler.type': 'message',
        'nestjs.mqtt.qos': 0,
        'nestjs.mqtt.retain': false,
      };
      expectSpan(producer, spans).toHaveAttributes({ ...attributes, 'messaging.operation.name': 'send', 'messaging.operation.type': 'send' });
      expectSpan(consumer, spans).toHaveAttributes({
        ...attributes,
        'messaging.operation.name': 'process',
        'messaging.operation.type': 'process',
        'nestjs.controller': 'OrdersController',
        'nestjs.handler': 'get',
      });
      expect(producer.attributes['messaging.client.id']).toMatch(/^mqttjs_/);
      expect(consumer.attributes['messaging.client.id']).toMatch(/^mqttjs_/);
      expect(consumer.attributes['messaging.client.id']).not.toBe(producer.attributes['messaging.client.id']);
      expectSpan(producer, spans).toNotHaveAttribute('messaging.destination.template');

      // The reply carries the CONSUMER span's context, and nothing of the request's.
      const [replyMessage] = onWire(`${T.get}/reply`);
      expect(jsonOf(replyMessage!)).toEqual({ id: packet.id, response: reply, isDisposed: true });
      expect(userPropertiesOf(replyMessage!)).toEqual({ traceparent: traceparentOf(consumer), baggage: 'tenant.id=acme' });
    });

    it("the application's user properties (MqttRecord, the userProperties option) reach the handler; a stale traceparent in them is replaced; the record's object is not written to", async () => {
      const stale = traceparentOf(remoteParent());
      const own = { 'x-request-kind': 'audit', Traceparent: stale, tags: ['a', 'b'] };
      const record = new MqttRecordBuilder({ n: 1 }).setProperties({ userProperties: own }).setQoS(1).build();
      const reply = await firstValueFrom(client.send<HandlerView>(T.echo, record));

      const spans = await spanRecorder.waitForSpans((all) => findSpans(all, { kind: SpanKind.CONSUMER }).length === 1);
      const producer = getSpan(spans, { kind: SpanKind.PRODUCER });
      const consumer = getSpan(spans, { kind: SpanKind.CONSUMER });
      expectSpan(producer, spans).toBeRoot().toHaveAttributes({ 'nestjs.mqtt.qos': 1 });
      expectSpan(consumer, spans).toHaveParent(producer);
      const expected = { 'x-origin': 'gateway', 'x-request-kind': 'audit', tags: ['a', 'b'], traceparent: traceparentOf(producer) };
      expect(reply.data).toEqual({ n: 1 });
      expect(reply.userProperties).toEqual(expected);
      expect(userPropertiesOf(onWire(T.echo)[0]!)).toEqual(expected);
      expect(own).toEqual({ 'x-request-kind': 'audit', Traceparent: stale, tags: ['a', 'b'] });
    });

    it('RpcException: the error reaches the caller; PRODUCER and CONSUMER are ERROR, recorded once each', async () => {
      const error = await firstValueFrom(client.send(T.fail, {})).catch((err: unknown) => err);
      expect(error).toMatchObject(OUT_OF_STOCK);
      const { spans, span: consumer } = await waitForOne(`process ${T.fail}`, SpanKind.CONSUMER);
      const producer = getSpan(spans, { name: `send ${T.fail}`, kind: SpanKind.PRODUCER });
      expectSpan(consumer, spans).toHaveParent(producer).toHaveStatus(SpanStatusCode.ERROR).toHaveAttributes({ 'error.type': 'RpcException' });
      expectSpan(producer, spans).toHaveStatus(SpanStatusCode.ERROR).toHaveAttributes({ 'error.type': 'OutOfStockError' });
      expect(exceptionEvents(consumer)).toHaveLength(1);
      expect(exceptionEvents(producer)).toHaveLength(1);
    });

    it('a caller timeout ends the PRODUCER span as cancelled; the CONSUMER ends with its handler', async () => {
      const error = await firstValueFrom(client.send(T.slow, {}).pipe(timeout(50))).catch((err: unknown) => err);
      expect((error as Error).name).toBe('TimeoutError');
      const { spans, span: consumer } = await waitForOne(`process ${T.slow}`, SpanKind.CONSUMER);
      const producer = getSpan(spans, { name: `send ${T.slow}`, kind: SpanKind.PRODUCER });
      expectSpan(producer, spans).toHaveStatus(SpanStatusCode.ERROR).toHaveAttributes({ 'error.type': SEND_CANCELLED });
      expectSpan(consumer, spans).toHaveParent(producer).toHaveStatus(SpanStatusCode.UNSET);
    });

    it('200 concurrent requests on a fresh topic: 200 distinct traces, each CONSUMER the child of its own PRODUCER', async () => {
      // A client of its own: its first requests on the topic are all published from the driver's
      // SUBACK callback (Nest subscribes to the reply topic first), away from the callers' contexts.
      const fresh = new OtelClientMqtt({ url: MQTT_URL, protocolVersion: 5 });
      try {
        const parents = Array.from({ length: 200 }, () => remoteParent());
        const replies = await Promise.all(
          parents.map((parent, n) => context.with(inRemoteParent(parent), () => firstValueFrom(fresh.send<{ n: number; traceId: string }>(T.many, { n })))),
        );
        expect(replies.map((reply) => reply.traceId)).toEqual(parents.map((parent) => parent.traceId));
        const spans = await spanRecorder.waitForSpans((all) => findSpans(all, { kind: SpanKind.CONSUMER, name: `process ${T.many}` }).length === 200);
        const producers = findSpans(spans, { kind: SpanKind.PRODUCER, name: `send ${T.many}` });
        expect(producers).toHaveLength(200);
        expect(new Set(producers.map((span) => span.spanContext().traceId)).size).toBe(200);
        for (const parent of parents) {
          const producer = producers.find((span) => span.spanContext().traceId === parent.traceId)!;
          expectSpan(producer, spans).toHaveParent(parent);
          const consumer = getSpan(spans, { kind: SpanKind.CONSUMER, traceId: parent.traceId });
          expectSpan(consumer, spans).toHaveParent(producer);
        }
      } finally {
        await fresh.close();
      }
    });
  });

  describe('events and wildcard filters', () => {
    it('emit -> @EventPattern: a new trace LINKED to the PRODUCER, baggage kept', async () => {
      const parent = remoteParent();
      await context.with(withBaggage(inRemoteParent(parent), { 'tenant.id': 'acme' }), () =>
        lastValueFrom(client.emit(T.created, { id: 'o-7' }), { defaultValue: undefined }),
      );
      const { spans, span: consumer } = await waitForOne(`process ${T.created}`, SpanKind.CONSUMER);
      const producer = getSpan(spans, { name: `send ${T.created}`, kind: SpanKind.PRODUCER });
      expectSpan(producer, spans)
        .toHaveParent(parent)
        .toHaveAttributes({ 'nestjs.handler.type': 'event', 'messaging.destination.name': T.created, 'nestjs.mqtt.qos': 0 })
        .toNotHaveAttribute('messaging.message.id')
        .toNotHaveAttribute('messaging.message.conversation_id');
      expectSpan(consumer, spans)
        .toBeRoot()
        .toLinkTo(producer)
        .toHaveAttributes({ 'nestjs.handler.type': 'event', 'nestjs.handler': 'created', 'messaging.system': 'mqtt' })
        .toNotHaveAttribute('messaging.message.id');
      expect(consumer.spanContext().traceId).not.toBe(parent.traceId);
      expect(seenEvents.get('created')).toEqual([
        { data: { id: 'o-7' }, tenant: 'acme', traceId: consumer.spanContext().traceId, spanId: consumer.spanContext().spanId },
      ]);
    });

    it('@Traced({ consume: "parent" }) makes the event CONSUMER a child of the PRODUCER', async () => {
      await lastValueFrom(client.emit(T.createdTraced, { id: 'o-8' }), { defaultValue: undefined });
      const { spans, span: consumer } = await waitForOne(`process ${T.createdTraced}`, SpanKind.CONSUMER);
      const producer = getSpan(spans, { name: `send ${T.createdTraced}`, kind: SpanKind.PRODUCER });
      expectSpan(consumer, spans).toHaveParent(producer);
      expect(consumer.links).toEqual([]);
    });

    it('a handler under a + filter: the span is named after the filter, the destination is the topic', async () => {
      const topic = `${RUN}/devices/d-7/temp`;
      const reply = await firstValueFrom(client.send<HandlerView>(topic, { c: 21 }));
      expect(reply.topic).toBe(topic);
      const { spans, span: consumer } = await waitForOne(`process ${T.deviceFilter}`, SpanKind.CONSUMER);
      const producer = getSpan(spans, { name: `send ${topic}`, kind: SpanKind.PRODUCER });
      expectSpan(consumer, spans).toHaveParent(producer).toHaveAttributes({
        'messaging.destination.name': topic,
        'messaging.destination.template': T.deviceFilter,
        'nestjs.pattern': T.deviceFilter,
      });
    });

    it('a handler under a # filter, and under a shared subscription ($share/{group}/...): template, and the group as consumer group', async () => {
      const auditTopic = `${RUN}/audit/eu/orders`;
      const jobTopic = `${RUN}/jobs/j-1`;
      await lastValueFrom(client.emit(auditTopic, { a: 1 }), { defaultValue: undefined });
      await lastValueFrom(client.emit(jobTopic, { j: 1 }), { defaultValue: undefined });
      const spans = await spanRecorder.waitForSpans((all) => findSpans(all, { kind: SpanKind.CONSUMER }).length === 2);
      expectSpan(getSpan(spans, { name: `process ${T.auditFilter}`, kind: SpanKind.CONSUMER }), spans)
        .toHaveAttributes({ 'messaging.destination.name': auditTopic, 'messaging.destination.template': T.auditFilter, 'nestjs.pattern': T.auditFilter })
        .toNotHaveAttribute('messaging.consumer.group.name');
      const jobFilter = `${RUN}/jobs/+`;
      expectSpan(getSpan(spans, { name: `process ${jobFilter}`, kind: SpanKind.CONSUMER }), spans).toHaveAttributes({
        'messaging.destination.name': jobTopic,
        'messaging.destination.template': jobFilter,
        'messaging.consumer.group.name': 'workers',
        'nestjs.pattern': T.jobsShared,
      });
    });
  });

  describe('interop with plain MQTT peers', () => {
    it('a plain MQTT 5 peer publishing Nest\'s JSON with a traceparent user property is continued, and gets the consumer\'s context back', async () => {
      const parent = remoteParent();
      const properties: Record<string, string> = {};
      propagation.inject(withBaggage(inRemoteParent(parent), { 'tenant.id': 'globex' }), properties);
      await raw.publishAsync(T.echo, nestRequest(T.echo, { from: 'plain' }, 'plain-1'), { properties: { userProperties: properties } });
      const { spans, span: consumer } = await waitForOne(`process ${T.echo}`, SpanKind.CONSUMER);
      expectSpan(consumer, spans)
        .toHaveParent(parent)
        .toHaveAttributes({ 'messaging.message.id': 'plain-1', 'messaging.message.conversation_id': 'plain-1', 'nestjs.handler': 'echo' });
      await until(() => onWire(`${T.echo}/reply`).length === 1, 'the reply');
      const [reply] = onWire(`${T.echo}/reply`);
      expect(jsonOf(reply!)).toMatchObject({
        id: 'plain-1',
        isDisposed: true,
        response: { data: { from: 'plain' }, tenant: 'globex', traceId: parent.traceId, spanId: consumer.spanContext().spanId },
      });
      // The plain peer reads the reply's context with the same propagator.
      const replyContext = propagation.extract(ROOT_CONTEXT, userPropertiesOf(reply!));
      expect(trace.getSpanContext(replyContext)).toMatchObject({ traceId: parent.traceId, spanId: consumer.spanContext().spanId });
    });

    it('a plain MQTT 5 subscriber gets our client\'s message with a valid traceparent user property naming the PRODUCER span', async () => {
      const parent = remoteParent();
      const record = new MqttRecordBuilder({ hello: 'sink' }).setProperties({ userProperties: { 'x-app': 'billing' } }).build();
      await context.with(inRemoteParent(parent), () => lastValueFrom(client.emit(T.sink, record), { defaultValue: undefined }));
      await until(() => onWire(T.sink).length === 1, 'the event on the wire');
      const { spans, span: producer } = await waitForOne(`send ${T.sink}`, SpanKind.PRODUCER);
      const [message] = onWire(T.sink);
      expect(jsonOf(message!)).toEqual({ pattern: T.sink, data: { hello: 'sink' } });
      const properties = userPropertiesOf(message!);
      expect(properties).toEqual({ 'x-origin': 'gateway', 'x-app': 'billing', traceparent: traceparentOf(producer) });
      expect(properties.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[0-3]$/);
      expect(trace.getSpanContext(propagation.extract(ROOT_CONTEXT, properties))?.traceId).toBe(parent.traceId);
      expectSpan(producer, spans).toHaveParent(parent).toHaveAttributes({ 'messaging.message.body.size': message!.payload.length });
    });
  });

  describe('hostile input from the network', () => {
    const hostile: Array<[string, Record<string, string | string[]>]> = [
      ['a repeated traceparent (an array)', { traceparent: [traceparentOf(remoteParent()), traceparentOf(remoteParent())] }],
      ['traceparent under two spellings', { traceparent: traceparentOf(remoteParent()), Traceparent: traceparentOf(remoteParent()) }],
      ['a 10 KB traceparent', { traceparent: `${traceparentOf(remoteParent())}${'0'.repeat(10_000)}` }],
      ['an invalid traceparent', { traceparent: '00-00000000000000000000000000000000-0000000000000000-01' }],
      ['a 10 KB tracestate and baggage with a garbage traceparent', { traceparent: 'garbage', tracestate: `a=${'b'.repeat(10_000)}`, baggage: `k=${'v'.repeat(10_000)}` }],
      ['non-ASCII values', { traceparent: `00-${'é'.repeat(32)}-${randomSpanId()}-01`, baggage: 'k=\u202ev' }],
      ['10 000 user properties', Object.fromEntries(Array.from({ length: 10_000 }, (_, n) => [`p${n}`, 'x']))],
    ];

    it.each(hostile)('%s: no crash, a fresh root, nothing echoed into the reply', async (_what, userProperties) => {
      const id = `hostile-${randomUUID()}`;
      await raw.publishAsync(T.echo, nestRequest(T.echo, { id }, id), { properties: { userProperties } });
      const { spans, span: consumer } = await waitForOne(`process ${T.echo}`, SpanKind.CONSUMER);
      expectSpan(consumer, spans).toBeRoot();
      expect(consumer.links).toEqual([]);
      await until(() => onWire(`${T.echo}/reply`).length === 1, 'the reply');
      const [reply] = onWire(`${T.echo}/reply`);
      expect(jsonOf<{ id: string }>(reply!).id).toBe(id);
      expect(userPropertiesOf(reply!)).toEqual({ traceparent: traceparentOf(consumer) });
    });

    it('a message that is not JSON on our client\'s reply topic: ignored, no unhandled rejection, the client still works', async () => {
      // The client listens on `<topic>/reply` once it has sent on the topic.
      await firstValueFrom(client.send(T.get, { id: 'before' }));
      await raw.publishAsync(`${T.get}/reply`, Buffer.from('not json {'));
      await raw.publishAsync(`${T.get}/reply`, randomBytes(64));
      await expect(firstValueFrom(client.send(T.get, { id: 'after-garbage' }))).resolves.toMatchObject({ id: 'after-garbage' });
    });

    it('control characters in user properties never reach us: the broker refuses them and drops the sender', async () => {
      const peer = await mqtt.connectAsync(MQTT_URL, { protocolVersion: 5, reconnectPeriod: 0 });
      const closed = new Promise<void>((resolve) => peer.once('close', () => resolve()));
      peer.publish(T.echo, nestRequest(T.echo, {}, 'ctl-1'), { qos: 1, properties: { userProperties: { traceparent: `${traceparentOf(remoteParent())}\u0001` } } });
      await closed;
      peer.end(true);
      // The same bytes through the JSON envelope, which the broker does not look into: a fresh root.
      await raw.publishAsync(T.echo, nestRequest(T.echo, {}, 'ctl-2', { metadata: { traceparent: `${traceparentOf(remoteParent())}\u0001`, baggage: 'k=v\r\nx: y' } }));
      const { spans, span: consumer } = await waitForOne(`process ${T.echo}`, SpanKind.CONSUMER);
      expectSpan(consumer, spans).toBeRoot().toHaveAttributes({ 'messaging.message.id': 'ctl-2' });
      await until(() => onWire(`${T.echo}/reply`).length === 1, 'the reply');
      expect(userPropertiesOf(onWire(`${T.echo}/reply`)[0]!)).toEqual({ traceparent: traceparentOf(consumer) });
    });

    it.each([
      ['a binary payload', randomBytes(512)],
      ['JSON of the wrong shape', Buffer.from(JSON.stringify({ pattern: 7, data: null, metadata: ['traceparent'] }))],
      ['metadata of the wrong types', Buffer.from(JSON.stringify({ pattern: T.auditFilter, data: 1, metadata: { traceparent: 7, tracestate: null, baggage: {} } }))],
    ])('%s on an event topic: handled, no crash, a fresh root', async (_what, payload) => {
      await raw.publishAsync(`${RUN}/audit/hostile`, payload, { properties: { userProperties: { traceparent: ['x', 'y'] } } });
      const { spans, span: consumer } = await waitForOne(`process ${T.auditFilter}`, SpanKind.CONSUMER);
      expectSpan(consumer, spans).toBeRoot().toHaveAttributes({ 'messaging.message.body.size': payload.length });
      expect(consumer.links).toEqual([]);
      // The service still answers.
      await expect(firstValueFrom(client.send(T.get, { id: 'after' }))).resolves.toMatchObject({ id: 'after' });
    });
  });

  describe('MQTT 3.1.1 (no user properties): the context travels in the metadata of Nest\'s JSON packet', () => {
    it('request-reply is one trace; on the wire `metadata: { traceparent, baggage }`, no user properties; the reply is Nest\'s, unchanged', async () => {
      const sniffed: WireMessage[] = [];
      const listener = (topic: string, payload: Buffer, packet: IPublishPacket) => sniffed.push({ topic, payload, packet });
      raw4.on('message', listener);
      await raw4.subscribeAsync(`${T.v4get}/#`);
      await raw4.subscribeAsync(T.v4get);
      try {
        const parent = remoteParent();
        const reply = await context.with(withBaggage(inRemoteParent(parent), { 'tenant.id': 'acme' }), () =>
          firstValueFrom(v4Client.send<HandlerView>(T.v4get, { id: 'v4' })),
        );
        const { spans, span: consumer } = await waitForOne(`process ${T.v4get}`, SpanKind.CONSUMER);
        const producer = getSpan(spans, { name: `send ${T.v4get}`, kind: SpanKind.PRODUCER });
        expectSpan(producer, spans).toHaveParent(parent);
        expectSpan(consumer, spans).toHaveParent(producer);
        expect(reply).toEqual({ data: { id: 'v4' }, tenant: 'acme', traceId: parent.traceId, spanId: consumer.spanContext().spanId });

        await until(() => onWire(`${T.v4get}/reply`, sniffed).length === 1, 'the reply');
        const [request] = onWire(T.v4get, sniffed);
        const packet = jsonOf<{ id: string }>(request!);
        expect(packet).toEqual({
          pattern: T.v4get,
          data: { id: 'v4' },
          id: packet.id,
          metadata: { traceparent: traceparentOf(producer), baggage: 'tenant.id=acme' },
        });
        expect(request!.packet.properties).toBeUndefined();
        expectSpan(producer, spans).toHaveAttributes({ 'messaging.message.body.size': request!.payload.length, 'messaging.message.id': packet.id });
        const [replyMessage] = onWire(`${T.v4get}/reply`, sniffed);
        expect(Object.keys(jsonOf(replyMessage!)).sort()).toEqual(['id', 'isDisposed', 'response']);
      } finally {
        raw4.off('message', listener);
      }
    });

    it('events are linked; a plain 3.1.1 peer putting traceparent in the packet metadata is continued', async () => {
      const producerParent = remoteParent();
      await context.with(inRemoteParent(producerParent), () => lastValueFrom(v4Client.emit(T.v4created, { n: 1 }), { defaultValue: undefined }));
      const first = await waitForOne(`process ${T.v4created}`, SpanKind.CONSUMER);
      const producer = getSpan(first.spans, { name: `send ${T.v4created}`, kind: SpanKind.PRODUCER });
      expectSpan(first.span, first.spans).toBeRoot().toLinkTo(producer);
      expectSpan(producer, first.spans).toHaveParent(producerParent);

      spanRecorder.reset();
      const parent = remoteParent();
      await raw4.publishAsync(T.v4get, nestRequest(T.v4get, { from: 'plain' }, 'plain-v4', { metadata: { traceparent: traceparentOf(parent) } }));
      const { spans, span: consumer } = await waitForOne(`process ${T.v4get}`, SpanKind.CONSUMER);
      expectSpan(consumer, spans).toHaveParent(parent).toHaveAttributes({ 'messaging.message.id': 'plain-v4' });
    });

    it('a 3.1.1 client to an MQTT 5 server: continued through the metadata; an MQTT 5 client to a 3.1.1 server: the broker drops the user properties, a fresh root', async () => {
      const parent = remoteParent();
      await context.with(inRemoteParent(parent), () => firstValueFrom(v4Client.send(T.get, { id: 'cross' })));
      const toV5 = await waitForOne(`process ${T.get}`, SpanKind.CONSUMER);
      expectSpan(toV5.span, toV5.spans).toHaveParent(getSpan(toV5.spans, { name: `send ${T.get}`, kind: SpanKind.PRODUCER }));
      expect(toV5.span.spanContext().traceId).toBe(parent.traceId);

      spanRecorder.reset();
      await context.with(inRemoteParent(remoteParent()), () => firstValueFrom(client.send(T.v4get, { id: 'cross' })));
      const toV4 = await waitForOne(`process ${T.v4get}`, SpanKind.CONSUMER);
      expectSpan(toV4.span, toV4.spans).toBeRoot();
    });
  });

  describe('broker failures', () => {
    it('a client closed with a request in flight: the caller sees what it sees with ClientMqtt, and the PRODUCER ends ERROR', async () => {
      /** What the caller of a request gets when its client is closed once the request is on the wire. */
      const closedUnder = async (closing: ClientMqtt): Promise<unknown> => {
        await closing.connect();
        const before = onWire(T.slow).length;
        const reply = firstValueFrom(closing.send(T.slow, {})).catch((err: unknown) => err);
        await until(() => onWire(T.slow).length > before, 'the request on the wire');
        await closing.close();
        return Promise.race([reply, sleep(200, 'still pending')]);
      };
      const plain = await closedUnder(new ClientMqtt({ url: MQTT_URL, protocolVersion: 5 }));
      const traced = await closedUnder(new OtelClientMqtt({ url: MQTT_URL, protocolVersion: 5 }));
      const producer = getSpan(spanRecorder.getFinishedSpans(), { name: `send ${T.slow}`, kind: SpanKind.PRODUCER });
      if (NEST_MAJOR >= 12) {
        // Nest 12 fails the requests still waiting when it closes.
        expect(plain).toEqual(new Error('Connection closed'));
        expectSpan(producer).toHaveStatus(SpanStatusCode.ERROR, 'Connection closed').toHaveAttributes({ 'error.type': 'Error' });
      } else {
        // Nest 11 leaves them pending for good; the span ends anyway, when the client closes.
        expect(plain).toBe('still pending');
        expectSpan(producer).toHaveStatus(SpanStatusCode.ERROR).toHaveAttributes({ 'error.type': SEND_CLIENT_CLOSED });
      }
      expect(traced).toEqual(plain);
      // The handlers finish anyway; wait for them so that their spans do not land in the next test.
      await spanRecorder.waitForSpans((all) => findSpans(all, { name: `process ${T.slow}`, kind: SpanKind.CONSUMER }).length === 2);
    });

    it('broker unreachable: send() and emit() fail with the driver\'s error, their PRODUCER spans are ERROR, nothing crashes', async () => {
      const port = await closedPort();
      const down = new OtelClientMqtt({ url: `mqtt://127.0.0.1:${port}`, protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 2000 });
      try {
        const sendError = await firstValueFrom(down.send('orders/get', { id: 1 })).catch((err: unknown) => err);
        expect((sendError as NodeJS.ErrnoException).code).toBe('ECONNREFUSED');
        const emitError = await lastValueFrom(down.emit('orders/created', { id: 1 }), { defaultValue: undefined }).catch((err: unknown) => err);
        expect((emitError as NodeJS.ErrnoException).code).toBe('ECONNREFUSED');
        const spans = await spanRecorder.waitForSpans((all) => findSpans(all, { kind: SpanKind.PRODUCER }).length === 2);
        for (const name of ['send orders/get', 'send orders/created']) {
          expectSpan(getSpan(spans, { name, kind: SpanKind.PRODUCER }), spans)
            .toHaveStatus(SpanStatusCode.ERROR)
            .toHaveAttributes({ 'server.port': port, 'error.type': 'Error' });
        }
      } finally {
        await down.close();
      }
      // This process and its other clients are fine.
      await expect(firstValueFrom(client.send(T.get, { id: 'still-up' }))).resolves.toMatchObject({ id: 'still-up' });
    });
  });
});
