import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { Controller, Get, Headers, Inject, Logger, Module, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ClientsModule, Ctx, EventPattern, MessagePattern, NatsContext, Payload, type ClientProxy } from '@nestjs/microservices';
import { trace } from '@opentelemetry/api';
import { firstValueFrom } from 'rxjs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  OtelClientNats,
  OtelConfigError,
  OtelConsoleLogger,
  OtelModule,
  OtelServerNats,
  getRequestId,
  type OtelModuleOptions,
} from '../lib/index.js';
import { plainRequest } from './support/http-request.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './support/otlp-receiver.js';

/**
 * The x-request-id bridge on real apps: a gateway (express) that calls a backend over fetch and
 * over NATS (a request and an event), all exporting to a real OTLP receiver. The id a caller sends
 * is recorded on every SERVER and CONSUMER span, goes out on the HTTP call and on both messages,
 * and is in the log lines next to the trace id; a generated one does the same; hostile values are
 * ignored everywhere.
 */

const NATS_SERVERS = ['nats://127.0.0.1:4222'];
const RUN = `otel-nest-reqid.${randomUUID().slice(0, 8)}`;
const QUOTE = `${RUN}.quote`;
const AUDIT = `${RUN}.audit`;
const NATS_CLIENT = 'NATS_CLIENT';
const ATTRIBUTE = 'nestjs.request_id';
const SERVER = 2;
const CONSUMER = 5;

let receiver: OtlpReceiver;

interface Seen {
  requestId?: string;
  header?: string;
}

const audits = new Map<string, Seen>();

@Controller()
class BackendController {
  private readonly logger = new Logger('BackendController');

  @Get('stock')
  stock(@Headers('x-request-id') header?: string, @Headers('x-correlation-id') correlation?: string): Seen & { correlation?: string } {
    this.logger.log('stock asked');
    return { requestId: getRequestId(), header, correlation };
  }

  @MessagePattern(QUOTE)
  quote(@Ctx() ctx: NatsContext): Seen {
    this.logger.log('quote asked');
    return { requestId: getRequestId(), header: ctx.getHeaders()?.get('x-request-id') || undefined };
  }

  @EventPattern<string>(AUDIT)
  audit(@Payload() data: unknown, @Ctx() ctx: NatsContext): void {
    audits.set((data as { tag: string }).tag, { requestId: getRequestId(), header: ctx.getHeaders()?.get('x-request-id') || undefined });
  }
}

const BACKEND_URL = Symbol('BACKEND_URL');

@Controller()
class GatewayController {
  private readonly logger = new Logger('GatewayController');

  constructor(
    @Inject(NATS_CLIENT) private readonly nats: ClientProxy,
    @Inject(BACKEND_URL) private readonly backend: { url: string },
  ) {}

  @Get('order')
  async order(@Headers('x-tag') tag: string): Promise<{ own?: string; traceId?: string; http: Seen; nats: Seen }> {
    this.logger.log(`order ${tag}`);
    const http = (await (await fetch(`${this.backend.url}/stock`)).json()) as Seen;
    const nats = await firstValueFrom(this.nats.send<Seen>(QUOTE, {}));
    await firstValueFrom(this.nats.emit(AUDIT, { tag }));
    return { own: getRequestId(), traceId: trace.getActiveSpan()?.spanContext().traceId, http, nats };
  }
}

/** OtelConsoleLogger in JSON mode that keeps each record (as OtelConsoleLogger built it) instead of printing it. */
class KeepingLogger extends OtelConsoleLogger {
  readonly lines: string[] = [];

  protected override printAsJson(message: unknown, options: any): void {
    this.lines.push(JSON.stringify(this.getJsonLogObject(message, options)));
  }
}

interface Started {
  gateway: INestApplication;
  backend: INestApplication;
  url: string;
  logs(): Array<Record<string, unknown>>;
  close(): Promise<void>;
}

/** The backend (HTTP + NATS server) and the gateway, both with `requestId`, logging JSON lines into a buffer. */
async function start(requestId: OtelModuleOptions['requestId']): Promise<Started> {
  const options: OtelModuleOptions = { serviceName: 'request-id', exporter: { url: receiver.url }, batch: false, logSummary: false, requestId };
  const logger = new KeepingLogger({ json: true });
  const lines = logger.lines;

  @Module({ imports: [OtelModule.forRoot(options)], controllers: [BackendController] })
  class BackendModule {}
  const backend = await NestFactory.create(BackendModule, { logger });
  backend.connectMicroservice({ strategy: new OtelServerNats({ servers: NATS_SERVERS }) });
  await backend.startAllMicroservices();
  await backend.listen(0, '127.0.0.1');
  const backendRef = { url: (await backend.getUrl()).replace('[::1]', '127.0.0.1') };

  @Module({
    imports: [
      OtelModule.forRoot(options),
      ClientsModule.register([{ name: NATS_CLIENT, customClass: OtelClientNats, options: { servers: NATS_SERVERS } }]),
    ],
    controllers: [GatewayController],
    providers: [{ provide: BACKEND_URL, useValue: backendRef }],
  })
  class GatewayModule {}
  const gateway = await NestFactory.create(GatewayModule, { logger });
  await gateway.listen(0, '127.0.0.1');
  const url = (await gateway.getUrl()).replace('[::1]', '127.0.0.1');
  return {
    gateway,
    backend,
    url,
    logs: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>),
    close: async () => {
      await gateway.close();
      await backend.close();
    },
  };
}

/** GET /order with `headers`; resolves with the answer and every SERVER/CONSUMER span of its trace once all four arrived. */
async function order(started: Started, tag: string, headers: Record<string, string | string[]> = {}) {
  const response = await plainRequest(`${started.url}/order`, { headers: { 'x-tag': tag, ...headers } });
  expect(response.status, response.text).toBe(200);
  const { traceId: ownTrace, ...answer } = response.json<{ traceId: string; own?: string; http: Seen & { correlation?: string }; nats: Seen }>();
  const [root] = await receiver.waitForSpans(
    (span) =>
      span.traceId === ownTrace &&
      span.kind === SERVER &&
      span.name === 'GET /order' &&
      receiver.spans.some((s) => s.traceId === span.traceId && s.name === `process ${QUOTE}`),
  );
  const audit = await receiver.waitForSpans(
    (span) => span.kind === CONSUMER && span.name === `process ${AUDIT}` && span.links.some((link) => link.traceId === root!.traceId),
  );
  await expect.poll(() => audits.get(tag)).toBeDefined();
  const inTrace = receiver.spans.filter((span) => span.traceId === root!.traceId);
  const entries: Record<string, ReceivedSpan> = {
    gateway: root!,
    backend: inTrace.find((span) => span.kind === SERVER && span.name === 'GET /stock')!,
    quote: inTrace.find((span) => span.kind === CONSUMER && span.name === `process ${QUOTE}`)!,
    audit: audit[0]!,
  };
  return { answer, entries, traceId: root!.traceId, audit: audits.get(tag)! };
}

/** The log records of one request: the gateway's `order <tag>` line and the backend lines of its trace. */
function requestLogs(started: Started, traceId: string): Array<Record<string, unknown>> {
  return started.logs().filter((record) => record.trace_id === traceId);
}

beforeAll(async () => {
  receiver = await startOtlpReceiver();
});

afterAll(async () => {
  await receiver?.close();
});

describe('requestId: true', () => {
  let started: Started;
  beforeAll(async () => {
    started = await start(true);
  });
  afterAll(async () => {
    await started?.close();
  });

  it('an incoming x-request-id: on every SERVER and CONSUMER span, on the fetch call and both NATS messages, in the log lines', async () => {
    const id = 'req-7f3a9c21-4e5b';
    const { answer, entries, traceId, audit } = await order(started, 'given', { 'x-request-id': id });
    expect(answer).toEqual({ own: id, http: { requestId: id, header: id }, nats: { requestId: id, header: id } });
    expect(audit).toEqual({ requestId: id, header: id });
    for (const [name, span] of Object.entries(entries)) {
      expect(span?.attributes[ATTRIBUTE], name).toBe(id);
    }
    // The outgoing CLIENT and PRODUCER spans do not repeat it: the trace joins them to it.
    const others = receiver.spans.filter((span) => span.traceId === traceId && span.kind !== SERVER && span.kind !== CONSUMER);
    expect(others.length).toBeGreaterThan(0);
    expect(others.filter((span) => span.attributes[ATTRIBUTE] !== undefined)).toEqual([]);

    const logs = requestLogs(started, traceId);
    expect(logs.map((record) => record.message).sort()).toEqual(['order given', 'quote asked', 'stock asked']);
    expect(logs.every((record) => record.request_id === id && typeof record.span_id === 'string')).toBe(true);
    // Bootstrap lines: neither ids nor a request id.
    const outside = started.logs().filter((record) => record.trace_id === undefined);
    expect(outside.length).toBeGreaterThan(0);
    expect(outside.filter((record) => record.request_id !== undefined)).toEqual([]);
  });

  it('x-correlation-id when there is no x-request-id; sent on as x-request-id', async () => {
    const { answer, entries } = await order(started, 'correlation', { 'x-correlation-id': 'corr-42' });
    expect(answer.own).toBe('corr-42');
    expect(answer.http).toEqual({ requestId: 'corr-42', header: 'corr-42' });
    expect(answer.nats.header).toBe('corr-42');
    expect(entries.gateway!.attributes[ATTRIBUTE]).toBe('corr-42');
  });

  it('none sent, none generated: no attribute, no header, no request_id', async () => {
    const { answer, entries, traceId } = await order(started, 'none');
    expect(answer).toEqual({ http: {}, nats: {} });
    expect(Object.values(entries).map((span) => span.attributes[ATTRIBUTE])).toEqual([undefined, undefined, undefined, undefined]);
    expect(requestLogs(started, traceId).every((record) => !('request_id' in record))).toBe(true);
  });

  const hostile: Array<[string, string | string[]]> = [
    ['a space', 'abc def'],
    ['a comma', 'abc,def'],
    ['repeated', ['first-id', 'second-id']],
    ['overlong', 'x'.repeat(201)],
    ['non-ASCII (latin-1 bytes)', 'caf\u00e9-id'],
    ['empty', ''],
    ['markup', '<script>alert(1)</script>'],
  ];
  it.each(hostile)('a hostile x-request-id (%s) is ignored: not recorded, not sent on, not logged', async (label, value) => {
    const { answer, entries, traceId } = await order(started, `hostile-${label}`, { 'x-request-id': value });
    expect(answer.own).toBeUndefined();
    expect(answer.http.header).toBeUndefined();
    expect(answer.nats.header).toBeUndefined();
    expect(Object.values(entries).every((span) => span.attributes[ATTRIBUTE] === undefined)).toBe(true);
    expect(requestLogs(started, traceId).some((record) => 'request_id' in record)).toBe(false);
  });
});

describe('requestId: { generate: true }', () => {
  let started: Started;
  beforeAll(async () => {
    started = await start({ generate: true });
  });
  afterAll(async () => {
    await started?.close();
  });

  it('a request without one gets a UUID, recorded, sent on and logged like a given one', async () => {
    const { answer, entries, traceId, audit } = await order(started, 'generated');
    const id = answer.own!;
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(answer.http).toEqual({ requestId: id, header: id });
    expect(answer.nats).toEqual({ requestId: id, header: id });
    expect(audit).toEqual({ requestId: id, header: id });
    expect(Object.values(entries).map((span) => span.attributes[ATTRIBUTE])).toEqual([id, id, id, id]);
    expect(requestLogs(started, traceId).every((record) => record.request_id === id)).toBe(true);
  });

  it('a hostile one is replaced by a generated one', async () => {
    const { answer } = await order(started, 'hostile-generated', { 'x-request-id': 'two words' });
    expect(answer.own).toMatch(/^[0-9a-f-]{36}$/);
    expect(answer.http.header).toBe(answer.own);
  });

  it('a valid one is kept', async () => {
    const { answer } = await order(started, 'kept', { 'x-request-id': 'kept-1' });
    expect(answer.own).toBe('kept-1');
  });
});

describe('requestId options', () => {
  let app: INestApplication | undefined;
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  it.each([
    [{ requestId: 'yes' }, /"requestId" must be a boolean or an options object/],
    [{ requestId: { header: 'x request id' } }, /"requestId\.header" must be an HTTP header name/],
    [{ requestId: { alternatives: ['ok', 5] } }, /"requestId\.alternatives\[1\]" must be an HTTP header name/],
    [{ requestId: { generate: 'yes' } }, /"requestId\.generate" must be a boolean/],
    [{ requestId: { attribute: '' } }, /"requestId\.attribute" must be a non-empty string/],
    [{ requestId: { headr: 'x-request-id' } }, /headr.*header/s],
  ])('%j is refused at bootstrap with an OtelConfigError', async (given, message) => {
    @Module({ imports: [OtelModule.forRoot({ logSummary: false, exporter: 'none', ...(given as OtelModuleOptions) })] })
    class BadModule {}
    const attempt = NestFactory.create(BadModule, { logger: false, abortOnError: false });
    await expect(attempt).rejects.toThrow(OtelConfigError);
    await expect(attempt).rejects.toThrow(message);
  });
});
