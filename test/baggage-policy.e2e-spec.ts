import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Controller, Get, Inject, Module, type INestApplication, type INestMicroservice } from '@nestjs/common';
import { ClientsModule, MessagePattern, type ClientProxy } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { context, propagation } from '@opentelemetry/api';
import { firstValueFrom } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OtelModule } from '../lib/index.js';
import { OtelClientNats, OtelServerNats } from '../lib/transports/nats/index.js';
import { plainRequest } from './support/http-request.js';
import { startOtlpReceiver, type OtlpReceiver } from './support/otlp-receiver.js';

// One policy for the whole file (it is process-wide): HTTP lets in tenant.id and user.*, NATS nothing.
const POLICY = { inbound: { allow: ['tenant.id', 'user.*'] }, channels: { nats: 'drop' as const }, maxMembers: 3 };
const SUBJECT = `otel-nest-e2e.${randomUUID().slice(0, 8)}.baggage.show`;
const NATS_CLIENT = 'NATS_CLIENT';

/** Every baggage member the active context holds, as key → value. */
function activeBaggage(): Record<string, string> {
  const entries = propagation.getBaggage(context.active())?.getAllEntries() ?? [];
  return Object.fromEntries(entries.map(([key, entry]) => [key, entry.value]));
}

describe('inbound baggage policy: what a caller sends is filtered where it enters, what the app sets goes out', () => {
  let receiver: OtlpReceiver;
  let app: INestApplication;
  let microservice: INestMicroservice;
  let url: string;
  let downstream: Server;
  const downstreamHeaders: IncomingHttpHeaders[] = [];

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    downstream = createServer((req, res) => {
      downstreamHeaders.push(req.headers);
      res.end('{}');
    });
    await new Promise<void>((resolve) => downstream.listen(0, '127.0.0.1', resolve));
    const downstreamUrl = `http://127.0.0.1:${(downstream.address() as AddressInfo).port}/next`;

    @Controller('baggage')
    class BaggageController {
      constructor(@Inject(NATS_CLIENT) private readonly nats: ClientProxy) {}

      @Get('show')
      show(): Record<string, string> {
        return activeBaggage();
      }

      /** Adds a member of its own, then calls the next hop with fetch. */
      @Get('forward')
      async forward(): Promise<Record<string, string>> {
        const own = (propagation.getBaggage(context.active()) ?? propagation.createBaggage()).setEntry('app.step', { value: 'checkout' });
        await context.with(propagation.setBaggage(context.active(), own), () => fetch(downstreamUrl));
        return activeBaggage();
      }

      /** Sends the caller's (filtered) baggage on over NATS, where the server drops all of it. */
      @Get('nats')
      viaNats(): Promise<Record<string, string>> {
        return firstValueFrom(this.nats.send<Record<string, string>>(SUBJECT, {}));
      }

      @MessagePattern(SUBJECT)
      handle(): Record<string, string> {
        return activeBaggage();
      }
    }

    @Module({
      imports: [
        OtelModule.forRoot({
          serviceName: 'baggage-policy',
          exporter: { url: receiver.url },
          batch: false,
          baggage: POLICY,
          logSummary: false,
        }),
        ClientsModule.register([{ name: NATS_CLIENT, customClass: OtelClientNats, options: { servers: ['nats://127.0.0.1:4222'] } }]),
      ],
      controllers: [BaggageController],
    })
    class AppModule {}

    app = (await Test.createTestingModule({ imports: [AppModule] }).compile()).createNestApplication();
    microservice = app.connectMicroservice({ strategy: new OtelServerNats({ servers: ['nats://127.0.0.1:4222'] }) });
    await app.startAllMicroservices();
    await app.listen(0, '127.0.0.1');
    url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  });

  afterAll(async () => {
    await app?.close();
    await microservice?.close();
    await new Promise((resolve) => downstream?.close(resolve));
    await receiver?.close();
  });

  const get = (path: string, baggage: string) => plainRequest(`${url}${path}`, { headers: { baggage } });

  it('HTTP: only allowed keys reach the handler (exact names and user.*)', async () => {
    const response = await get('/baggage/show', 'tenant.id=acme,user.id=u1,secret=s3cr3t,user.roleadmin=x');
    expect(response.json()).toEqual({ 'tenant.id': 'acme', 'user.id': 'u1', 'user.roleadmin': 'x' });
  });

  it('HTTP: maxMembers cuts what is left after the allow-list, in the order sent', async () => {
    const response = await get('/baggage/show', 'user.a=1,user.b=2,tenant.id=t,user.c=3,user.d=4');
    expect(response.json()).toEqual({ 'user.a': '1', 'user.b': '2', 'tenant.id': 't' });
  });

  it('the next hop gets the filtered inbound baggage plus what the app set, never the disallowed members', async () => {
    downstreamHeaders.length = 0;
    await get('/baggage/forward', 'tenant.id=acme,internal.flag=1,password=hunter2');
    expect(downstreamHeaders).toHaveLength(1);
    const sent = String(downstreamHeaders[0]!.baggage).split(',').sort();
    expect(sent).toEqual(['app.step=checkout', 'tenant.id=acme']);
    expect(downstreamHeaders[0]!.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[13]$/);
  });

  it('a channel rule: the NATS server drops all inbound baggage, even members HTTP let in', async () => {
    const response = await get('/baggage/nats', 'tenant.id=acme,user.id=u1');
    expect(response.json()).toEqual({});
  });

  it('the trace itself is not affected by the baggage policy', async () => {
    const parent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    await plainRequest(`${url}/baggage/show`, { headers: { baggage: 'secret=1', traceparent: parent } });
    const [server] = await receiver.waitForSpans((span) => span.kind === 2 && span.traceId === '0af7651916cd43dd8448eb211c80319c');
    expect(server!.parentSpanId).toBe('b7ad6b7169203331');
    expect(server!.name).toBe('GET /baggage/show');
  });
});
