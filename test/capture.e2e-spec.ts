import 'reflect-metadata';
import { Body, Controller, Get, Header, Inject, Module, Post, type INestApplication, type INestMicroservice, type Type } from '@nestjs/common';
import { ClientsModule, EventPattern, MessagePattern, NatsRecordBuilder, Payload, RmqRecordBuilder, type ClientProxy } from '@nestjs/microservices';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { randomUUID } from 'node:crypto';
import { firstValueFrom } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OtelModule } from '../lib/index.js';
import { OtelConfigError } from '../lib/otel.messages.js';
import { validateOptions } from '../lib/sdk/config/validate-options.js';
import { OtelClientNats, OtelServerNats } from '../lib/transports/nats/index.js';
import { OtelClientRMQ, OtelServerRMQ } from '../lib/transports/rmq/index.js';
import { OtelClientKafka, OtelServerKafka } from '../lib/transports/kafka/index.js';
import { OtelClientTCP, OtelServerTCP } from '../lib/transports/tcp/index.js';
import { NEST_MAJOR } from './support/nest-version.js';
import { startKafkaBroker, type KafkaBroker } from './support/kafka-broker.js';
import { logLevel } from 'kafkajs';
import { plainRequest } from './support/http-request.js';
import { natsHeaders } from './support/nats-driver.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './support/otlp-receiver.js';

/**
 * Header and body capture, asserted on what a real OTLP receiver gets: HTTP on express and fastify
 * (allow-lists with a glob and an exclusion, request and response bodies within the byte budget,
 * binary never, JSON `password` masked, captured `authorization` redacted), NATS (message
 * headers on the CONSUMER and PRODUCER spans, payloads on both), RabbitMQ and Kafka (headers both sides).
 */

const SERVER = 2;
const CLIENT_KIND = 3;
const PRODUCER = 4;
const CONSUMER = 5;

@Controller('capture')
class CaptureController {
  @Post('json')
  @Header('x-trace-note', 'visible')
  @Header('x-internal-cost', '17')
  json(@Body() body: { name: string }): { greeting: string; token: string } {
    return { greeting: `hello ${body.name}`, token: 'reply-token' };
  }

  @Post('big')
  big(@Body() body: unknown): { size: number } {
    return { size: JSON.stringify(body).length };
  }

  @Post('binary')
  @Header('content-type', 'application/octet-stream')
  binary(): Buffer {
    return Buffer.from([0, 1, 2, 3, 255]);
  }
}

async function startHttp(platform: 'express' | 'fastify', receiver: OtlpReceiver): Promise<{ app: INestApplication; base: string }> {
  @Module({
    imports: [
      OtelModule.forRoot({
        serviceName: `capture-${platform}`,
        exporter: { url: receiver.url },
        batch: false,
        logSummary: false,
        http: {
          requestHeaders: ['x-*', '!x-internal-*', 'authorization'],
          responseHeaders: ['x-*', '!x-internal-*', '!x-powered-by'],
          captureBody: { request: true, response: true, maxBytes: 64 },
        },
      }),
    ],
    controllers: [CaptureController],
  })
  class HttpCaptureModule {}
  const moduleRef = await Test.createTestingModule({ imports: [HttpCaptureModule] }).compile();
  const app =
    platform === 'fastify'
      ? moduleRef.createNestApplication(new FastifyAdapter(), { rawBody: false })
      : moduleRef.createNestApplication();
  if (platform === 'fastify') {
    const fastify = (app as unknown as { getHttpAdapter(): { getInstance(): any } }).getHttpAdapter().getInstance();
    fastify.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_req: unknown, body: Buffer, done: (e: null, b: Buffer) => void) => done(null, body));
  }
  await app.listen(0, '127.0.0.1');
  return { app, base: (await app.getUrl()).replace('[::1]', '127.0.0.1') };
}

async function serverSpan(receiver: OtlpReceiver, name: string): Promise<ReceivedSpan> {
  const [span] = await receiver.waitForSpans((s) => s.kind === SERVER && s.name === name);
  return span!;
}

function withPrefix(span: ReceivedSpan, prefix: string): Record<string, unknown> {
  return Object.fromEntries(Object.entries(span.attributes).filter(([key]) => key.startsWith(prefix)));
}

describe('header and body capture (OTLP receiver)', () => {
  let receiver: OtlpReceiver;
  beforeAll(async () => {
    receiver = await startOtlpReceiver();
  });
  afterAll(async () => {
    await receiver?.close();
  });

  describe.each(['express', 'fastify'] as const)('HTTP (%s)', (platform) => {
    let app: INestApplication;
    let base: string;
    beforeAll(async () => {
      ({ app, base } = await startHttp(platform, receiver));
    });
    afterAll(async () => {
      await app?.close();
    });

    it('records the headers the glob allows, not the excluded ones, with authorization redacted', async () => {
      receiver.reset();
      await plainRequest(`${base}/capture/json`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-tenant': 'acme',
          'x-internal-route': 'hidden',
          authorization: 'Bearer abcdefgh-secret',
          'user-agent': 'not listed',
        },
        body: JSON.stringify({ name: 'ada', password: 'hunter2' }),
      });
      const span = await serverSpan(receiver, 'POST /capture/json');
      expect(withPrefix(span, 'http.request.header.')).toEqual({
        'http.request.header.x-tenant': ['acme'],
        'http.request.header.authorization': ['[REDACTED]'],
      });
      expect(withPrefix(span, 'http.response.header.')).toEqual({ 'http.response.header.x-trace-note': ['visible'] });
    });

    it('records the parsed request body with password masked, and the response value with token masked', async () => {
      receiver.reset();
      await plainRequest(`${base}/capture/json`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'ada', password: 'hunter2' }),
      });
      const span = await serverSpan(receiver, 'POST /capture/json');
      expect(span.attributes['nestjs.http.request.body.content']).toBe('{"name":"ada","password":"[REDACTED]"}');
      expect(span.attributes['nestjs.http.response.body.content']).toBe('{"greeting":"hello ada","token":"[REDACTED]"}');
      expect(span.attributes['nestjs.http.request.body.truncated']).toBeUndefined();
    });

    it('cuts a body to maxBytes on a character boundary and marks it truncated', async () => {
      receiver.reset();
      await plainRequest(`${base}/capture/big`, {
        method: 'POST',
        headers: { 'content-type': 'application/json; charset=utf-8' },
        body: JSON.stringify({ text: 'é'.repeat(100) }),
      });
      const span = await serverSpan(receiver, 'POST /capture/big');
      const body = String(span.attributes['nestjs.http.request.body.content']);
      expect(Buffer.byteLength(body)).toBeLessThanOrEqual(64);
      expect(body.startsWith('{"text":"éé')).toBe(true);
      expect(body).not.toContain('\uFFFD');
      expect(span.attributes['nestjs.http.request.body.truncated']).toBe(true);
    });

    it('never records a binary body (non-text content type, Buffer response)', async () => {
      receiver.reset();
      await plainRequest(`${base}/capture/binary`, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream' },
        body: 'binary-looking-payload',
      });
      const span = await serverSpan(receiver, 'POST /capture/binary');
      expect(span.attributes['nestjs.http.request.body.content']).toBeUndefined();
      expect(span.attributes['nestjs.http.response.body.content']).toBeUndefined();
    });
  });

  it('rejects a wrong capture option at bootstrap', () => {
    expect(() => validateOptions({ http: { captureBody: { maxBytes: 0 } } })).toThrow(OtelConfigError);
    expect(() => validateOptions({ http: { captureBody: { maxBytes: 0 } } })).toThrow(/"http.captureBody.maxBytes" must be a positive integer/);
    expect(() => validateOptions({ http: { requestHeaders: ['!x-internal-*'] } })).toThrow(/at least one name to include/);
    expect(() => new OtelServerNats({ otel: { captureHeaders: 'x-*' as never } })).toThrow(/"OtelServerNats otel.captureHeaders" must be an array/);
  });

  describe('NATS', () => {
    const SERVERS = ['nats://127.0.0.1:4222'];
    const subject = `capture.${randomUUID().slice(0, 8)}`;
    const CLIENT = Symbol('CAPTURE_CLIENT');
    let service: INestMicroservice;
    let gateway: INestApplication;
    let client: ClientProxy;

    @Controller()
    class NatsHandlers {
      @MessagePattern(`${subject}.get`)
      get(@Payload() data: { id: number; password?: string }): { id: number } {
        return { id: data.id };
      }

      @EventPattern(`${subject}.bin`)
      bin(@Payload() _data: unknown): void {}
    }

    @Controller()
    class Gateway {
      constructor(@Inject(CLIENT) readonly proxy: ClientProxy) {}
      @Get('noop')
      noop(): string {
        return 'ok';
      }
    }

    beforeAll(async () => {
      @Module({
        imports: [
          OtelModule.forRoot({ serviceName: 'capture-nats', exporter: { url: receiver.url }, batch: false, logSummary: false }),
          ClientsModule.register([
            {
              name: CLIENT,
              customClass: OtelClientNats,
              options: { servers: SERVERS, otel: { captureHeaders: ['x-*', '!x-internal-*'], captureBody: { maxBytes: 32 } } },
            },
          ]),
        ],
        controllers: [NatsHandlers, Gateway],
      })
      class NatsCaptureModule {}
      const moduleRef = await Test.createTestingModule({ imports: [NatsCaptureModule] }).compile();
      service = moduleRef.createNestMicroservice({
        strategy: new OtelServerNats({ servers: SERVERS, otel: { captureHeaders: ['x-*', '!x-internal-*', 'authorization'], captureBody: true } }),
      });
      await service.listen();
      gateway = moduleRef.createNestApplication();
      await gateway.init();
      client = gateway.get<ClientProxy>(CLIENT);
      await client.connect();
    });
    afterAll(async () => {
      await client?.close();
      await gateway?.close();
      await service?.close();
    });

    it('records allowed message headers and the payload on both sides, masked and within budget', async () => {
      receiver.reset();
      const headers = natsHeaders();
      headers.set('x-tenant', 'acme');
      headers.set('x-internal-hop', 'hidden');
      headers.set('authorization', 'Bearer abcdefgh-secret');
      const record = new NatsRecordBuilder({ id: 7, password: 'hunter2', note: 'x'.repeat(40) }).setHeaders(headers).build();
      await firstValueFrom(client.send(`${subject}.get`, record));
      const [consumer] = await receiver.waitForSpans((s) => s.kind === CONSUMER && s.name === `process ${subject}.get`);
      const [producer] = await receiver.waitForSpans((s) => s.kind === PRODUCER && s.name === `send ${subject}.get`);
      expect(withPrefix(consumer!, 'nestjs.message.header.')).toEqual({
        'nestjs.message.header.x-tenant': ['acme'],
        'nestjs.message.header.authorization': ['[REDACTED]'],
      });
      // The client's list has no authorization; its headers are the application's, before the trace context.
      expect(withPrefix(producer!, 'nestjs.message.header.')).toEqual({ 'nestjs.message.header.x-tenant': ['acme'] });
      const full = `{"id":7,"password":"[REDACTED]","note":"${'x'.repeat(40)}"}`;
      expect(consumer!.attributes['nestjs.message.body.content']).toBe(full);
      expect(consumer!.attributes['nestjs.message.body.truncated']).toBeUndefined();
      expect(producer!.attributes['nestjs.message.body.content']).toBe(full.slice(0, 32));
      expect(producer!.attributes['nestjs.message.body.truncated']).toBe(true);
      expect(JSON.stringify(receiver.spans)).not.toContain('hunter2');
    });

    it('never records a binary payload', async () => {
      receiver.reset();
      await firstValueFrom(client.emit(`${subject}.bin`, new Uint8Array([1, 2, 3])));
      const [producer] = await receiver.waitForSpans((s) => s.kind === PRODUCER && s.name === `send ${subject}.bin`);
      expect(producer!.attributes['nestjs.message.body.content']).toBeUndefined();
      expect(CLIENT_KIND).toBe(3);
    });
  });

  describe('RabbitMQ', () => {
    const queue = `capture-${randomUUID().slice(0, 8)}`;
    const RMQ = { urls: ['amqp://guest:guest@127.0.0.1:5672'], queue, queueOptions: { durable: false, autoDelete: true } };
    const CLIENT = Symbol('RMQ_CAPTURE_CLIENT');
    let service: INestMicroservice;
    let gateway: INestApplication;
    let client: ClientProxy;

    @Controller()
    class RmqHandlers {
      @MessagePattern(`${queue}.get`)
      get(@Payload() data: { id: number }): { id: number } {
        return { id: data.id };
      }
    }

    beforeAll(async () => {
      @Module({
        imports: [
          OtelModule.forRoot({ serviceName: 'capture-rmq', exporter: { url: receiver.url }, batch: false, logSummary: false }),
          ClientsModule.register([{ name: CLIENT, customClass: OtelClientRMQ, options: { ...RMQ, otel: { captureHeaders: ['x-*', '!x-internal-*'] } } }]),
        ],
        controllers: [RmqHandlers],
      })
      class RmqCaptureModule {}
      const moduleRef = await Test.createTestingModule({ imports: [RmqCaptureModule] }).compile();
      service = moduleRef.createNestMicroservice({ strategy: new OtelServerRMQ({ ...RMQ, otel: { captureHeaders: ['x-*', 'authorization'] } }) });
      await service.listen();
      gateway = moduleRef.createNestApplication();
      await gateway.init();
      client = gateway.get<ClientProxy>(CLIENT);
      await client.connect();
    });
    afterAll(async () => {
      await client?.close();
      await gateway?.close();
      await service?.close();
    });

    it('records allowed message headers on the PRODUCER (the application\'s, before the trace context) and the CONSUMER span', async () => {
      receiver.reset();
      const record = new RmqRecordBuilder({ id: 9 })
        .setOptions({ headers: { 'x-tenant': 'acme', 'x-internal-hop': 'hidden', authorization: 'Bearer abcdefgh-secret' } })
        .build();
      await firstValueFrom(client.send(`${queue}.get`, record));
      const [consumer] = await receiver.waitForSpans((s) => s.kind === CONSUMER && s.attributes['nestjs.pattern'] === `${queue}.get`);
      const [producer] = await receiver.waitForSpans((s) => s.kind === PRODUCER && s.attributes['nestjs.pattern'] === `${queue}.get`);
      expect(withPrefix(producer!, 'nestjs.message.header.')).toEqual({ 'nestjs.message.header.x-tenant': ['acme'] });
      expect(withPrefix(consumer!, 'nestjs.message.header.')).toEqual({
        'nestjs.message.header.x-tenant': ['acme'],
        'nestjs.message.header.x-internal-hop': ['hidden'],
        'nestjs.message.header.authorization': ['[REDACTED]'],
      });
    });
  });

  describe('Kafka', () => {
    const topic = `capture.kafka.${randomUUID().slice(0, 8)}`;
    const CLIENT = Symbol('KAFKA_CAPTURE_CLIENT');
    let broker: KafkaBroker;
    let service: INestMicroservice;
    let gateway: INestApplication;
    let client: ClientProxy;
    let seen = 0;

    @Controller()
    class KafkaHandlers {
      @EventPattern(topic)
      audited(@Payload() _data: unknown): void {
        seen++;
      }
    }

    beforeAll(async () => {
      broker = await startKafkaBroker({ topics: [topic] });
      const kafkaClient = { brokers: broker.brokers, retry: { initialRetryTime: 100, retries: 8 }, logLevel: logLevel.NOTHING };
      @Module({
        imports: [
          OtelModule.forRoot({ serviceName: 'capture-kafka', exporter: { url: receiver.url }, batch: false, logSummary: false }),
          ClientsModule.register([
            {
              name: CLIENT,
              customClass: OtelClientKafka as unknown as Type<ClientProxy>,
              options: { client: { ...kafkaClient, clientId: 'capture-producer' }, producerOnlyMode: true, otel: { captureHeaders: ['x-*', '!x-internal-*'] } },
            },
          ]),
        ],
        controllers: [KafkaHandlers],
      })
      class KafkaCaptureModule {}
      const moduleRef = await Test.createTestingModule({ imports: [KafkaCaptureModule] }).compile();
      service = moduleRef.createNestMicroservice({
        strategy: new OtelServerKafka({
          client: { ...kafkaClient, clientId: 'capture-consumer' },
          consumer: { groupId: `capture-${randomUUID().slice(0, 8)}`, maxWaitTimeInMs: 50, heartbeatInterval: 500 },
          subscribe: { fromBeginning: true },
          otel: { captureHeaders: ['x-*'] },
        }),
      });
      await service.listen();
      gateway = moduleRef.createNestApplication();
      await gateway.init();
      client = gateway.get<ClientProxy>(CLIENT);
      await client.connect();
    }, 60_000);
    afterAll(async () => {
      await client?.close();
      await gateway?.close();
      await service?.close();
      await broker?.stop();
    });

    it('records allowed record headers on the PRODUCER (the application\'s, before the trace context) and the CONSUMER span', async () => {
      await firstValueFrom(client.emit(topic, { key: 'k-1', value: { id: 1 }, headers: { 'x-tenant': 'acme', 'x-internal-hop': 'hidden' } }));
      const [producer] = await receiver.waitForSpans((s) => s.kind === PRODUCER && s.name === `send ${topic}`);
      const [consumer] = await receiver.waitForSpans((s) => s.kind === CONSUMER && s.name === `process ${topic}`, 15_000);
      expect(seen).toBe(1);
      expect(withPrefix(producer!, 'nestjs.message.header.')).toEqual({ 'nestjs.message.header.x-tenant': ['acme'] });
      expect(withPrefix(consumer!, 'nestjs.message.header.')).toEqual({
        'nestjs.message.header.x-tenant': ['acme'],
        'nestjs.message.header.x-internal-hop': ['hidden'],
      });
    });
  });

  describe('TCP request-reply (the SERVER span)', () => {
    let service: INestMicroservice;
    let client: OtelClientTCP;

    @Controller()
    class TcpHandlers {
      @MessagePattern('capture.tcp.get')
      get(@Payload() data: { id: number }): { id: number } {
        return { id: data.id };
      }
    }

    beforeAll(async () => {
      @Module({
        imports: [OtelModule.forRoot({ serviceName: 'capture-tcp', exporter: { url: receiver.url }, batch: false, logSummary: false })],
        controllers: [TcpHandlers],
      })
      class TcpCaptureModule {}
      const moduleRef = await Test.createTestingModule({ imports: [TcpCaptureModule] }).compile();
      const server = new OtelServerTCP({ host: '127.0.0.1', port: 0, otel: { captureHeaders: ['x-*'], captureBody: true } });
      service = moduleRef.createNestMicroservice({ strategy: server });
      await service.listen();
      const port = (server.unwrap<import('node:net').Server>().address() as import('node:net').AddressInfo).port;
      client = new OtelClientTCP({ host: '127.0.0.1', port });
      if (NEST_MAJOR >= 12) {
        // Nest 12's public way to put metadata on a packet.
        (client as unknown as { setOnDispatchHook(hook: (packet: { metadata?: Record<string, string> }) => void): void }).setOnDispatchHook((packet) => {
          packet.metadata = { 'x-tenant': 'acme', other: 'no' };
        });
      }
      await client.connect();
    });
    afterAll(async () => {
      await client?.close();
      await service?.close();
    });

    it('records the payload (masked) and, on Nest 12, the allowed metadata of the request on the SERVER span', async () => {
      await firstValueFrom(client.send('capture.tcp.get', { id: 3, password: 'hunter2' }));
      const [server] = await receiver.waitForSpans((s) => s.kind === SERVER && s.name === 'capture.tcp.get');
      expect(server!.attributes['nestjs.message.body.content']).toBe('{"id":3,"password":"[REDACTED]"}');
      expect(withPrefix(server!, 'nestjs.message.header.')).toEqual(NEST_MAJOR >= 12 ? { 'nestjs.message.header.x-tenant': ['acme'] } : {});
    });
  });
});
