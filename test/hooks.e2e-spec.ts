import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { Controller, Get, Inject, Module, type INestApplication, type INestMicroservice } from '@nestjs/common';
import { ClientsModule, EventPattern, MessagePattern, NatsContext, Payload, RpcException, type ClientProxy } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { firstValueFrom, lastValueFrom } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Span } from '@opentelemetry/api';
import { OtelModule, type PublishInfo } from '../lib/index.js';
import { OtelClientNats, OtelServerNats } from '../lib/transports/nats/index.js';
import { OtelClientRedis, OtelServerRedis } from '../lib/transports/redis/index.js';
import { OtelClientTCP, OtelServerTCP } from '../lib/transports/tcp/index.js';
import { plainRequest } from './support/http-request.js';
import { freePort } from './support/private-brokers.js';
import { startOtlpReceiver, type OtlpReceiver } from './support/otlp-receiver.js';

const RUN = `otel-nest-e2e.${randomUUID().slice(0, 8)}.hooks`;
const S = { get: `${RUN}.get`, fail: `${RUN}.fail`, skipped: `${RUN}.skipped`, event: `${RUN}.event`, quiet: `${RUN}.quiet` };
const NATS = 'nats://127.0.0.1:4222';
const TRACED_CLIENT = 'TRACED_CLIENT';
const QUIET_CLIENT = 'QUIET_CLIENT';
const SERVER = 2;
const PRODUCER = 4;
const CONSUMER = 5;

describe('hooks and ignore predicates: HTTP requestHook/responseHook/ignore, transport publish/consume/reply hooks', () => {
  let receiver: OtlpReceiver;
  let app: INestApplication;
  let microservice: INestMicroservice;
  let url: string;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();

    @Controller('hooks')
    class HooksController {
      constructor(
        @Inject(TRACED_CLIENT) private readonly traced: ClientProxy,
        @Inject(QUIET_CLIENT) private readonly quiet: ClientProxy,
      ) {}

      @Get('plain')
      plain(): { ok: true } {
        return { ok: true };
      }

      @Get('send')
      send(): Promise<unknown> {
        return firstValueFrom(this.traced.send(S.get, { sku: 'A-1', secret: 'not-for-spans' }));
      }

      @Get('send-fail')
      async sendFail(): Promise<string> {
        try {
          await firstValueFrom(this.traced.send(S.fail, { sku: 'B-2' }));
          return 'no error';
        } catch (error) {
          return (error as { message?: string }).message ?? 'error';
        }
      }

      @Get('send-skipped')
      sendSkipped(): Promise<unknown> {
        return firstValueFrom(this.traced.send(S.skipped, { sku: 'C-3' }));
      }

      @Get('quiet')
      viaQuiet(): Promise<unknown> {
        return firstValueFrom(this.quiet.send(S.quiet, { sku: 'D-4' }));
      }

      @Get('emit')
      async emit(): Promise<{ ok: true }> {
        await lastValueFrom(this.traced.emit(S.event, { sku: 'E-5' }), { defaultValue: undefined });
        return { ok: true };
      }

      @MessagePattern(S.get)
      get(): { found: true } {
        return { found: true };
      }

      @MessagePattern(S.fail)
      fail(): never {
        throw new RpcException('out of stock');
      }

      @MessagePattern(S.skipped)
      skipped(): { skipped: true } {
        return { skipped: true };
      }

      @MessagePattern(S.quiet)
      quietHandler(): { quiet: true } {
        return { quiet: true };
      }

      @EventPattern(S.event)
      onEvent(@Payload() data: unknown): void {
        void data;
      }
    }

    @Module({
      imports: [
        OtelModule.forRoot({
          serviceName: 'hooks',
          exporter: { url: receiver.url },
          batch: false,
          logSummary: false,
          http: {
            requestHook: (span, { request }) => {
              span.setAttribute('app.tenant', String(request.headers['x-tenant'] ?? 'none'));
              if (request.headers['x-break-hook']) {
                throw new Error('a broken request hook');
              }
            },
            responseHook: (span, { response, route }) => {
              span.setAttribute('app.status_class', `${Math.floor(response.statusCode / 100)}xx`);
              span.setAttribute('app.route_seen', route ?? 'none');
            },
            ignore: (request) => request.headers['user-agent']?.startsWith('kube-probe') === true,
          },
        }),
        ClientsModule.register([
          {
            name: TRACED_CLIENT,
            customClass: OtelClientNats,
            options: {
              servers: [NATS],
              otel: {
                publishHook: (span: Span, info: PublishInfo) => {
                  span.setAttribute('app.sku', String((info.data as { sku?: string }).sku));
                  span.setAttribute('app.publish_kind', info.isEvent ? 'event' : 'message');
                },
              },
            },
          },
          { name: QUIET_CLIENT, customClass: OtelClientNats, options: { servers: [NATS], otel: { ignore: () => true } } },
        ]),
      ],
      controllers: [HooksController],
    })
    class AppModule {}

    app = (await Test.createTestingModule({ imports: [AppModule] }).compile()).createNestApplication();
    microservice = app.connectMicroservice({
      strategy: new OtelServerNats({
        servers: [NATS],
        otel: {
          consumeHook: (span, info) => {
            span.setAttribute('app.consumed_pattern', info.pattern);
            span.setAttribute('app.has_headers', info.context instanceof NatsContext && info.context.getHeaders() !== undefined);
            if (info.pattern === S.event) {
              throw new Error('a broken consume hook');
            }
          },
          replyHook: (span, info) => {
            span.setAttribute('app.reply_outcome', info.error === undefined ? 'ok' : 'error');
          },
          ignore: (info) => info.pattern === S.skipped,
        },
      }),
    });
    await app.startAllMicroservices();
    await app.listen(0, '127.0.0.1');
    url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  });

  afterAll(async () => {
    await app?.close();
    await microservice?.close();
    await receiver?.close();
  });

  const serverSpanOf = async (traceId: string | undefined, path: string) =>
    (await receiver.waitForSpans((s) => s.kind === SERVER && s.attributes['url.path'] === path && (!traceId || s.traceId === traceId)))[0]!;

  it('requestHook and responseHook add their attributes to the SERVER span', async () => {
    const tenant = `t-${randomUUID().slice(0, 6)}`;
    await plainRequest(`${url}/hooks/plain`, { headers: { 'x-tenant': tenant } });
    const [span] = await receiver.waitForSpans((s) => s.kind === SERVER && s.attributes['app.tenant'] === tenant);
    expect(span!.attributes['app.status_class']).toBe('2xx');
    expect(span!.attributes['app.route_seen']).toBe('/hooks/plain');
  });

  it('a throwing hook is ignored: the request succeeds and its span is exported', async () => {
    const tenant = `broken-${randomUUID().slice(0, 6)}`;
    const response = await plainRequest(`${url}/hooks/plain`, { headers: { 'x-tenant': tenant, 'x-break-hook': '1' } });
    expect(response.status).toBe(200);
    const [span] = await receiver.waitForSpans((s) => s.kind === SERVER && s.attributes['app.tenant'] === tenant);
    expect(span!.status.code).toBe(0);
    expect(span!.attributes['app.status_class']).toBe('2xx');
  });

  it('http.ignore: a matching request has no span, and the next one does', async () => {
    const probeTenant = `probe-${randomUUID().slice(0, 6)}`;
    await plainRequest(`${url}/hooks/plain`, { headers: { 'user-agent': 'kube-probe/1.30', 'x-tenant': probeTenant } });
    const after = `after-${randomUUID().slice(0, 6)}`;
    await plainRequest(`${url}/hooks/plain`, { headers: { 'x-tenant': after } });
    await receiver.waitForSpans((s) => s.attributes['app.tenant'] === after);
    expect(receiver.spans.filter((s) => s.attributes['app.tenant'] === probeTenant)).toEqual([]);
  });

  it('publishHook sees the payload; consumeHook sees the NatsContext; replyHook the outcome', async () => {
    const tenant = `nats-${randomUUID().slice(0, 6)}`;
    await plainRequest(`${url}/hooks/send`, { headers: { 'x-tenant': tenant } });
    const server = (await receiver.waitForSpans((s) => s.kind === SERVER && s.attributes['app.tenant'] === tenant))[0]!;
    const spans = await receiver.waitForSpans((s) => s.traceId === server.traceId && s.kind === CONSUMER);
    const producer = receiver.spans.find((s) => s.traceId === server.traceId && s.kind === PRODUCER)!;
    expect(producer.attributes['app.sku']).toBe('A-1');
    expect(producer.attributes['app.publish_kind']).toBe('message');
    expect(JSON.stringify(producer.attributes)).not.toContain('not-for-spans');
    const consumer = spans[0]!;
    expect(consumer.parentSpanId).toBe(producer.spanId);
    expect(consumer.attributes['app.consumed_pattern']).toBe(S.get);
    expect(consumer.attributes['app.has_headers']).toBe(true);
    expect(consumer.attributes['app.reply_outcome']).toBe('ok');
  });

  it('replyHook sees the error of a failing handler', async () => {
    const tenant = `fail-${randomUUID().slice(0, 6)}`;
    const response = await plainRequest(`${url}/hooks/send-fail`, { headers: { 'x-tenant': tenant } });
    expect(response.text).toBe('out of stock');
    const server = (await receiver.waitForSpans((s) => s.kind === SERVER && s.attributes['app.tenant'] === tenant))[0]!;
    const [consumer] = await receiver.waitForSpans((s) => s.traceId === server.traceId && s.kind === CONSUMER);
    expect(consumer!.attributes['app.reply_outcome']).toBe('error');
    expect(consumer!.status.code).toBe(2);
  });

  it('server ignore: the message is handled, without a CONSUMER span', async () => {
    const tenant = `skip-${randomUUID().slice(0, 6)}`;
    const response = await plainRequest(`${url}/hooks/send-skipped`, { headers: { 'x-tenant': tenant } });
    expect(response.json()).toEqual({ skipped: true });
    const server = await serverSpanOf(undefined, '/hooks/send-skipped');
    await receiver.waitForSpans((s) => s.traceId === server.traceId && s.kind === PRODUCER);
    // The producer span ends after the reply, i.e. after the handler ran: a consumer span would be exported by now.
    expect(receiver.spans.filter((s) => s.traceId === server.traceId && s.kind === CONSUMER)).toEqual([]);
  });

  it('client ignore: no PRODUCER span, and the consumer continues the caller\'s trace under its SERVER span', async () => {
    const tenant = `quiet-${randomUUID().slice(0, 6)}`;
    await plainRequest(`${url}/hooks/quiet`, { headers: { 'x-tenant': tenant } });
    const server = (await receiver.waitForSpans((s) => s.kind === SERVER && s.attributes['app.tenant'] === tenant))[0]!;
    const [consumer] = await receiver.waitForSpans((s) => s.traceId === server.traceId && s.kind === CONSUMER);
    expect(consumer!.parentSpanId).toBe(server.spanId);
    expect(receiver.spans.filter((s) => s.traceId === server.traceId && s.kind === PRODUCER)).toEqual([]);
  });

  it('a throwing consume hook is ignored: the event is still processed and its span exported', async () => {
    await plainRequest(`${url}/hooks/emit`);
    const [consumer] = await receiver.waitForSpans((s) => s.kind === CONSUMER && s.attributes['app.consumed_pattern'] === S.event);
    expect(consumer!.links).toHaveLength(1);
    expect(consumer!.attributes['app.reply_outcome']).toBe('ok');
    const producer = receiver.spans.find((s) => s.kind === PRODUCER && s.attributes['app.publish_kind'] === 'event')!;
    expect(producer.attributes['app.sku']).toBe('E-5');
  });
});

describe('client hooks on the TCP and Redis clients: publishHook sees the payload, ignore leaves no span of ours', () => {
  let receiver: OtlpReceiver;
  let app: INestApplication;
  let url: string;
  const TCP = 'TCP_CLIENT';
  const TCP_QUIET = 'TCP_QUIET';
  const REDIS = 'REDIS_CLIENT';
  const REDIS_QUIET = 'REDIS_QUIET';
  const P = { tcp: `${RUN}.tcp.get`, redis: `${RUN}.redis.get`, tcpEvent: `${RUN}.tcp.event` };

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    const tcpPort = await freePort();
    const redisOptions = { host: '127.0.0.1', port: 6379 };
    const publishHook = (span: Span, info: PublishInfo) => span.setAttribute('app.client_saw', `${info.system} ${info.pattern} ${(info.data as { n: number }).n}`);

    @Controller('clients')
    class ClientsController {
      constructor(
        @Inject(TCP) private readonly tcp: ClientProxy,
        @Inject(TCP_QUIET) private readonly tcpQuiet: ClientProxy,
        @Inject(REDIS) private readonly redis: ClientProxy,
        @Inject(REDIS_QUIET) private readonly redisQuiet: ClientProxy,
      ) {}

      @Get('tcp')
      viaTcp(): Promise<unknown> {
        return firstValueFrom(this.tcp.send(P.tcp, { n: 1 }));
      }

      @Get('tcp-event')
      async tcpEvent(): Promise<{ ok: true }> {
        await lastValueFrom(this.tcp.emit(P.tcpEvent, { n: 3 }), { defaultValue: undefined });
        return { ok: true };
      }

      @Get('tcp-quiet')
      viaTcpQuiet(): Promise<unknown> {
        return firstValueFrom(this.tcpQuiet.send(P.tcp, { n: 4 }));
      }

      @Get('redis')
      viaRedis(): Promise<unknown> {
        return firstValueFrom(this.redis.send(P.redis, { n: 2 }));
      }

      @Get('redis-quiet')
      viaRedisQuiet(): Promise<unknown> {
        return firstValueFrom(this.redisQuiet.send(P.redis, { n: 5 }));
      }

      @MessagePattern(P.tcp)
      tcpHandler(): { via: 'tcp' } {
        return { via: 'tcp' };
      }

      @EventPattern(P.tcpEvent)
      tcpEventHandler(@Payload() data: unknown): void {
        void data;
      }

      @MessagePattern(P.redis)
      redisHandler(): { via: 'redis' } {
        return { via: 'redis' };
      }
    }

    @Module({
      imports: [
        OtelModule.forRoot({ serviceName: 'client-hooks', exporter: { url: receiver.url }, batch: false, logSummary: false }),
        ClientsModule.register([
          { name: TCP, customClass: OtelClientTCP, options: { host: '127.0.0.1', port: tcpPort, otel: { publishHook } } },
          { name: TCP_QUIET, customClass: OtelClientTCP, options: { host: '127.0.0.1', port: tcpPort, otel: { ignore: () => true } } },
          { name: REDIS, customClass: OtelClientRedis, options: { ...redisOptions, otel: { publishHook } } },
          { name: REDIS_QUIET, customClass: OtelClientRedis, options: { ...redisOptions, otel: { ignore: () => true } } },
        ]),
      ],
      controllers: [ClientsController],
    })
    class ClientsAppModule {}

    app = (await Test.createTestingModule({ imports: [ClientsAppModule] }).compile()).createNestApplication();
    app.connectMicroservice({ strategy: new OtelServerTCP({ host: '127.0.0.1', port: tcpPort }) });
    app.connectMicroservice({ strategy: new OtelServerRedis(redisOptions) });
    await app.startAllMicroservices();
    await app.listen(0, '127.0.0.1');
    url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  });

  afterAll(async () => {
    // Closes the connected microservices too.
    await app?.close();
    await receiver?.close();
  });

  /** The SERVER span of the HTTP request to `path`, and the spans of its trace once `kind` arrived. */
  async function traceOfRequest(path: string, kind: number) {
    await plainRequest(`${url}${path}`);
    const [server] = await receiver.waitForSpans((s) => s.kind === SERVER && s.attributes['url.path'] === path);
    await receiver.waitForSpans((s) => s.traceId === server!.traceId && s.kind === kind);
    return { server: server!, spans: receiver.spans.filter((s) => s.traceId === server!.traceId) };
  }

  it('TCP send: the CLIENT span has the hook\'s attribute; the server span is its child', async () => {
    const { spans } = await traceOfRequest('/clients/tcp', SERVER_OF_TCP);
    const client = spans.find((s) => s.kind === CLIENT)!;
    expect(client.attributes['app.client_saw']).toBe(`nestjs_tcp ${P.tcp} 1`);
    expect(spans.find((s) => s.kind === SERVER && s.parentSpanId === client.spanId)).toBeDefined();
  });

  it('TCP emit: the PRODUCER span has the hook\'s attribute', async () => {
    const { spans } = await traceOfRequest('/clients/tcp-event', PRODUCER);
    expect(spans.find((s) => s.kind === PRODUCER)!.attributes['app.client_saw']).toBe(`nestjs_tcp ${P.tcpEvent} 3`);
  });

  it('TCP ignore: no CLIENT span; the TCP server span continues the HTTP SERVER span', async () => {
    const path = '/clients/tcp-quiet';
    await plainRequest(`${url}${path}`);
    const [http] = await receiver.waitForSpans((s) => s.kind === SERVER && s.attributes['url.path'] === path);
    const [tcpServer] = await receiver.waitForSpans((s) => s.traceId === http!.traceId && s.kind === SERVER && s.spanId !== http!.spanId);
    expect(tcpServer!.parentSpanId).toBe(http!.spanId);
    expect(receiver.spans.filter((s) => s.traceId === http!.traceId && s.kind === CLIENT)).toEqual([]);
  });

  it('Redis send: the PRODUCER span has the hook\'s attribute; ignore leaves only the consumer, under the HTTP span', async () => {
    const { spans } = await traceOfRequest('/clients/redis', CONSUMER);
    expect(spans.find((s) => s.kind === PRODUCER)!.attributes['app.client_saw']).toBe(`redis ${P.redis} 2`);
    const quiet = await traceOfRequest('/clients/redis-quiet', CONSUMER);
    expect(quiet.spans.filter((s) => s.kind === PRODUCER)).toEqual([]);
    expect(quiet.spans.find((s) => s.kind === CONSUMER)!.parentSpanId).toBe(quiet.server.spanId);
  });
});

const CLIENT = 3;
/** The TCP server's request span is a SERVER span (RPC), like the HTTP one. */
const SERVER_OF_TCP = 2;
