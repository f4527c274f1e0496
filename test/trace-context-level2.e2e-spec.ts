import 'reflect-metadata';
import { Controller, Get, Inject, Module, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { OtelModule } from '../lib/index.js';
import { plainRequest } from './support/http-request.js';
import { startOtlpReceiver, type OtlpReceiver } from './support/otlp-receiver.js';

/**
 * W3C Trace Context Level 2 end to end: a real Nest app with otel-nest's own SDK exporting OTLP/HTTP
 * to a receiver, a handler that calls `fetch`, and a downstream server that records the headers it
 * got. What arrives downstream and what is exported are checked, not what the propagator returns.
 */

const PARENT_ID = '00f067aa0ba902b7';
const DOWNSTREAM = Symbol('DOWNSTREAM');
const SERVER = 2;
const CLIENT = 3;
const RANDOM = 0x02;
const SAMPLED = 0x01;

@Controller('orders')
class OrdersController {
  constructor(@Inject(DOWNSTREAM) private readonly downstream: { url: string }) {}

  @Get(':id')
  async find(): Promise<{ ok: true }> {
    await (await fetch(`${this.downstream.url}/stock`)).text();
    return { ok: true };
  }
}

describe('W3C Trace Context Level 2 through a real app and fetch', () => {
  let app: INestApplication;
  let baseUrl: string;
  let receiver: OtlpReceiver;
  let downstream: Server;
  let received: IncomingHttpHeaders[];

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    received = [];
    downstream = createServer((req, res) => {
      received.push(req.headers);
      res.end('ok');
    });
    await new Promise<void>((resolve) => downstream.listen(0, '127.0.0.1', resolve));
    const downstreamUrl = `http://127.0.0.1:${(downstream.address() as AddressInfo).port}`;

    @Module({
      imports: [OtelModule.forRoot({ serviceName: 'level2', exporter: { url: receiver.url }, batch: false, logSummary: false })],
      controllers: [OrdersController],
      providers: [{ provide: DOWNSTREAM, useValue: { url: downstreamUrl } }],
    })
    class AppModule {}

    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
    app = moduleRef.createNestApplication();
    await app.listen(0, '127.0.0.1');
    baseUrl = await app.getUrl();
  });

  afterAll(async () => {
    await app?.close();
    await new Promise((resolve) => downstream?.close(resolve));
    await receiver?.close();
  });

  // A new trace id per test: spans of an earlier test may still be arriving.
  let TRACE_ID: string;
  beforeEach(() => {
    receiver.reset();
    received.length = 0;
    TRACE_ID = randomBytes(16).toString('hex');
  });

  /** The spans of `kind` in trace `traceId`. */
  const spansOf = (traceId: string, kind: number) => receiver.waitForSpans((s) => s.traceId === traceId && s.kind === kind);
  const traceIdOf = (traceparent: string | string[] | undefined): string => String(traceparent).split('-')[1]!;

  async function call(headers: Record<string, string>): Promise<IncomingHttpHeaders> {
    const response = await plainRequest(`${baseUrl}/orders/7`, { headers });
    expect(response.status).toBe(200);
    expect(received).toHaveLength(1);
    return received[0]!;
  }

  it('random + sampled (03): the child spans and the outgoing traceparent keep the random flag', async () => {
    const sent = await call({ traceparent: `00-${TRACE_ID}-${PARENT_ID}-03` });
    const [server] = await spansOf(TRACE_ID, SERVER);
    const [client] = await spansOf(TRACE_ID, CLIENT);
    expect(server).toMatchObject({ traceId: TRACE_ID, parentSpanId: PARENT_ID });
    expect(server!.flags & 0xff).toBe(SAMPLED | RANDOM);
    // 0x200: the exporter marks the SERVER span's parent as remote.
    expect(server!.flags & 0x200).toBe(0x200);
    expect(client).toMatchObject({ traceId: TRACE_ID, parentSpanId: server!.spanId });
    expect(client!.flags & 0xff).toBe(SAMPLED | RANDOM);
    expect(sent.traceparent).toBe(`00-${TRACE_ID}-${client!.spanId}-03`);
  });

  it('random, not sampled (02): nothing is exported, and downstream still gets the random flag', async () => {
    const sent = await call({ traceparent: `00-${TRACE_ID}-${PARENT_ID}-02` });
    expect(sent.traceparent).toMatch(new RegExp(`^00-${TRACE_ID}-[0-9a-f]{16}-02$`));
    expect(sent.traceparent).not.toContain(PARENT_ID);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(receiver.spans.filter((span) => span.traceId === TRACE_ID)).toEqual([]);
  });

  it('sampled without the random flag (01): it is not added', async () => {
    const sent = await call({ traceparent: `00-${TRACE_ID}-${PARENT_ID}-01` });
    const [client] = await spansOf(TRACE_ID, CLIENT);
    expect(client!.flags & 0xff).toBe(SAMPLED);
    expect(sent.traceparent).toBe(`00-${TRACE_ID}-${client!.spanId}-01`);
  });

  it('a new root trace (no traceparent) is random: the SDK makes random trace ids', async () => {
    const sent = await call({});
    const [server] = await spansOf(traceIdOf(sent.traceparent), SERVER);
    expect(server!.parentSpanId).toBeUndefined();
    expect(server!.flags & 0xff).toBe(SAMPLED | RANDOM);
    expect(sent.traceparent).toMatch(new RegExp(`^00-${server!.traceId}-[0-9a-f]{16}-03$`));
  });

  it('a future version is continued, and sent on as version 00 with unknown flag bits cleared', async () => {
    const sent = await call({ traceparent: `cc-${TRACE_ID}-${PARENT_ID}-ff-future-fields` });
    expect(sent.traceparent).toMatch(new RegExp(`^00-${TRACE_ID}-[0-9a-f]{16}-03$`));
  });

  it('a valid tracestate is forwarded; one invalid member drops all of it; no empty tracestate header', async () => {
    const traceparent = `00-${TRACE_ID}-${PARENT_ID}-01`;
    expect((await call({ traceparent, tracestate: 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE' })).tracestate).toBe(
      'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE',
    );
    received.length = 0;
    const invalid = await call({ traceparent, tracestate: 'rojo=00f067aa0ba902b7,Bad Key=1' });
    expect(invalid).not.toHaveProperty('tracestate');
    received.length = 0;
    const tooMany = await call({ traceparent, tracestate: [...Array(33).keys()].map((i) => `k${i}=v`).join(',') });
    expect(tooMany).not.toHaveProperty('tracestate');
    expect(tooMany.traceparent).toMatch(new RegExp(`^00-${TRACE_ID}-`));
  });

  it('an invalid traceparent (upper-case hex) starts a new trace, and downstream sees that new trace', async () => {
    const upper = `${TRACE_ID.slice(0, 31)}A`;
    const sent = await call({ traceparent: `00-${upper}-${PARENT_ID}-01` });
    expect(traceIdOf(sent.traceparent)).not.toBe(upper.toLowerCase());
    const [server] = await spansOf(traceIdOf(sent.traceparent), SERVER);
    expect(server!.parentSpanId).toBeUndefined();
  });
});
