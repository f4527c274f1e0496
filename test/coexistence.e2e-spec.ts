import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startChildApp, type ChildApp } from './support/child-app.js';
import { createPackedProject, type PackedProject } from './support/packed-project.js';
import { receivedSpanTree, startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './support/otlp-receiver.js';

/**
 * otel-nest next to the OpenTelemetry auto-instrumentations, as users combine them: one project
 * (test/fixtures/coexistence) with the packed otel-nest and the real OpenTelemetry packages from
 * the registry, and each setup started in a child process on express and on fastify. Whatever
 * else instruments the application, a request is ONE SERVER span named by its route, in the
 * caller's trace, and each outgoing call is ONE CLIENT span under it.
 */

const PARENT_ID = 'b7ad6b7169203331';
const SERVER = 2;
const CLIENT = 3;

interface Setup {
  readonly name: string;
  readonly app: 'app.cjs' | 'app.mjs';
  readonly nodeArgs: readonly string[];
  /**
   * Whose SDK records the spans: the application's NodeSDK (`foreign`), otel-nest's started by
   * the otel-nest/register preload (`register`), or otel-nest's started by OtelModule (`module`).
   */
  readonly sdk: 'foreign' | 'register' | 'module';
  /** instrumentation-http traces the server and `http.request` (so also HttpService's axios). */
  readonly instrumentationHttp: boolean;
  /** The application's own instrumentation-undici traces fetch. */
  readonly foreignUndici: boolean;
}

const SETUPS: readonly Setup[] = [
  {
    name: 'CommonJS app, NodeSDK + getNodeAutoInstrumentations() preloaded with --require',
    app: 'app.cjs',
    nodeArgs: ['--require', './telemetry.cjs'],
    sdk: 'foreign',
    instrumentationHttp: true,
    foreignUndici: true,
  },
  {
    name: 'ESM app, NodeSDK + getNodeAutoInstrumentations() preloaded with --import (ESM hook by module.register)',
    app: 'app.mjs',
    nodeArgs: ['--import', './telemetry.mjs'],
    sdk: 'foreign',
    instrumentationHttp: true,
    foreignUndici: true,
  },
  {
    name: 'CommonJS app, zero-code --require @opentelemetry/auto-instrumentations-node/register',
    app: 'app.cjs',
    nodeArgs: ['--require', '@opentelemetry/auto-instrumentations-node/register'],
    sdk: 'foreign',
    instrumentationHttp: true,
    foreignUndici: true,
  },
  {
    name: 'ESM app, zero-code --import @opentelemetry/auto-instrumentations-node/register',
    app: 'app.mjs',
    nodeArgs: ['--import', '@opentelemetry/auto-instrumentations-node/register'],
    sdk: 'foreign',
    instrumentationHttp: true,
    foreignUndici: true,
  },
  {
    name: 'ESM app, otel-nest/register + instrumentation-http alone',
    app: 'app.mjs',
    nodeArgs: ['--import', './preload-instrumentation-http.mjs'],
    sdk: 'register',
    instrumentationHttp: true,
    foreignUndici: false,
  },
  {
    name: "CommonJS app, otel-nest's own SDK alone (OtelModule.forRoot with the exporter URL)",
    app: 'app.cjs',
    nodeArgs: [],
    sdk: 'module',
    instrumentationHttp: false,
    foreignUndici: false,
  },
];

/** How the startup summary names each kind of SDK. */
const SDK_DESCRIPTIONS: Record<Setup['sdk'], string> = {
  foreign: "(the application's own SDK)",
  register: '(SDK shared with an earlier OtelModule/otel-nest/register in this process)',
  module: '(SDK started by OtelModule)',
};

/** One call of the application and what it does downstream. */
interface Call {
  readonly path: string;
  readonly route: string;
  readonly downstreamPath: string;
  /** Who makes the CLIENT span: `fetch` (undici) or HttpService (axios over `http.request`). */
  readonly client: 'fetch' | 'HttpService';
}

const CALLS: readonly Call[] = [
  { path: '/orders/7', route: '/orders/:id', downstreamPath: '/stock/7', client: 'fetch' },
  { path: '/orders/7/invoice', route: '/orders/:id/invoice', downstreamPath: '/invoices/7', client: 'HttpService' },
];

/** The service the application calls: answers JSON and keeps the headers of every request. */
async function startDownstream(): Promise<{ server: Server; url: string; received: Array<{ path: string; headers: IncomingHttpHeaders }> }> {
  const received: Array<{ path: string; headers: IncomingHttpHeaders }> = [];
  const server = createServer((request, response) => {
    received.push({ path: request.url ?? '', headers: request.headers });
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ ok: true }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received };
}

function randomHex(bytes: number): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(bytes))).toString('hex');
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('otel-nest with the OpenTelemetry auto-instrumentations (installed project, child processes)', () => {
  let project: PackedProject;
  let receiver: OtlpReceiver;
  let downstream: Awaited<ReturnType<typeof startDownstream>>;
  let child: ChildApp | undefined;

  beforeAll(async () => {
    // One install for every setup: the packed otel-nest and the fixture's registry packages.
    project = createPackedProject('coexistence');
    receiver = await startOtlpReceiver();
    downstream = await startDownstream();
  }, 300_000);
  afterAll(async () => {
    await child?.stop('SIGKILL');
    await receiver?.close();
    await new Promise((resolve) => downstream?.server.close(resolve));
    project?.remove();
  });
  afterEach(async () => {
    await child?.stop('SIGKILL');
    child = undefined;
  });

  describe.each(['express', 'fastify'] as const)('%s', (platform) => {
    // A plain loop, not it.each: vitest shortens object values in titles.
    for (const setup of SETUPS) {
      it(setup.name, async () => {
        // The installed project is the working directory, as when a user runs it: `--require
        // <package>` and `--import <package>` resolve from there.
        child = await startChildApp(
          setup.app,
          {
            FIXTURE_PLATFORM: platform,
            DOWNSTREAM_URL: downstream.url,
            FIXTURE_OTEL_OPTIONS: JSON.stringify(
              setup.sdk === 'module' ? { exporter: { url: receiver.url }, batch: { scheduledDelayMillis: 50 } } : {},
            ),
            NO_COLOR: '1',
            OTEL_SERVICE_NAME: 'coexistence',
            // What the zero-code setup reads; the NodeSDK preloads and otel-nest/register read them too.
            OTEL_TRACES_EXPORTER: 'otlp',
            OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
            OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
            OTEL_METRICS_EXPORTER: 'none',
            OTEL_LOGS_EXPORTER: 'none',
            OTEL_BSP_SCHEDULE_DELAY: '50',
            // No cloud metadata probes at startup.
            OTEL_NODE_RESOURCE_DETECTORS: 'env,host,os,process',
          },
          [...setup.nodeArgs],
          30_000,
          project.dir,
        );
        // Startup spans (if an instrumentation makes any) are exported and forgotten before the calls.
        await sleep(300);

        for (const call of CALLS) {
          receiver.reset();
          downstream.received.length = 0;
          const traceId = randomHex(16);
          const response = await fetch(`http://127.0.0.1:${child.port}${call.path}`, {
            headers: { traceparent: `00-${traceId}-${PARENT_ID}-01` },
          });
          expect(response.status, child.output()).toBe(200);
          expect(((await response.json()) as { traceId?: string }).traceId).toBe(traceId);

          await receiver.waitForSpans((s) => s.kind === SERVER);
          await receiver.waitForSpans((s) => s.kind === CLIENT);
          // Give a duplicate or an orphan, if there were one, time to arrive too.
          await sleep(400);
          const spans = [...receiver.spans];
          const tree = `${setup.name} on ${platform}, ${call.path}:\n${receivedSpanTree(spans)}`;

          // No orphan trace: every span of this request is in the caller's trace.
          expect(spans.filter((s) => s.traceId !== traceId), tree).toEqual([]);

          const servers = spans.filter((s) => s.kind === SERVER);
          expect(servers, tree).toHaveLength(1);
          const server = servers[0]!;
          expect(server, tree).toMatchObject({ name: `GET ${call.route}`, traceId, parentSpanId: PARENT_ID });
          expect(server.attributes, tree).toMatchObject({
            'http.route': call.route,
            'http.response.status_code': 200,
            'nestjs.controller': 'OrdersController',
          });
          expect(server.scope.name, tree).toBe(setup.instrumentationHttp ? '@opentelemetry/instrumentation-http' : 'otel-nest');

          const clients = spans.filter((s) => s.kind === CLIENT);
          expect(clients, tree).toHaveLength(1);
          const client = clients[0]!;
          expect(ancestorIds(client, spans), tree).toContain(server.spanId);
          if (call.client === 'HttpService') {
            expect(client.scope.name, tree).toBe(setup.instrumentationHttp ? '@opentelemetry/instrumentation-http' : 'otel-nest');
          }
          // What went over the wire names that one CLIENT span.
          expect(downstream.received.map((r) => [r.path, r.headers.traceparent])).toEqual([
            [call.downstreamPath, `00-${traceId}-${client.spanId}-01`],
          ]);
        }

        // The startup summary says who traces what.
        const summary = child.output().split('\n').find((line) => line.includes('Tracing service'));
        expect(summary, child.output()).toBeDefined();
        if (setup.instrumentationHttp) {
          expect(summary).toContain(`HTTP server (${platform}, enriching instrumentation-http's SERVER spans)`);
        } else {
          expect(summary).toContain(`HTTP server (${platform})`);
        }
        const byOthers = /already traced by other instrumentations: ([^.]*)\./.exec(summary!)?.[1]?.split(', ') ?? [];
        expect(byOthers.sort()).toEqual(
          [...(setup.foreignUndici ? ['fetch'] : []), ...(setup.instrumentationHttp ? ['HttpService'] : [])].sort(),
        );
        const traced = /; traced: (.*?)(?:; already traced|\.\s*$)/.exec(summary!)?.[1] ?? '';
        expect(traced.includes('fetch')).toBe(!setup.foreignUndici);
        expect(traced.includes('HttpService')).toBe(!setup.instrumentationHttp);
        expect(summary).toContain(SDK_DESCRIPTIONS[setup.sdk]);
      });
    }
  });
});

/** The span ids above `span` in its trace, nearest first, as far as the received spans go. */
function ancestorIds(span: ReceivedSpan, spans: readonly ReceivedSpan[]): string[] {
  const byId = new Map(spans.filter((s) => s.traceId === span.traceId).map((s) => [s.spanId, s]));
  const ids: string[] = [];
  let parent = span.parentSpanId ? byId.get(span.parentSpanId) : undefined;
  while (parent && !ids.includes(parent.spanId)) {
    ids.push(parent.spanId);
    parent = parent.parentSpanId ? byId.get(parent.parentSpanId) : undefined;
  }
  return ids;
}
