import { afterEach, beforeAll, afterAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { ROOT, startChildApp, type ChildApp } from './support/child-app.js';
import { startOtlpReceiver, type OtlpReceiver } from './support/otlp-receiver.js';

const TRACE_ID = '0af7651916cd43dd8448eb211c80319c';
const PARENT_ID = 'b7ad6b7169203331';
const SERVER = 2;

/**
 * Real processes, real OTLP/HTTP: each test starts a Nest app in a child process that loads
 * otel-nest by its package name, and a receiver in this process that decodes what arrives.
 */
describe('otel-nest as users load it (child processes, OTLP/HTTP to a real receiver)', () => {
  let receiver: OtlpReceiver;
  let child: ChildApp | undefined;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
  });
  afterAll(async () => {
    await receiver?.close();
  });
  afterEach(async () => {
    await child?.stop('SIGKILL');
    child = undefined;
    receiver.spans.length = 0;
  });

  async function request(port: number, path: string, headers: Record<string, string> = {}): Promise<{ id: string; traceId: string }> {
    const response = await fetch(`http://127.0.0.1:${port}${path}`, { headers });
    expect(response.status).toBe(200);
    return (await response.json()) as { id: string; traceId: string };
  }

  it.each([
    ['ESM (import)', 'test/fixtures/app.mjs'],
    ['CommonJS (require)', 'test/fixtures/app.cjs'],
  ])('%s app: SERVER span continues the caller trace and reaches the collector', async (_label, fixture) => {
    child = await startChildApp(fixture, {
      FIXTURE_OTEL_OPTIONS: JSON.stringify({
        serviceName: 'packaging-fixture',
        serviceVersion: '1.2.3',
        exporter: { url: receiver.url },
        batch: { scheduledDelayMillis: 50 },
      }),
    });
    const body = await request(child.port, '/orders/7', { traceparent: `00-${TRACE_ID}-${PARENT_ID}-01` });
    expect(body).toEqual({ id: '7', traceId: TRACE_ID });

    const [span] = await receiver.waitForSpans((s) => s.name === 'GET /orders/:id');
    expect(span).toMatchObject({ traceId: TRACE_ID, parentSpanId: PARENT_ID, kind: SERVER });
    expect(span!.attributes).toMatchObject({ 'http.route': '/orders/:id', 'http.response.status_code': 200 });
    expect(span!.resource).toMatchObject({ 'service.name': 'packaging-fixture', 'service.version': '1.2.3' });
    const post = receiver.requests.at(-1)!;
    expect(post.contentType).toContain('application/json');
    // The startup summary names the exporter endpoint and what is traced.
    expect(child.output()).toContain(`exporter otlp ${receiver.url}`);
    expect(child.output()).toContain('HTTP server (express)');
  });

  it('SIGTERM with enableShutdownHooks(): every span of a finished request is exported before exit', async () => {
    // A one-minute batch delay: nothing is exported unless shutdown flushes.
    child = await startChildApp('test/fixtures/app.mjs', {
      FIXTURE_OTEL_OPTIONS: JSON.stringify({
        serviceName: 'sigterm-fixture',
        exporter: { url: receiver.url },
        batch: { scheduledDelayMillis: 60_000 },
      }),
    });
    const traceIds: string[] = [];
    for (let i = 0; i < 5; i++) {
      traceIds.push((await request(child.port, `/orders/${i}`)).traceId);
    }
    expect(receiver.spans).toHaveLength(0);

    const exit = await child.stop('SIGTERM');
    child = undefined;
    // Nest's shutdown hook closes the app (our flush runs in it) and re-sends SIGTERM: the process
    // dies of the signal, as without tracing. A crash or a failed shutdown (Nest exits with 1) is not that.
    expect(exit).toEqual({ code: null, signal: 'SIGTERM' });
    const servers = receiver.spans.filter((s) => s.kind === SERVER);
    expect(servers.map((s) => s.traceId).sort()).toEqual([...traceIds].sort());
    expect(new Set(servers.map((s) => s.resource['service.name']))).toEqual(new Set(['sigterm-fixture']));
  });

  it('otel-nest/register preload: the SDK comes from OTEL_* variables and OtelModule uses it', async () => {
    child = await startChildApp(
      'test/fixtures/app.mjs',
      {
        OTEL_SERVICE_NAME: 'preloaded',
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url.replace(/\/v1\/traces$/, ''),
        OTEL_BSP_SCHEDULE_DELAY: '50',
        OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=test,team=payments',
        FIXTURE_OTEL_OPTIONS: JSON.stringify({}),
      },
      ['--import', 'otel-nest/register'],
    );
    const body = await request(child.port, '/orders/1');
    const [span] = await receiver.waitForSpans((s) => s.traceId === body.traceId && s.kind === SERVER);
    expect(span!.resource).toMatchObject({
      'service.name': 'preloaded',
      'deployment.environment.name': 'test',
      team: 'payments',
    });
    // One SDK: the module said it shares the preload's instead of registering a second one.
    expect(child.output()).toMatch(/SDK shared with an earlier OtelModule\/otel-nest\/register/);
    expect(child.output()).not.toMatch(/Attempted duplicate registration/);
  });

  it('with @opentelemetry/instrumentation-http also running: one SERVER span, enriched with the route and the captured headers', async () => {
    child = await startChildApp(
      'test/fixtures/app.mjs',
      {
        OTEL_SERVICE_NAME: 'with-instrumentation-http',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: receiver.url,
        OTEL_BSP_SCHEDULE_DELAY: '50',
        FIXTURE_OTEL_OPTIONS: JSON.stringify({ http: { requestHeaders: ['X-Tenant'], responseHeaders: ['Content-Type'] } }),
      },
      ['--import', './test/fixtures/preload-instrumentation-http.mjs'],
    );
    const body = await request(child.port, '/orders/3', {
      traceparent: `00-${TRACE_ID}-${PARENT_ID}-01`,
      'x-tenant': 'acme',
      'x-other': 'not listed',
    });
    expect(body.traceId).toBe(TRACE_ID);
    await receiver.waitForSpans((s) => s.kind === SERVER && s.traceId === TRACE_ID);
    // A duplicate SERVER span, if there were one, ended with the response too. Nest's shutdown
    // (SIGTERM, enableShutdownHooks) flushes every ended span before the process goes, so once the
    // child is gone everything it traced is here: no time to guess. Both endings below mean the
    // shutdown completed (a failed one exits with 1); the 0 is the bug of the next test.
    const exit = await child.stop('SIGTERM');
    child = undefined;
    expect([{ code: null, signal: 'SIGTERM' }, { code: 0, signal: null }]).toContainEqual(exit);
    const servers = receiver.spans.filter((s) => s.kind === SERVER && s.traceId === TRACE_ID);
    expect(servers).toHaveLength(1);
    expect(servers[0]!.scope.name).toBe('@opentelemetry/instrumentation-http');
    expect(servers[0]!.name).toBe('GET /orders/:id');
    expect(servers[0]!.parentSpanId).toBe(PARENT_ID);
    expect(servers[0]!.attributes).toMatchObject({
      'http.route': '/orders/:id',
      'nestjs.controller': 'OrdersController',
      'nestjs.handler': 'find',
      'http.request.header.x-tenant': ['acme'],
      'http.response.header.content-type': [expect.stringMatching(/^application\/json/)],
    });
    expect(servers[0]!.attributes).not.toHaveProperty('http.request.header.x-other');
  });

  /** How the preloaded app of the next test ended, for the one after it. */
  let preloadedExit: { code: number | null; signal: NodeJS.Signals | null } | undefined;

  it('otel-nest/register preload + enableShutdownHooks(): SIGTERM to an idle app ends it cleanly, its spans exported', async () => {
    child = await startChildApp(
      'test/fixtures/app.mjs',
      {
        OTEL_SERVICE_NAME: 'preloaded-sigterm',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: receiver.url,
        OTEL_BSP_SCHEDULE_DELAY: '50',
        FIXTURE_OTEL_OPTIONS: JSON.stringify({}),
      },
      ['--import', 'otel-nest/register'],
    );
    const body = await request(child.port, '/orders/4');
    // Exported: nothing is left in flight, the app is idle when the signal comes.
    await receiver.waitForSpans((s) => s.kind === SERVER && s.traceId === body.traceId);
    preloadedExit = await child.stop('SIGTERM');
    child = undefined;
    // Not a crash, not a failed shutdown (Nest exits with 1); which of the two: see the next test.
    expect([{ code: null, signal: 'SIGTERM' }, { code: 0, signal: null }]).toContainEqual(preloadedExit);
    expect(receiver.spans.filter((s) => s.kind === SERVER && s.traceId === body.traceId)).toHaveLength(1);
  });

  /**
   * With the otel-nest/register preload, Nest's shutdown hook re-sends SIGTERM to a process whose
   * event loop is idle by then; signal handles do not keep the loop alive, so without the preload
   * re-raising it from 'beforeExit' the process would end with 0, not by the signal the parent
   * (Docker, Kubernetes, a shell) expects.
   */
  it('otel-nest/register preload + enableShutdownHooks(): the idle app of the previous test died of SIGTERM', () => {
    expect(preloadedExit).toEqual({ code: null, signal: 'SIGTERM' });
  });

  it.each([
    ['import', ['--input-type=module', '-e', "const root = await import('otel-nest'); const saga = await import('otel-nest/saga'); console.log(JSON.stringify({ root: Object.keys(root), saga: Object.keys(saga) }));"]],
    ['require', ['-e', "console.log(JSON.stringify({ root: Object.keys(require('otel-nest')), saga: Object.keys(require('otel-nest/saga')) }));"]],
  ])('entries (%s): sagas and two-phase commit come from otel-nest/saga, not from the core entry', (_how, args) => {
    const out = execFileSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8' });
    const { root, saga } = JSON.parse(out) as { root: string[]; saga: string[] };
    for (const name of ['SagaOrchestrator', 'SagaStep', 'OtelSagaModule', 'TwoPhaseCommitCoordinator', 'defineSaga']) {
      expect(saga).toContain(name);
      expect(root).not.toContain(name);
    }
    expect(root).toEqual(expect.arrayContaining(['OtelModule', 'Traced', 'TraceService', 'OtelServerNats']));
    // The log-correlation helpers and the request-id bridge are in the core entry.
    expect(root).toEqual(expect.arrayContaining(['OtelConsoleLogger', 'otelPinoMixin', 'otelWinstonFormat', 'otelWinstonMeta', 'getRequestId', 'RequestIdPropagator']));
    // Nothing of the viewer in the core entry either.
    expect(root.filter((name) => /viewer|receiver|devtools/i.test(name))).toEqual([]);
  });
});
