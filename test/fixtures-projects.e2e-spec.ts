import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { stripVTControlCharacters } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startChildApp, type ChildApp } from './support/child-app.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './support/otlp-receiver.js';
import { createPackedProject, type PackedProject } from './support/packed-project.js';

/**
 * otel-nest in the two kinds of projects people have, installed as they install it (the packed
 * tarball plus the fixture's real dependencies, in a fresh directory), built and tested with the
 * project's own tools:
 *   test/fixtures/nest11-cjs-jest     `nest new` for Nest 11: CommonJS, moduleResolution node10, Jest
 *   test/fixtures/nest12-esm-vitest   Nest 12 ES modules: nodenext, Vitest, built with tsc
 * Every tool runs on this Node (process.execPath) through its JS entry point, never a PATH lookup:
 * CI runs this file on several Node versions.
 */

const INTERNAL = 1;
const SERVER = 2;

const INSTALL_TIMEOUT_MS = 300_000;
const STEP_TIMEOUT_MS = 180_000;

/** Durations of the steps, printed once at the end (installs dominate this file's runtime). */
const timings: string[] = [];

async function timed<T>(label: string, step: () => T | Promise<T>): Promise<T> {
  const started = performance.now();
  try {
    return await step();
  } finally {
    timings.push(`${label}: ${((performance.now() - started) / 1000).toFixed(1)} s`);
  }
}

afterAll(() => {
  if (timings.length > 0) {
    console.log(`fixture projects, step durations:\n  ${timings.join('\n  ')}`);
  }
});

/**
 * `node <args>` in the project, resolved with its combined output (ANSI colours removed); rejects
 * with that output when it exits non-zero. The outer Vitest's own variables are not passed on, so
 * that the project's Vitest starts as it would in a terminal.
 */
function runNode(project: PackedProject, args: string[], timeoutMs = STEP_TIMEOUT_MS): Promise<string> {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' };
  for (const key of Object.keys(env)) {
    if (key.startsWith('VITEST')) {
      delete env[key];
    }
  }
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: project.dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const text = stripVTControlCharacters(output);
      if (code === 0) {
        resolve(text);
      } else {
        reject(new Error(`node ${args.join(' ')} in ${project.dir} ended with ${signal ?? `exit code ${code}`}:\n${text}`));
      }
    });
  });
}

/** A caller's span, as the `traceparent` it sends: a new trace per test, so that no test sees another's spans. */
function newCaller(): { traceId: string; spanId: string; traceparent: string } {
  const traceId = randomBytes(16).toString('hex');
  const spanId = randomBytes(8).toString('hex');
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` };
}

/** Memoizes a step that later tests depend on (e.g. the build), so that each test can also run alone. */
function once<T>(step: () => Promise<T>): () => Promise<T> {
  let result: Promise<T> | undefined;
  return () => (result ??= step());
}

/** Starts a script of the project (LISTENING <port>), with its output uncoloured. */
function startProjectApp(
  project: PackedProject,
  script: string,
  env: Record<string, string>,
  nodeArgs: string[] = [],
): Promise<ChildApp> {
  return startChildApp(join(project.dir, script), { NO_COLOR: '1', PORT: '0', ...env }, nodeArgs, 20_000, project.dir);
}

async function getJson(port: number, path: string, headers: Record<string, string> = {}): Promise<Record<string, unknown>> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, { headers });
  expect(response.status).toBe(200);
  return (await response.json()) as Record<string, unknown>;
}

/** The one received span with this name in this trace (waits for it). */
async function receivedSpan(receiver: OtlpReceiver, name: string, traceId: string): Promise<ReceivedSpan> {
  const found = await receiver.waitForSpans((span) => span.name === name && span.traceId === traceId);
  // Let a duplicate, if there were one, arrive in the next export too.
  await new Promise((resolve) => setTimeout(resolve, 150));
  const all = receiver.spans.filter((span) => span.name === name && span.traceId === traceId);
  expect(all, `exactly one ${name} span in trace ${traceId}`).toHaveLength(1);
  return found[0]!;
}

/** How often the startup summary of OtelModule was logged. */
function summaryLines(output: string): string[] {
  return output.split('\n').filter((line) => /\[OtelModule\] otel-nest: Tracing service "/.test(line));
}

/**
 * The production build started as users start it (`node dist/main.js`, options from the
 * environment) sends a SERVER span that continues the caller's traceparent, with the @Traced
 * span as its child, to a real OTLP/HTTP receiver.
 */
async function expectProductionTrace(project: PackedProject, receiver: OtlpReceiver, serviceName: string): Promise<void> {
  const app = await startProjectApp(project, 'dist/main.js', {
    OTLP_URL: receiver.url,
    SERVICE_NAME: serviceName,
    OTEL_BSP_SCHEDULE_DELAY: '50',
  });
  try {
    const caller = newCaller();
    const body = await getJson(app.port, '/orders/42', { traceparent: caller.traceparent });
    expect(body).toEqual({ id: '42', status: 'shipped', traceId: caller.traceId });

    const server = await receivedSpan(receiver, 'GET /orders/:id', caller.traceId);
    expect(server).toMatchObject({ kind: SERVER, parentSpanId: caller.spanId, service: serviceName });
    expect(server.attributes).toMatchObject({
      'http.request.method': 'GET',
      'http.route': '/orders/:id',
      'http.response.status_code': 200,
    });
    const child = await receivedSpan(receiver, 'OrdersService.find', caller.traceId);
    expect(child).toMatchObject({ kind: INTERNAL, parentSpanId: server.spanId, service: serviceName });

    const summary = summaryLines(app.output());
    expect(summary).toHaveLength(1);
    expect(summary[0]).toContain(`exporter otlp ${receiver.url}`);
  } finally {
    await app.stop('SIGKILL');
  }
}

/**
 * No peer-dependency problem: the install printed no conflict, `npm ls --all` (which exits
 * non-zero on a missing or invalid dependency) passes, and one @opentelemetry/api 1.10 serves
 * the project and otel-nest.
 */
function expectCleanInstall(project: PackedProject): void {
  expect(project.installOutput).not.toMatch(/ERESOLVE|overriding peer dependency|conflicting peer dependency/i);
  project.npm(['ls', '--all']);
  const tree = JSON.parse(project.npm(['ls', '@opentelemetry/api', '--all', '--json'])) as LsNode;
  const versions = new Set<string>();
  const collect = (node: LsNode): void => {
    for (const [name, dependency] of Object.entries(node.dependencies ?? {})) {
      if (name === '@opentelemetry/api' && dependency.version) {
        versions.add(dependency.version);
      }
      collect(dependency);
    }
  };
  collect(tree);
  expect([...versions]).toHaveLength(1);
  expect([...versions][0]).toMatch(/^1\.10\./);
}

interface LsNode {
  version?: string;
  dependencies?: Record<string, LsNode>;
}

interface MixedReport {
  cjsEntry: string;
  esmEntry: string;
  twoCopies: boolean;
  sameSdkState: boolean;
  sdkHolders: number;
  cjsProviderIsSdk: boolean;
  esmProviderIsSdk: boolean;
}

function mixedReport(output: string): MixedReport {
  const line = /^MIXED (.*)$/m.exec(output);
  expect(line, `mixed.cjs printed no MIXED line:\n${output}`).not.toBeNull();
  return JSON.parse(line![1]!) as MixedReport;
}

describe('a `nest new` project for Nest 11: CommonJS, moduleResolution node10, Jest', () => {
  let project: PackedProject;
  let receiver: OtlpReceiver;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    project = await timed('nest11-cjs-jest: npm install', () => createPackedProject('nest11-cjs-jest'));
  }, INSTALL_TIMEOUT_MS);

  afterAll(async () => {
    await receiver?.close();
    project?.remove();
  });

  const build = once(() =>
    timed('nest11-cjs-jest: nest build', () => runNode(project, ['node_modules/@nestjs/cli/bin/nest.js', 'build'])),
  );

  it('installs with no peer-dependency problem and @opentelemetry/api 1.10', () => {
    expectCleanInstall(project);
  });

  it('typechecks: `tsc --noEmit` finds the types of otel-nest and otel-nest/testing (main, types, typesVersions)', async () => {
    await timed('nest11-cjs-jest: tsc --noEmit', () =>
      runNode(project, ['node_modules/typescript/bin/tsc', '--noEmit', '-p', 'tsconfig.json']),
    );
  }, STEP_TIMEOUT_MS);

  it('builds with `nest build`', async () => {
    await build();
    expect(existsSync(join(project.dir, 'dist', 'main.js'))).toBe(true);
    expect(existsSync(join(project.dir, 'dist', 'orders.spec.js'))).toBe(false);
  }, STEP_TIMEOUT_MS);

  it("passes its Jest spec, which asserts the recorded spans (Jest's default config from `nest new`)", async () => {
    const output = await timed('nest11-cjs-jest: jest', () => runNode(project, ['node_modules/jest/bin/jest.js']));
    expect(output).toMatch(/Tests:\s+2 passed, 2 total/);
  }, STEP_TIMEOUT_MS);

  it('node dist/main.js: the exported SERVER span continues traceparent, the @Traced span is its child', async () => {
    await build();
    await timed('nest11-cjs-jest: dist/main.js request and export', () =>
      expectProductionTrace(project, receiver, 'orders-nest11'),
    );
  }, STEP_TIMEOUT_MS);

  describe('one process, both formats: the CommonJS app require()s otel-nest, an ES module in it imports otel-nest', () => {
    async function expectOneTrace(app: ChildApp, serviceName: string): Promise<void> {
      // GET /stock/:id: SERVER span from the CommonJS copy, StockService spans from the ESM copy.
      const caller = newCaller();
      const body = await getJson(app.port, '/stock/9', { traceparent: caller.traceparent });
      expect(body).toEqual({ id: '9', reserved: true, traceId: caller.traceId });
      const server = await receivedSpan(receiver, 'GET /stock/:id', caller.traceId);
      expect(server).toMatchObject({ kind: SERVER, parentSpanId: caller.spanId });
      expect(server.attributes['http.route']).toBe('/stock/:id');
      const check = await receivedSpan(receiver, 'StockService.check', caller.traceId);
      expect(check).toMatchObject({ kind: INTERNAL, parentSpanId: server.spanId });
      const reserve = await receivedSpan(receiver, 'stock.reserve', caller.traceId);
      expect(reserve.parentSpanId).toBe(check.spanId);

      // And a request that only the CommonJS copy handles, in its own trace.
      const orders = await getJson(app.port, '/orders/3');
      const traceId = orders.traceId as string;
      const ordersServer = await receivedSpan(receiver, 'GET /orders/:id', traceId);
      expect((await receivedSpan(receiver, 'OrdersService.find', traceId)).parentSpanId).toBe(ordersServer.spanId);

      // One provider: every span reached the one exporter, with one and the same resource.
      const spans = [server, check, reserve, ordersServer];
      for (const span of spans) {
        expect(span.resource).toEqual(server.resource);
      }
      expect(server.resource['service.name']).toBe(serviceName);
    }

    it('spans of both copies land in one trace through one provider; one summary line; one SDK state', async () => {
      await build();
      const app = await startProjectApp(project, 'mixed.cjs', {
        OTLP_URL: receiver.url,
        SERVICE_NAME: 'orders-mixed',
        OTEL_BSP_SCHEDULE_DELAY: '50',
      });
      try {
        const report = mixedReport(app.output());
        // Both builds really are loaded: otherwise this test would prove nothing.
        expect(report.cjsEntry.replaceAll('\\', '/')).toMatch(/node_modules\/otel-nest\/dist\/cjs\/index\.js$/);
        expect(report.esmEntry).toMatch(/node_modules\/otel-nest\/dist\/esm\/index\.js$/);
        expect(report.twoCopies).toBe(true);
        expect(report).toMatchObject({ sameSdkState: true, sdkHolders: 1, cjsProviderIsSdk: true, esmProviderIsSdk: true });

        await expectOneTrace(app, 'orders-mixed');
        const summary = summaryLines(app.output());
        expect(summary).toHaveLength(1);
        expect(summary[0]).toContain('(SDK started by OtelModule)');
      } finally {
        await app.stop('SIGKILL');
      }
    }, STEP_TIMEOUT_MS);

    it('with `--import otel-nest/register` (ESM build) the CommonJS OtelModule joins that SDK: one state, two holders', async () => {
      await build();
      const app = await startProjectApp(
        project,
        'mixed.cjs',
        {
          OTEL_SERVICE_NAME: 'orders-preloaded',
          OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: receiver.url,
          OTEL_BSP_SCHEDULE_DELAY: '50',
          // The same options given to OtelModule.forRoot: nothing to warn about.
          SERVICE_NAME: 'orders-preloaded',
          OTLP_URL: receiver.url,
        },
        ['--import', 'otel-nest/register'],
      );
      try {
        const report = mixedReport(app.output());
        expect(report).toMatchObject({ twoCopies: true, sameSdkState: true, cjsProviderIsSdk: true, esmProviderIsSdk: true });
        // The preload's share and the module's share of one SDK state.
        expect(report.sdkHolders).toBe(2);

        await expectOneTrace(app, 'orders-preloaded');
        const summary = summaryLines(app.output());
        expect(summary).toHaveLength(1);
        expect(summary[0]).toContain('(SDK shared with an earlier OtelModule/otel-nest/register in this process)');
        expect(app.output()).not.toMatch(/WARN.*\[OtelModule\]/);
      } finally {
        await app.stop('SIGKILL');
      }
    }, STEP_TIMEOUT_MS);
  });
});

describe('a Nest 12 ES module project: nodenext, Vitest, built with tsc', () => {
  let project: PackedProject;
  let receiver: OtlpReceiver;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    project = await timed('nest12-esm-vitest: npm install', () => createPackedProject('nest12-esm-vitest'));
  }, INSTALL_TIMEOUT_MS);

  afterAll(async () => {
    await receiver?.close();
    project?.remove();
  });

  const build = once(() =>
    timed('nest12-esm-vitest: tsc -p tsconfig.build.json', () =>
      runNode(project, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json']),
    ),
  );

  it('installs with no peer-dependency problem and @opentelemetry/api 1.10', () => {
    expectCleanInstall(project);
  });

  it('typechecks the whole project, specs included (`tsc --noEmit`)', async () => {
    await timed('nest12-esm-vitest: tsc --noEmit', () =>
      runNode(project, ['node_modules/typescript/bin/tsc', '--noEmit', '-p', 'tsconfig.json']),
    );
  }, STEP_TIMEOUT_MS);

  it('builds with tsc', async () => {
    await build();
    expect(existsSync(join(project.dir, 'dist', 'main.js'))).toBe(true);
  }, STEP_TIMEOUT_MS);

  it('passes its Vitest spec, which asserts the recorded spans', async () => {
    const output = await timed('nest12-esm-vitest: vitest run', () =>
      runNode(project, ['node_modules/vitest/vitest.mjs', 'run']),
    );
    expect(output).toMatch(/Tests\s+2 passed \(2\)/);
  }, STEP_TIMEOUT_MS);

  it('node dist/main.js: the exported SERVER span continues traceparent, the @Traced span is its child', async () => {
    await build();
    await timed('nest12-esm-vitest: dist/main.js request and export', () =>
      expectProductionTrace(project, receiver, 'orders-nest12'),
    );
  }, STEP_TIMEOUT_MS);
});
