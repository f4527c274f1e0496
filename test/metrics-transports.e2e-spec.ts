import 'reflect-metadata';
import { Controller, Module, type INestApplication, type Type } from '@nestjs/common';
import { ClientsModule, EventPattern, GrpcMethod, MessagePattern, Payload, RpcException, type ClientGrpc, type ClientProxy } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { randomUUID } from 'node:crypto';
import { firstValueFrom, type Observable } from 'rxjs';
import { logLevel } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OtelModule } from '../lib/index.js';
import { OtelClientGrpc, otelGrpc } from '../lib/transports/grpc/index.js';
import { OtelClientKafka, OtelServerKafka } from '../lib/transports/kafka/index.js';
import { OtelClientNats, OtelServerNats } from '../lib/transports/nats/index.js';
import { OtelClientRMQ, OtelServerRMQ } from '../lib/transports/rmq/index.js';
import { OtelClientTCP, OtelServerTCP } from '../lib/transports/tcp/index.js';
import { OtelClientRedis, OtelServerRedis } from '../lib/transports/redis/index.js';
import { OtelClientMqtt, OtelServerMqtt } from '../lib/transports/mqtt/index.js';
import { freePort, M, ORDER_SERVICE, ORDERS_PACKAGE, ORDERS_PROTO } from './support/grpc-fixtures.js';
import { startKafkaBroker, type KafkaBroker } from './support/kafka-broker.js';
import { latestMetricPoints, type ReceivedMetricPoint } from './support/otlp-metrics.js';
import { startOtlpReceiver, type OtlpReceiver } from './support/otlp-receiver.js';

const RUN = randomUUID().slice(0, 8);
const NATS = { servers: ['nats://127.0.0.1:4222'] };
const RMQ_QUEUE = `metrics-${RUN}`;
const RMQ = { urls: ['amqp://guest:guest@127.0.0.1:5672'], queue: RMQ_QUEUE, queueOptions: { durable: false, autoDelete: true } };
const KAFKA_TOPIC = `metrics.audit.${RUN}`;
const TCP_PATTERN = 'metrics.tcp.sum';
const REDIS_CHANNEL = `metrics.redis.${RUN}`;
const MQTT_TOPIC = `metrics/mqtt/${RUN}`;
const REDIS = { host: '127.0.0.1', port: 6379 };
const MQTT_URL = 'mqtt://127.0.0.1:1883';
const FAST_CONSUMER = { maxWaitTimeInMs: 50, heartbeatInterval: 500 };

let kafkaSeen = 0;

@Controller()
class HandlersController {
  @MessagePattern('metrics.price')
  price(@Payload() data: { sku: string }): { sku: string; price: number } {
    return { sku: data.sku, price: 42 };
  }

  @MessagePattern('metrics.refuse')
  refuse(): never {
    throw new RpcException({ name: 'OutOfStock', message: 'no stock' });
  }

  @EventPattern<string>(RMQ_QUEUE)
  shipped(): void {}

  @MessagePattern(TCP_PATTERN)
  sum(@Payload() data: number[]): number {
    return data.reduce((a, b) => a + b, 0);
  }

  @MessagePattern(REDIS_CHANNEL)
  redisEcho(@Payload() data: unknown): unknown {
    return data;
  }

  @MessagePattern(MQTT_TOPIC)
  mqttEcho(@Payload() data: unknown): unknown {
    return data;
  }

  @EventPattern<string>(KAFKA_TOPIC)
  audited(): void {
    kafkaSeen++;
  }

  @GrpcMethod(ORDER_SERVICE, 'GetOrder')
  getOrder(request: { id: string; failCode?: number }): { id: string } {
    if (request.failCode) {
      throw new RpcException({ code: request.failCode, message: 'not found' });
    }
    return { id: request.id };
  }
}

interface OrderServiceClient {
  getOrder(request: { id: string; failCode?: number }): Observable<{ id: string }>;
}

describe('RED metrics of gRPC, NATS, RabbitMQ and Kafka at a real OTLP receiver', () => {
  let receiver: OtlpReceiver;
  let broker: KafkaBroker;
  let app: INestApplication;
  let points: ReceivedMetricPoint[];
  let grpcTarget: string;
  let tcpPort: number;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    broker = await startKafkaBroker({ topics: [KAFKA_TOPIC] });
    grpcTarget = `127.0.0.1:${await freePort()}`;
    tcpPort = await freePort();
    const kafkaClient = { brokers: broker.brokers, retry: { initialRetryTime: 100, retries: 8 }, logLevel: logLevel.NOTHING };

    @Module({
      imports: [
        OtelModule.forRoot({ serviceName: 'metrics-transports', exporter: { url: receiver.url }, batch: false, logSummary: false, metrics: { interval: 600_000 } }),
        ClientsModule.register([
          { name: 'NATS', customClass: OtelClientNats, options: NATS },
          { name: 'RMQ', customClass: OtelClientRMQ, options: RMQ },
          { name: 'TCP', customClass: OtelClientTCP, options: { host: '127.0.0.1', port: tcpPort } },
          { name: 'REDIS', customClass: OtelClientRedis, options: REDIS },
          { name: 'MQTT', customClass: OtelClientMqtt, options: { url: MQTT_URL, protocolVersion: 5 } },
          { name: 'GRPC', customClass: OtelClientGrpc, options: { package: ORDERS_PACKAGE, protoPath: ORDERS_PROTO, url: grpcTarget } },
          {
            name: 'KAFKA',
            customClass: OtelClientKafka as unknown as Type<ClientProxy>,
            options: { client: { ...kafkaClient, clientId: `metrics-producer-${RUN}` }, producerOnlyMode: true },
          },
        ]),
      ],
      controllers: [HandlersController],
    })
    class AppModule {}
    app = (await Test.createTestingModule({ imports: [AppModule] }).compile()).createNestApplication({ logger: false });
    app.connectMicroservice({ strategy: new OtelServerNats(NATS) });
    app.connectMicroservice({ strategy: new OtelServerRMQ(RMQ) });
    app.connectMicroservice({ strategy: new OtelServerTCP({ host: '127.0.0.1', port: tcpPort }) });
    app.connectMicroservice({ strategy: new OtelServerRedis(REDIS) });
    app.connectMicroservice({ strategy: new OtelServerMqtt({ url: MQTT_URL, protocolVersion: 5 }) });
    app.connectMicroservice(otelGrpc({ package: ORDERS_PACKAGE, protoPath: ORDERS_PROTO, url: grpcTarget }));
    app.connectMicroservice({
      strategy: new OtelServerKafka({ client: { ...kafkaClient, clientId: `metrics-consumer-${RUN}` }, consumer: { groupId: `metrics-${RUN}`, ...FAST_CONSUMER } }),
    });
    await app.startAllMicroservices();
    await app.init();

    const nats = app.get<ClientProxy>('NATS');
    const rmq = app.get<ClientProxy>('RMQ');
    const kafka = app.get<ClientProxy>('KAFKA');
    const grpc = app.get<ClientGrpc>('GRPC').getService<OrderServiceClient>(ORDER_SERVICE);
    await Promise.all([nats.connect(), rmq.connect(), kafka.connect()]);

    // NATS request-reply: two answered, one refused.
    await firstValueFrom(nats.send('metrics.price', { sku: 'a' }));
    await firstValueFrom(nats.send('metrics.price', { sku: 'b' }));
    await expect(firstValueFrom(nats.send('metrics.refuse', {}))).rejects.toBeDefined();
    // TCP, Redis, MQTT request-reply.
    await firstValueFrom(app.get<ClientProxy>('TCP').send(TCP_PATTERN, [1, 2]));
    await firstValueFrom(app.get<ClientProxy>('TCP').send(TCP_PATTERN, [3, 4]));
    await firstValueFrom(app.get<ClientProxy>('REDIS').send(REDIS_CHANNEL, { r: 1 }));
    await firstValueFrom(app.get<ClientProxy>('MQTT').send(MQTT_TOPIC, { m: 1 }));
    // RabbitMQ event.
    await firstValueFrom(rmq.emit(RMQ_QUEUE, { id: 1 }));
    // gRPC: one OK, one NOT_FOUND.
    await firstValueFrom(grpc.getOrder({ id: 'o-1' }));
    await expect(firstValueFrom(grpc.getOrder({ id: 'o-2', failCode: 5 }))).rejects.toBeDefined();
    // Kafka event, consumed before the app closes.
    await firstValueFrom(kafka.emit(KAFKA_TOPIC, { id: 'k-1' }));
    const deadline = Date.now() + 15_000;
    while (kafkaSeen < 1 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(kafkaSeen, 'the Kafka event was not consumed within 15 s').toBe(1);
    // The RabbitMQ event may still be in its handler: its span ends before the server closes.
    await app.close();
    points = latestMetricPoints(await receiver.waitForMetrics((p) => p.name === 'messaging.process.duration'));
    points = latestMetricPoints(receiver.metricPoints);
  }, 60_000);

  afterAll(async () => {
    await app?.close().catch(() => undefined);
    await broker?.stop();
    await receiver?.close();
  });

  function find(name: string, attributes: Record<string, unknown>): ReceivedMetricPoint[] {
    return points.filter((p) => p.name === name && Object.entries(attributes).every(([k, v]) => p.attributes[k] === v));
  }

  function one(name: string, attributes: Record<string, unknown>): ReceivedMetricPoint {
    const found = find(name, attributes);
    expect(found, `${name} ${JSON.stringify(attributes)} among\n${points.map((p) => `${p.name} ${JSON.stringify(p.attributes)}`).join('\n')}`).toHaveLength(1);
    return found[0]!;
  }

  it('gRPC: rpc.server.call.duration and rpc.client.call.duration with rpc.method and rpc.status_code', () => {
    const server = one('rpc.server.call.duration', { 'rpc.method': M.get, 'rpc.status_code': 'OK' });
    expect(server).toMatchObject({ unit: 's', kind: 'histogram', count: 1, scope: 'otel-nest' });
    expect(server.attributes).toEqual({ 'rpc.system.name': 'grpc', 'rpc.method': M.get, 'rpc.status_code': 'OK' });
    // NOT_FOUND is the caller's problem on the server: no error.type there, one on the client.
    expect(one('rpc.server.call.duration', { 'rpc.status_code': 'NOT_FOUND' }).attributes).not.toHaveProperty('error.type');
    const [host, port] = grpcTarget.split(':');
    const client = one('rpc.client.call.duration', { 'rpc.status_code': 'OK' });
    expect(client.attributes).toEqual({ 'rpc.system.name': 'grpc', 'rpc.method': M.get, 'rpc.status_code': 'OK', 'server.address': host, 'server.port': Number(port) });
    expect(one('rpc.client.call.duration', { 'rpc.status_code': 'NOT_FOUND' }).attributes['error.type']).toBe('NOT_FOUND');
  });

  it('TCP request-reply: rpc.server.call.duration and rpc.client.call.duration (RPC spans), rpc.system.name nestjs_tcp', () => {
    const server = one('rpc.server.call.duration', { 'rpc.system.name': 'nestjs_tcp' });
    expect(server).toMatchObject({ unit: 's', kind: 'histogram', count: 2 });
    expect(server.attributes).toEqual({ 'rpc.system.name': 'nestjs_tcp', 'rpc.method': TCP_PATTERN });
    const client = one('rpc.client.call.duration', { 'rpc.system.name': 'nestjs_tcp' });
    expect(client).toMatchObject({ count: 2 });
    expect(client.attributes).toEqual({ 'rpc.system.name': 'nestjs_tcp', 'rpc.method': TCP_PATTERN, 'server.address': '127.0.0.1', 'server.port': tcpPort });
  });

  it('Redis and MQTT request-reply: messaging metrics through the shared tracers', () => {
    expect(one('messaging.process.duration', { 'messaging.system': 'redis', 'messaging.destination.name': REDIS_CHANNEL }).count).toBe(1);
    expect(one('messaging.client.sent.messages', { 'messaging.system': 'redis', 'messaging.destination.name': REDIS_CHANNEL }).kind).toBe('sum');
    expect(one('messaging.process.duration', { 'messaging.system': 'mqtt', 'messaging.destination.name': MQTT_TOPIC }).count).toBe(1);
  });

  it('NATS request-reply: process duration and consumed count per subject, send duration and sent count; error.type of the refusal', () => {
    const processed = one('messaging.process.duration', { 'messaging.system': 'nats', 'messaging.destination.name': 'metrics.price' });
    expect(processed).toMatchObject({ unit: 's', kind: 'histogram', count: 2 });
    expect(processed.attributes).toEqual({ 'messaging.system': 'nats', 'messaging.operation.name': 'process', 'messaging.destination.name': 'metrics.price' });
    const consumed = one('messaging.client.consumed.messages', { 'messaging.system': 'nats', 'messaging.destination.name': 'metrics.price' });
    expect(consumed).toMatchObject({ kind: 'sum', monotonic: true, unit: '{message}', value: 2 });
    const sent = one('messaging.client.sent.messages', { 'messaging.system': 'nats', 'messaging.destination.name': 'metrics.price' });
    expect(sent).toMatchObject({ kind: 'sum', monotonic: true, unit: '{message}', value: 2 });
    expect(sent.attributes).toEqual({
      'messaging.system': 'nats',
      'messaging.operation.name': 'send',
      'messaging.operation.type': 'send',
      'messaging.destination.name': 'metrics.price',
    });
    expect(one('messaging.client.operation.duration', { 'messaging.system': 'nats', 'messaging.destination.name': 'metrics.price' }).count).toBe(2);
    expect(one('messaging.process.duration', { 'messaging.destination.name': 'metrics.refuse' }).attributes['error.type']).toBe('OutOfStock');
    expect(one('messaging.client.sent.messages', { 'messaging.destination.name': 'metrics.refuse' }).attributes['error.type']).toBe('OutOfStock');
    // Reply inboxes (_INBOX.…) are per request: never a destination of a metric.
    expect(JSON.stringify(points.map((p) => p.attributes))).not.toContain('_INBOX');
  });

  it('RabbitMQ and Kafka events: consumed, processed and sent, through the same shared tracers', () => {
    for (const system of ['rabbitmq', 'kafka']) {
      expect(find('messaging.process.duration', { 'messaging.system': system }).reduce((n, p) => n + (p.count ?? 0), 0), system).toBe(1);
      expect(find('messaging.client.consumed.messages', { 'messaging.system': system }).reduce((n, p) => n + (p.value ?? 0), 0), system).toBe(1);
      expect(find('messaging.client.sent.messages', { 'messaging.system': system }).reduce((n, p) => n + (p.value ?? 0), 0), system).toBe(1);
    }
    const kafkaProcess = one('messaging.process.duration', { 'messaging.system': 'kafka' });
    expect(kafkaProcess.attributes).toMatchObject({ 'messaging.destination.name': KAFKA_TOPIC, 'messaging.consumer.group.name': `metrics-${RUN}-server` });
  });
});

