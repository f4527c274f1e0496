import 'reflect-metadata';
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Controller, Get, Module, Param, Post, VersioningType, type INestApplication, type INestMicroservice } from '@nestjs/common';
import { EventPattern, MessagePattern, Payload } from '@nestjs/microservices';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { context, ROOT_CONTEXT, trace, TraceFlags } from '@opentelemetry/api';
import { firstValueFrom } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OtelModule, OtelSdkService, type OtelModuleOptions } from '../lib/index.js';
import { OtelClientNats, OtelServerNats } from '../lib/transports/nats/index.js';
import { plainRequest } from './support/http-request.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './support/otlp-receiver.js';

/**
 * The rule sampler (`sampler: { rules }`) on real servers, asserted on what a real OTLP receiver
 * got: dropped entry spans are nowhere, and what they call carries the not-sampled decision on;
 * parent-based rules keep the caller's decision, absolute ones override it; HTTP route-template
 * rules decide before the handler runs (the route is resolved at span start); the decision is the
 * sampled flag of the exported span and of the traceparent sent on.
 */

const SERVER = 2;
const CONSUMER = 5;
const randomTraceId = (): string => randomBytes(16).toString('hex');
const randomSpanId = (): string => randomBytes(8).toString('hex');

/** What a handler saw of its own span. */
interface Seen {
  recording: boolean;
  traceId: string;
  sampled: boolean;
  downstream?: string;
}

function seen(): Seen {
  const span = trace.getActiveSpan();
  const spanContext = span?.spanContext();
  return {
    recording: span?.isRecording() ?? false,
    traceId: spanContext?.traceId ?? '',
    sampled: ((spanContext?.traceFlags ?? 0) & TraceFlags.SAMPLED) === TraceFlags.SAMPLED,
  };
}

/** A plain HTTP server that notes the traceparent of every request. */
async function startDownstream(): Promise<{ url: string; traceparents: string[]; close(): Promise<void> }> {
  const traceparents: string[] = [];
  const server: Server = createServer((req, res) => {
    traceparents.push(String(req.headers.traceparent ?? ''));
    res.end('ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    traceparents,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

let downstreamUrl = '';

/** The trace id and whether the sampled flag is set, of a traceparent (the random flag, 0x02, may be set too). */
function decisionOf(traceparent: string | undefined): { traceId: string; sampled: boolean } {
  const match = /^00-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})$/.exec(traceparent ?? '');
  expect(match, `a valid traceparent, got ${traceparent}`).not.toBeNull();
  return { traceId: match![1]!, sampled: (parseInt(match![2]!, 16) & 0x01) === 0x01 };
}

async function callDownstream(): Promise<string> {
  const before = downstream!.traceparents.length;
  await fetch(downstreamUrl);
  return downstream!.traceparents[before] ?? '';
}
let downstream: Awaited<ReturnType<typeof startDownstream>> | undefined;

@Controller('health')
class HealthController {
  @Get()
  async check(): Promise<Seen> {
    const view = seen();
    return { ...view, downstream: await callDownstream() };
  }
}

@Controller({ path: 'orders', version: '1' })
class OrdersController {
  @Get()
  async list(): Promise<Seen> {
    const view = seen();
    return { ...view, downstream: await callDownstream() };
  }

  @Get(':id')
  findOne(@Param('id') _id: string): Seen {
    return seen();
  }
}

@Controller({ version: '1' })
class PaymentsController {
  @Post('payments')
  pay(): Seen {
    return seen();
  }

  @Post('refunds')
  refund(): Seen {
    return seen();
  }
}

const httpRules = {
  rules: [
    // The template, not a path: it matches only if the route is known when the span starts.
    { protocol: 'http', method: 'GET', route: '/api/v1/orders/:id', sample: 'drop' },
    { route: '/api/v1/payments', sample: 'always', absolute: true },
    { route: '/api/v1/refunds', sample: 'always' },
  ],
} as const satisfies OtelModuleOptions['sampler'];

function spansOfTrace(receiver: OtlpReceiver, traceId: string): ReceivedSpan[] {
  return receiver.spans.filter((span) => span.traceId === traceId);
}

describe.each(['express', 'fastify'] as const)('rule sampler on the HTTP server (%s)', (platform) => {
  let receiver: OtlpReceiver;
  let app: INestApplication;
  let base: string;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    downstream = await startDownstream();
    downstreamUrl = downstream.url;
    @Module({
      imports: [
        OtelModule.forRoot({
          serviceName: `sampling-rules-${platform}`,
          exporter: { url: receiver.url },
          batch: false,
          logSummary: false,
          sampler: httpRules,
        }),
      ],
      controllers: [HealthController, OrdersController, PaymentsController],
    })
    class AppModule {}
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
    app = platform === 'fastify' ? moduleRef.createNestApplication(new FastifyAdapter()) : moduleRef.createNestApplication();
    // Templates as registered: global prefix (health excluded from it) and URI versioning.
    app.setGlobalPrefix('api', { exclude: ['health'] });
    app.enableVersioning({ type: VersioningType.URI });
    await app.listen(0, '127.0.0.1');
    base = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  });

  afterAll(async () => {
    await app?.close();
    await receiver?.close();
    await downstream?.close();
  });

  /**
   * Every span of the requests made so far has been exported once a later sampled request's span
   * has arrived and the SDK has flushed: then what is missing was never recorded.
   */
  async function settle(): Promise<void> {
    const response = await plainRequest(`${base}/api/v1/orders`);
    const { traceId } = response.json<Seen>();
    await receiver.waitForSpans((span) => span.traceId === traceId && span.kind === SERVER);
    await app.get(OtelSdkService).forceFlush();
  }

  it('a dropped health check (a default rule) has no span, and its downstream call carries a not-sampled traceparent', async () => {
    const response = await plainRequest(`${base}/health`);
    expect(response.status).toBe(200);
    const view = response.json<Seen>();
    expect(view.recording).toBe(false);
    expect(view.sampled).toBe(false);
    // The trace goes on, unsampled: same trace id, flags 00.
    expect(decisionOf(view.downstream)).toEqual({ traceId: view.traceId, sampled: false });

    await settle();
    expect(spansOfTrace(receiver, view.traceId)).toEqual([]);
    expect(receiver.spans.filter((span) => span.attributes['url.path'] === '/health')).toEqual([]);
  });

  it('a health check that comes with a sampled parent is recorded: rules are parent-based unless absolute', async () => {
    const traceId = randomTraceId();
    const parentId = randomSpanId();
    const response = await plainRequest(`${base}/health`, { headers: { traceparent: `00-${traceId}-${parentId}-01` } });
    const view = response.json<Seen>();
    expect(view.recording).toBe(true);
    expect(decisionOf(view.downstream)).toEqual({ traceId, sampled: true });
    const [server] = await receiver.waitForSpans((span) => span.traceId === traceId && span.kind === SERVER);
    expect(server!.parentSpanId).toBe(parentId);
    expect(server!.attributes['http.route']).toBe('/health');
  });

  it('an always rule records a request whose caller did not sample it only when the rule is absolute', async () => {
    const payTrace = randomTraceId();
    const payParent = randomSpanId();
    const pay = await plainRequest(`${base}/api/v1/payments`, { method: 'POST', headers: { traceparent: `00-${payTrace}-${payParent}-00` } });
    expect(pay.status).toBe(201);
    expect(pay.json<Seen>()).toMatchObject({ recording: true, sampled: true, traceId: payTrace });

    const refundTrace = randomTraceId();
    const refund = await plainRequest(`${base}/api/v1/refunds`, { method: 'POST', headers: { traceparent: `00-${refundTrace}-${randomSpanId()}-00` } });
    expect(refund.status).toBe(201);
    expect(refund.json<Seen>()).toMatchObject({ recording: false, sampled: false, traceId: refundTrace });

    const [payment] = await receiver.waitForSpans((span) => span.traceId === payTrace && span.kind === SERVER);
    // Still the caller's trace and parent: absolute changes the decision, not the trace.
    expect(payment!.parentSpanId).toBe(payParent);
    expect(payment!.name).toBe('POST /api/v1/payments');
    expect(payment!.flags & 0x01).toBe(0x01);
    await settle();
    expect(spansOfTrace(receiver, refundTrace)).toEqual([]);
  });

  it('a route-template rule (/api/v1/orders/:id) decides /api/v1/orders/42 when its span starts, before the handler', async () => {
    const response = await plainRequest(`${base}/api/v1/orders/42`);
    expect(response.status).toBe(200);
    const view = response.json<Seen>();
    // The handler already ran under the dropped span: the decision came first.
    expect(view).toMatchObject({ recording: false, sampled: false });
    await settle();
    expect(spansOfTrace(receiver, view.traceId)).toEqual([]);
    expect(receiver.spans.filter((span) => span.attributes['url.path'] === '/api/v1/orders/42')).toEqual([]);
  });

  it('a sampled request shows the decision: the sampled flag on its spans and on the traceparent it sends on', async () => {
    const response = await plainRequest(`${base}/api/v1/orders`);
    const view = response.json<Seen>();
    expect(view).toMatchObject({ recording: true, sampled: true });
    expect(decisionOf(view.downstream)).toEqual({ traceId: view.traceId, sampled: true });
    const spans = await receiver.waitForSpans(
      (span) => span.traceId === view.traceId && (span.kind === SERVER || span.attributes['url.full'] === downstreamUrl),
    );
    await app.get(OtelSdkService).forceFlush();
    const server = spansOfTrace(receiver, view.traceId).find((span) => span.kind === SERVER)!;
    expect(server.name).toBe('GET /api/v1/orders');
    expect(server.attributes['http.route']).toBe('/api/v1/orders');
    for (const span of spans) {
      expect(span.flags & 0x01).toBe(0x01);
    }
  });
});

const NATS_SERVERS = ['nats://127.0.0.1:4222'];
const RUN = `otel-nest-sampling.${randomUUID().slice(0, 8)}`;
const SUBJECT = {
  tick: `${RUN}.noise.tick`,
  ping: `${RUN}.noise.ping`,
  audit: `${RUN}.audit.check`,
  charge: `${RUN}.billing.charge`,
  quote: `${RUN}.billing.quote`,
  order: `${RUN}.orders.get`,
};

/** What the event handlers saw, by subject. */
const events = new Map<string, Seen>();
const eventWaiters = new Map<string, (view: Seen) => void>();
function eventSeen(subject: string): Promise<Seen> {
  const view = events.get(subject);
  return view ? Promise.resolve(view) : new Promise((resolve) => eventWaiters.set(subject, resolve));
}

@Controller()
class MessagesController {
  @EventPattern(SUBJECT.tick)
  tick(@Payload() _data: unknown): void {
    const view = seen();
    events.set(SUBJECT.tick, view);
    eventWaiters.get(SUBJECT.tick)?.(view);
  }

  @MessagePattern(SUBJECT.ping)
  ping(): Seen {
    return seen();
  }

  @MessagePattern(SUBJECT.audit)
  audit(): Seen {
    return seen();
  }

  @MessagePattern(SUBJECT.charge)
  charge(): Seen {
    return seen();
  }

  @MessagePattern(SUBJECT.quote)
  quote(): Seen {
    return seen();
  }

  @MessagePattern(SUBJECT.order)
  order(): Seen {
    return seen();
  }
}

describe('rule sampler on a broker transport (NATS)', () => {
  let receiver: OtlpReceiver;
  let service: INestMicroservice;
  let client: OtelClientNats;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    @Module({
      imports: [
        OtelModule.forRoot({
          serviceName: 'sampling-rules-nats',
          exporter: { url: receiver.url },
          batch: false,
          logSummary: false,
          sampler: {
            rules: [
              { protocol: 'nats', pattern: `${RUN}.noise.*`, sample: 'drop' },
              { protocol: 'nats', pattern: `${RUN}.audit.*`, sample: 'drop', absolute: true },
              { protocol: 'nats', pattern: SUBJECT.charge, sample: 'always', absolute: true },
              { protocol: 'nats', pattern: SUBJECT.quote, sample: 'always' },
            ],
          },
        }),
      ],
      controllers: [MessagesController],
    })
    class ServiceModule {}
    const server = new OtelServerNats({ servers: NATS_SERVERS });
    service = (await Test.createTestingModule({ imports: [ServiceModule] }).compile()).createNestMicroservice({ strategy: server });
    await service.listen();
    await server.unwrap<{ flush(): Promise<void> }>().flush();
    client = new OtelClientNats({ servers: NATS_SERVERS });
    await client.connect();
  });

  afterAll(async () => {
    await client?.close();
    await service?.close();
    await receiver?.close();
  });

  const send = (subject: string): Promise<Seen> => firstValueFrom(client.send<Seen>(subject, {}));

  /** Under an unsampled remote parent: what a caller that did not sample would send. */
  function underUnsampledParent<T>(fn: () => Promise<T>): { traceId: string; result: Promise<T> } {
    const traceId = randomTraceId();
    const parent = trace.setSpanContext(ROOT_CONTEXT, { traceId, spanId: randomSpanId(), traceFlags: TraceFlags.NONE, isRemote: true });
    return { traceId, result: context.with(parent, fn) };
  }

  /** A later sampled message's CONSUMER span has arrived and the SDK has flushed. */
  async function settle(): Promise<void> {
    const view = await send(SUBJECT.order);
    await receiver.waitForSpans((span) => span.traceId === view.traceId && span.kind === CONSUMER);
    await service.get(OtelSdkService).forceFlush();
  }

  it('a dropped event (a new trace under the link policy) has no CONSUMER span; its producer span is kept', async () => {
    client.emit(SUBJECT.tick, {});
    const view = await eventSeen(SUBJECT.tick);
    expect(view).toMatchObject({ recording: false, sampled: false });
    const [producer] = await receiver.waitForSpans((span) => span.name === `send ${SUBJECT.tick}`);
    expect(producer!.flags & 0x01).toBe(0x01);
    await settle();
    expect(receiver.spans.filter((span) => span.kind === CONSUMER && span.attributes['nestjs.pattern'] === SUBJECT.tick)).toEqual([]);
    expect(spansOfTrace(receiver, view.traceId)).toEqual([]);
  });

  it('a drop rule keeps a message whose sampled producer is its parent; an absolute one drops it', async () => {
    const ping = await send(SUBJECT.ping);
    expect(ping).toMatchObject({ recording: true, sampled: true });
    const [consumer] = await receiver.waitForSpans((span) => span.traceId === ping.traceId && span.kind === CONSUMER);
    expect(consumer!.name).toBe(`process ${SUBJECT.ping}`);
    expect(consumer!.flags & 0x01).toBe(0x01);

    const audit = await send(SUBJECT.audit);
    expect(audit).toMatchObject({ recording: false, sampled: false });
    await settle();
    // The producer span of the same trace was sampled; the consumer dropped its part.
    const auditTrace = spansOfTrace(receiver, audit.traceId);
    expect(auditTrace.map((span) => span.name)).toEqual([`send ${SUBJECT.audit}`]);
  });

  it('an always rule records a message sent under an unsampled parent only when absolute', async () => {
    const charge = underUnsampledParent(() => send(SUBJECT.charge));
    expect(await charge.result).toMatchObject({ recording: true, sampled: true, traceId: charge.traceId });
    const [consumer] = await receiver.waitForSpans((span) => span.traceId === charge.traceId && span.kind === CONSUMER);
    expect(consumer!.name).toBe(`process ${SUBJECT.charge}`);
    // Its parent is the producer's span, which the unsampled caller did not record.
    expect(consumer!.parentSpanId).toMatch(/^[0-9a-f]{16}$/);
    expect(spansOfTrace(receiver, charge.traceId).map((span) => span.kind)).toEqual([CONSUMER]);

    const quote = underUnsampledParent(() => send(SUBJECT.quote));
    expect(await quote.result).toMatchObject({ recording: false, sampled: false, traceId: quote.traceId });
    await settle();
    expect(spansOfTrace(receiver, quote.traceId)).toEqual([]);
  });
});
