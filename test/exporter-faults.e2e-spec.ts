import 'reflect-metadata';
import { Agent, request as httpRequest } from 'node:http';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Controller, Get, Module, Query, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { diag, DiagLogLevel, TraceFlags, type DiagLogger } from '@opentelemetry/api';
import type { ReadableSpan, SpanProcessor } from '@opentelemetry/sdk-trace';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { OtelModule, TraceService, type OtelModuleOptions } from '../lib/index.js';
import { CappedBatchSpanProcessor } from '../lib/sdk/export-health.js';
import { globalTracerProvider } from '../lib/sdk/sdk-factory.js';
import { currentExportHealth, FLUSH_TIMEOUT_MS } from '../lib/sdk/sdk-handle.js';
import { resetDiagLimited } from '../lib/utils/diag-limited.js';
import { startChildApp, type ChildApp } from './support/child-app.js';
import { startFaultyCollector, type CollectorMode, type FaultyCollector } from './support/faulty-collector.js';

/**
 * What a traced application does when its collector fails: refuses connections, hangs, answers
 * slowly, answers 5xx or 429, then comes back. Real HTTP servers on 127.0.0.1, the real SDK 3
 * BatchSpanProcessor and OTLP/HTTP exporter. Every figure measured is printed (FIGURES ...), for
 * the README's "Failure behaviour" section.
 */

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Spans per request: the SERVER span and its `step` children. */
const STEPS = 4;
const MAX_QUEUE = 400;
const BATCH = 100;
/** Requests per latency sample. */
const SAMPLE = 150;
/** Requests while the memory is watched: 2500 spans, all dropped or failed. */
const LOAD = 500;
/** Unique per span, so that spans kept in memory would show in the heap. */
const PAYLOAD = 'p'.repeat(2048);

@Controller()
class WorkController {
  private counter = 0;
  constructor(private readonly traces: TraceService) {}

  @Get('work')
  work(@Query('spans') spans?: string): { traceId?: string } {
    const steps = spans === undefined ? STEPS : Number(spans);
    for (let i = 0; i < steps; i++) {
      this.traces.withSpan('step', (span) => span.setAttribute('payload', `${PAYLOAD}${this.counter++}`));
    }
    return { traceId: this.traces.getTraceId() };
  }
}

/** Counts every sampled span that ends: what the export pipeline was given. */
class EndedSpans implements SpanProcessor {
  count = 0;
  onStart(): void {}
  onEnd(span: ReadableSpan): void {
    if ((span.spanContext().traceFlags & TraceFlags.SAMPLED) !== 0) {
      this.count++;
    }
  }
  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

interface DiagLine {
  level: 'error' | 'warn' | 'info';
  text: string;
}

const diagLines: DiagLine[] = [];
const capture = (level: DiagLine['level']) => (message: string, ...args: unknown[]) =>
  diagLines.push({ level, text: [message, ...args.map((a) => (a instanceof Error ? a.message : String(a)))].join(' ') });
const capturingLogger: DiagLogger = {
  error: capture('error'),
  warn: capture('warn'),
  info: capture('info'),
  debug: () => undefined,
  verbose: () => undefined,
};

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown): void => {
  unhandled.push(reason);
};

async function startApp(options: OtelModuleOptions): Promise<{ app: INestApplication; url: string }> {
  @Module({ imports: [OtelModule.forRoot(options)], controllers: [WorkController] })
  class AppModule {}
  const app = await NestFactory.create(AppModule, { logger: ['error', 'warn'] });
  await app.listen(0, '127.0.0.1');
  return { app, url: `http://127.0.0.1:${new URL(await app.getUrl()).port}` };
}

const agent = new Agent({ keepAlive: true, maxSockets: 1 });

/** GET over a kept-alive `node:http` connection (not traced by otel-nest); resolves with the time taken. */
function get(url: string): Promise<{ ms: number; body: string }> {
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        if (res.statusCode !== 200) {
          reject(new Error(`GET ${url}: ${res.statusCode}`));
          return;
        }
        resolve({ ms: Number(process.hrtime.bigint() - started) / 1e6, body: Buffer.concat(chunks).toString() });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

interface Latency {
  p50: number;
  p99: number;
  max: number;
}

async function measure(url: string, requests: number, each?: () => void): Promise<Latency> {
  const times: number[] = [];
  for (let i = 0; i < requests; i++) {
    times.push((await get(`${url}/work`)).ms);
    each?.();
  }
  times.sort((a, b) => a - b);
  const at = (q: number): number => times[Math.min(times.length - 1, Math.ceil(q * times.length) - 1)]!;
  return { p50: round(at(0.5)), p99: round(at(0.99)), max: round(times.at(-1)!) };
}

function round(value: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

function heapAfterGc(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

/** The SDK's own queue length, read from its BatchSpanProcessor (sdk-trace 3 internals). */
function sdkQueueLength(): number {
  const provider = globalTracerProvider() as unknown as { _activeSpanProcessor: { _spanProcessors: SpanProcessor[] } };
  const processor = provider._activeSpanProcessor._spanProcessors.find((p) => p instanceof CappedBatchSpanProcessor);
  return (processor as unknown as { _finishedSpans: unknown[] })._finishedSpans.length;
}

function health() {
  const snapshot = currentExportHealth();
  if (snapshot === undefined) {
    throw new Error('no otel-nest SDK is running');
  }
  return snapshot;
}

async function until(condition: () => boolean, what: string, timeoutMs = 10_000, meanwhile?: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let next = 0;
  while (!condition()) {
    if (meanwhile && Date.now() >= next) {
      next = Date.now() + 100;
      await meanwhile();
      continue;
    }
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}; diag lines:\n${diagLines.map((l) => `${l.level} ${l.text}`).join('\n')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Our lines: every otel-nest diag line starts with the message prefix. */
function ours(pattern: RegExp): DiagLine[] {
  return diagLines.filter((line) => line.text.startsWith('otel-nest:') && pattern.test(line.text));
}

const FIGURES: Record<string, unknown> = {};
afterAll(() => {
  agent.destroy();
  console.log(`FIGURES all ${JSON.stringify(FIGURES)}`);
});

function report(key: string, value: unknown): void {
  FIGURES[key] = value;
  console.log(`FIGURES ${key} ${JSON.stringify(value)}`);
}

describe('exporter faults: a traced app while its collector fails (in-process)', () => {
  let collector: FaultyCollector;
  let app: INestApplication | undefined;
  let url: string;
  const ended = new EndedSpans();

  beforeAll(async () => {
    process.on('unhandledRejection', onUnhandled);
    diag.setLogger(capturingLogger, DiagLogLevel.INFO);
    collector = await startFaultyCollector();
    ({ app, url } = await startApp({
      serviceName: 'exporter-faults',
      logSummary: false,
      httpClient: false,
      // Short timeouts so that an episode takes a second: the exporter gives up after 800 ms.
      exporter: { url: collector.url, timeoutMillis: 800 },
      batch: { maxQueueSize: MAX_QUEUE, maxExportBatchSize: BATCH, scheduledDelayMillis: 20, exportTimeoutMillis: 3000 },
      spanProcessors: [ended],
    }));
    // Warm-up: JIT, connection, first exports.
    await measure(url, 300);
    await until(() => health().queued === 0 && health().inFlight === 0, 'the warm-up spans to be exported');
  });

  afterAll(async () => {
    await app?.close();
    await collector?.close();
    diag.disable();
    process.off('unhandledRejection', onUnhandled);
  });

  afterEach(() => {
    expect(unhandled).toEqual([]);
  });

  /**
   * One outage episode: a healthy baseline, the fault (latency, queue, heap, the start line), the
   * recovery (new spans arrive, the resume line), then the books: every span that ended was
   * either received by the collector or counted as dropped, and the resume line says how many.
   */
  async function episode(
    label: string,
    fault: CollectorMode,
    start: RegExp,
    /**
     * `failures`: exports fail (otherwise they succeed too slowly and only the queue overflows).
     * `stuck`: each export takes long (hang, slow), so the queue fills up to its cap and waits;
     * otherwise (refused, 5xx) each batch fails at once and the queue hardly fills.
     */
    { failures: expectFailures, stuck }: { failures: boolean; stuck: boolean },
  ): Promise<void> {
    await collector.setMode({ kind: 'ok' });
    await until(() => !health().failing && health().queued === 0 && health().inFlight === 0, 'a quiet pipeline');
    resetDiagLimited();
    diagLines.length = 0;
    const before = health();
    const endedBefore = ended.count;
    const acceptedBefore = collector.spans.length;
    const requestsBefore = collector.requests.length;

    const baseline = await measure(url, SAMPLE);
    await until(() => health().queued === 0 && health().inFlight === 0, 'the baseline spans to be exported');
    expect(health().droppedQueueFull, 'no drops with a healthy collector').toBe(before.droppedQueueFull);

    await collector.setMode(fault);
    const faultAt = Date.now();
    let maxQueue = 0;
    const watchQueue = (): void => {
      const length = sdkQueueLength();
      expect(length, "otel-nest's count of the queue is the SDK's").toBe(health().queued);
      maxQueue = Math.max(maxQueue, length);
    };
    const during = await measure(url, SAMPLE, watchQueue);
    await until(() => ours(start).length > 0, `the start line ${start}`);
    const startedAfterMs = Date.now() - faultAt;

    // Memory while every new span is dropped: the queue stays at its cap, the heap does not grow.
    const heapBefore = heapAfterGc();
    const load = await measure(url, LOAD, watchQueue);
    const heapAfter = heapAfterGc();
    const heapGrowthMb = round((heapAfter - heapBefore) / 2 ** 20);

    const droppedBeforeRecovery = health().droppedQueueFull + health().droppedInFailedExports;
    await collector.setMode({ kind: 'ok' });
    const recoveredAt = Date.now();
    // New spans reach the collector: a request every 100 ms until one's spans arrive (the first
    // ones may still meet a full queue, while the export in flight at the recovery ends).
    const markers = new Set<string>();
    await until(() => collector.spans.some((s) => markers.has(s.traceId)), 'spans of a request made after the recovery', 10_000, async () => {
      markers.add((JSON.parse((await get(`${url}/work?spans=1`)).body) as { traceId: string }).traceId);
    });
    const resumedAfterMs = Date.now() - recoveredAt;
    await until(() => ours(/works again after|has room again after/).length > 0, 'the resume line');
    await until(() => health().queued === 0 && health().inFlight === 0 && !health().failing, 'the pipeline to drain');

    // The books.
    const after = health();
    const endedSpans = ended.count - endedBefore;
    const accepted = collector.spans.slice(acceptedBefore);
    const dropped =
      after.droppedQueueFull - before.droppedQueueFull + (after.droppedInFailedExports - before.droppedInFailedExports);
    const failedExports = after.failedExports - before.failedExports;
    expect(accepted.length + dropped, 'every ended span was received or counted as dropped').toBe(endedSpans);
    if (fault.kind === 'status') {
      // Not retried within the 800 ms timeout (Retry-After 1 s, or the 1 s backoff, is longer):
      // one request per failed export.
      const answered = collector.requests.slice(requestsBefore).filter((r) => r.status === fault.status).length;
      expect(answered).toBe(failedExports);
    }
    expect(dropped, 'spans were dropped during the outage').toBeGreaterThan(0);

    // Spans that ended during the outage and were still queued at its end are delivered.
    const endedInOutage = accepted.filter((s) => {
      const endMs = Number(BigInt(s.endTimeUnixNano) / 1_000_000n);
      return endMs >= faultAt && endMs < recoveredAt;
    }).length;
    const startLines = ours(start);
    const resumeLines = ours(/works again after|has room again after/);
    // What the exporter logs by itself at info level, once per failed export (not ours).
    const exporterInfo = diagLines.filter((l) => l.level === 'info').length;
    const worst = { p50: Math.max(during.p50, load.p50), p99: Math.max(during.p99, load.p99) };
    report(label, {
      baselineMs: baseline,
      duringFaultMs: during,
      whileDroppingMs: load,
      p50DeltaMs: round(worst.p50 - baseline.p50),
      p99DeltaMs: round(worst.p99 - baseline.p99),
      startLineAfterMs: startedAfterMs,
      firstSpanAfterRecoveryMs: resumedAfterMs,
      spansEnded: endedSpans,
      spansReceived: accepted.length,
      spansDropped: dropped,
      droppedBeforeRecovery: droppedBeforeRecovery - (before.droppedQueueFull + before.droppedInFailedExports),
      droppedInFailedExports: after.droppedInFailedExports - before.droppedInFailedExports,
      droppedQueueFull: after.droppedQueueFull - before.droppedQueueFull,
      endedInOutageDelivered: endedInOutage,
      failedExports,
      exportRequests: collector.requests.length - requestsBefore,
      queueMax: maxQueue,
      heapGrowthMb,
      exporterInfoLines: exporterInfo,
      startLine: startLines[0]?.text,
      resumeLine: resumeLines[0]?.text,
    });

    expect(accepted.length + dropped, 'every ended span was received or counted as dropped').toBe(endedSpans);
    if (fault.kind === 'status') {
      // Not retried within the 800 ms timeout (Retry-After 1 s, or the 1 s backoff, is longer):
      // one request per failed export.
      const answered = collector.requests.slice(requestsBefore).filter((r) => r.status === fault.status).length;
      expect(answered).toBe(failedExports);
    }
    expect(dropped, 'spans were dropped during the outage').toBeGreaterThan(0);
    if (stuck) {
      expect(endedInOutage, 'spans queued during the outage are delivered after it').toBeGreaterThan(0);
    }
    if (expectFailures) {
      // At most what the queue held plus a batch the exporter retried across the recovery.
      expect(endedInOutage).toBeLessThanOrEqual(MAX_QUEUE + BATCH);
    }

    // Once per episode: one start line with the reason, one resume line with the counts, and
    // nothing else at warn or error level (the SDK's per-batch errors and drop warnings are gone).
    expect(startLines).toHaveLength(1);
    expect(resumeLines).toHaveLength(1);
    const loud = diagLines.filter((l) => l.level !== 'info').map((l) => l.text);
    expect(loud).toEqual([startLines[0]!.text, resumeLines[0]!.text]);
    const resume = resumeLines[0]!.text;
    if (expectFailures) {
      const counts =
        /(\d+) exports? failed and (\d+) spans? dropped \((\d+) in the failed exports, (\d+) because the queue was full at batch\.maxQueueSize 400\)/.exec(
          resume,
        );
      expect(counts, resume).not.toBeNull();
      const [, failed, total, inFailed, queueFull] = counts!.map(Number);
      expect(failed).toBe(failedExports);
      expect(total).toBe(dropped);
      expect(inFailed! + queueFull!).toBe(total);
      expect(inFailed).toBe(after.droppedInFailedExports - before.droppedInFailedExports);
    } else {
      const counts = /(\d+) spans? dropped because it was full \(batch\.maxQueueSize 400\)/.exec(resume);
      expect(counts, resume).not.toBeNull();
      expect(Number(counts![1])).toBe(dropped);
      expect(failedExports).toBe(0);
    }

    // Memory: the queue never holds more than its cap (and reaches it while exports are stuck);
    // the heap after GC stays flat while thousands of spans are dropped.
    expect(maxQueue).toBeLessThanOrEqual(MAX_QUEUE);
    if (stuck) {
      expect(maxQueue).toBe(MAX_QUEUE);
    }
    expect(heapGrowthMb, 'heap growth after GC while spans are dropped (MB)').toBeLessThan(4);

    // Latency: the export runs off the request path. A request that waited for it would take the
    // exporter's 800 ms timeout (or the collector's 300 ms); the bounds leave room for GC and a
    // busy machine, well below that.
    expect(worst.p50).toBeLessThanOrEqual(baseline.p50 * 1.5 + 2);
    expect(worst.p99).toBeLessThanOrEqual(baseline.p99 + 50);
  }

  it('collector down (connection refused), then back up', async () => {
    await episode('down', { kind: 'refuse' }, /failed \(connect ECONNREFUSED 127\.0\.0\.1:\d+\)/, { failures: true, stuck: false });
  });

  it('collector hanging (accepts, never answers), then back up', async () => {
    await episode('hang', { kind: 'hang' }, /failed \(Request timed out\)/, { failures: true, stuck: true });
  });

  it('collector slow (answers after 1.5 s, beyond exporter.timeoutMillis), then back up', async () => {
    await episode('slow-beyond-timeout', { kind: 'slow', delayMs: 1500 }, /failed \(Request timed out\)/, { failures: true, stuck: true });
  });

  it('collector slow but within the timeout (answers after 300 ms): the queue overflows, no export fails', async () => {
    await episode('slow-within-timeout', { kind: 'slow', delayMs: 300 }, /spans end faster than they are exported/, {
      failures: false,
      stuck: true,
    });
  });

  it('collector answering 500 (not retried by the exporter), then back up', async () => {
    await episode('http-500', { kind: 'status', status: 500 }, /failed \(HTTP 500 Internal Server Error\)/, { failures: true, stuck: false });
  });

  it('collector answering 503 (retryable), then back up', async () => {
    await episode('http-503', { kind: 'status', status: 503 }, /failed \(Export failed with retryable status\)/, {
      failures: true,
      stuck: false,
    });
  });

  it('collector answering 429 with Retry-After: 1 (longer than the exporter may wait), then back up', async () => {
    await episode('http-429', { kind: 'status', status: 429, retryAfter: '1' }, /failed \(Export failed with retryable status\)/, {
      failures: true,
      stuck: false,
    });
    // The exporter did not retry: one request per export (a retry would have exceeded timeoutMillis).
  });
});

describe("exporter faults: the exporter's own retries (Retry-After, backoff)", () => {
  let collector: FaultyCollector;
  let app: INestApplication | undefined;
  let url: string;

  beforeAll(async () => {
    diag.setLogger(capturingLogger, DiagLogLevel.INFO);
    collector = await startFaultyCollector();
    ({ app, url } = await startApp({
      serviceName: 'exporter-retries',
      logSummary: false,
      httpClient: false,
      // Room for one retry after 2 s: the exporter retries only within timeoutMillis.
      exporter: { url: collector.url, timeoutMillis: 3000 },
      batch: { maxQueueSize: MAX_QUEUE, maxExportBatchSize: BATCH, scheduledDelayMillis: 20, exportTimeoutMillis: 5000 },
    }));
  });

  afterAll(async () => {
    await app?.close();
    await collector?.close();
    diag.disable();
  });

  /** One request's spans exported while the collector behaves as `mode`; the attempts it saw. */
  async function exportOnce(mode: CollectorMode): Promise<{ gaps: number[]; statuses: Array<number | undefined>; delivered: boolean }> {
    await collector.setMode({ kind: 'ok' });
    if (health().failing) {
      // An outage ends with the next export that works.
      await get(`${url}/work?spans=1`);
    }
    await until(() => health().queued === 0 && health().inFlight === 0 && !health().failing, 'a quiet pipeline');
    collector.reset();
    resetDiagLimited();
    diagLines.length = 0;
    await collector.setMode(mode);
    const { traceId } = JSON.parse((await get(`${url}/work?spans=1`)).body) as { traceId: string };
    await until(() => health().inFlight === 0 && health().queued === 0 && collector.requests.length > 0, 'the export to end', 8000);
    const at = collector.requests.map((r) => r.at);
    return {
      gaps: at.slice(1).map((t, i) => t - at[i]!),
      statuses: collector.requests.map((r) => r.status),
      delivered: collector.spans.some((s) => s.traceId === traceId),
    };
  }

  it('429 with Retry-After: 2 is retried after those 2 s (not the 1 s backoff); the spans arrive, no outage is reported', async () => {
    const result = await exportOnce({ kind: 'status', status: 429, retryAfter: '2', times: 1 });
    expect(result.statuses).toEqual([429, 200]);
    expect(result.gaps[0]).toBeGreaterThanOrEqual(1990);
    expect(result.gaps[0]).toBeLessThan(2600);
    expect(result.delivered).toBe(true);
    expect(ours(/./)).toEqual([]);
    report('retry-429-retry-after-2', { attempts: result.statuses, retryGapMs: result.gaps });
  });

  it('429 with Retry-After: 5 (beyond timeoutMillis) is not retried: the export fails at once and is reported', async () => {
    const result = await exportOnce({ kind: 'status', status: 429, retryAfter: '5' });
    expect(result.statuses).toEqual([429]);
    expect(result.delivered).toBe(false);
    expect(ours(/failed \(Export failed with retryable status\)/)).toHaveLength(1);
    const exporterSaid = diagLines.filter((l) => l.level === 'info').map((l) => l.text);
    expect(exporterSaid.some((t) => /Export retry time 5000ms exceeds remaining timeout/.test(t))).toBe(true);
    report('retry-429-retry-after-5', { attempts: result.statuses, exporterInfo: exporterSaid });
  });

  it('503 without Retry-After is retried after the exporter backoff (1 s +-20%)', async () => {
    const result = await exportOnce({ kind: 'status', status: 503, times: 1 });
    expect(result.statuses).toEqual([503, 200]);
    expect(result.gaps[0]).toBeGreaterThanOrEqual(790);
    expect(result.gaps[0]).toBeLessThan(1500);
    expect(result.delivered).toBe(true);
    report('retry-503-backoff', { attempts: result.statuses, retryGapMs: result.gaps });
  });
});

describe.concurrent('exporter faults: shutdown is bounded when the collector hangs', () => {
  const collectors: FaultyCollector[] = [];
  const children: ChildApp[] = [];

  afterAll(async () => {
    await Promise.all(children.map((child) => child.stop('SIGKILL')));
    await Promise.all(collectors.map((c) => c.close()));
  });

  async function hangingCollector(mode: CollectorMode): Promise<FaultyCollector> {
    const collector = await startFaultyCollector();
    collectors.push(collector);
    await collector.setMode(mode);
    return collector;
  }

  /** Requests whose spans reach the hanging collector (an export in flight) and more queued behind it. */
  async function traffic(base: string, collector: FaultyCollector): Promise<void> {
    for (let i = 0; i < 5; i++) {
      await get(`${base}/work?spans=3`);
    }
    await until(() => collector.requests.length > 0, 'an export to reach the collector');
    for (let i = 0; i < 5; i++) {
      await get(`${base}/work?spans=3`);
    }
  }

  async function sigterm(child: ChildApp): Promise<{ ms: number; code: number | null; signal: NodeJS.Signals | null }> {
    const started = Date.now();
    const exit = await child.stop('SIGTERM');
    return { ms: Date.now() - started, ...exit };
  }

  function checkOutput(output: string): void {
    expect(output).not.toContain('UNHANDLED_REJECTION');
    expect(output).toMatch(/otel-nest: shutting down: \d+ spans? not exported to http:\/\/127\.0\.0\.1:\d+\/v1\/traces within \d+ ms (is|are) dropped/);
  }

  it('app.close() in-process, default exporter timeouts, hanging collector: resolves in < 9 s and says what it dropped', async () => {
    const collector = await hangingCollector({ kind: 'hang' });
    process.on('unhandledRejection', onUnhandled);
    diag.setLogger(capturingLogger, DiagLogLevel.WARN);
    diagLines.length = 0;
    try {
      const { app, url } = await startApp({
        serviceName: 'close-in-process',
        logSummary: false,
        httpClient: false,
        exporter: { url: collector.url },
        batch: { scheduledDelayMillis: 50 },
      });
      await traffic(url, collector);
      const started = Date.now();
      await app.close();
      const ms = Date.now() - started;
      expect(ms).toBeLessThan(9000);
      expect(ms).toBeGreaterThanOrEqual(FLUSH_TIMEOUT_MS - 500);
      expect(currentExportHealth(), 'the SDK is shut down').toBeUndefined();
      const lines = ours(/^otel-nest: shutting down: \d+ spans? not exported/);
      expect(lines).toHaveLength(1);
      expect(unhandled).toEqual([]);
      report('shutdown-app-close-hang', { ms, line: lines[0]!.text });
    } finally {
      diag.disable();
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('SIGTERM with enableShutdownHooks(), default exporter timeouts, hanging collector: exits by SIGTERM in < 9 s', async () => {
    const collector = await hangingCollector({ kind: 'hang' });
    const child = await startChildApp('test/fixtures/export-faults-app.mjs', {
      FIXTURE_OTEL_OPTIONS: JSON.stringify({ serviceName: 'hooks', exporter: { url: collector.url }, batch: { scheduledDelayMillis: 50 } }),
    });
    children.push(child);
    await traffic(`http://127.0.0.1:${child.port}`, collector);
    const exit = await sigterm(child);
    expect(exit.signal).toBe('SIGTERM');
    expect(exit.ms).toBeLessThan(9000);
    expect(exit.ms).toBeGreaterThanOrEqual(FLUSH_TIMEOUT_MS - 500);
    checkOutput(child.output());
    report('shutdown-sigterm-hooks-hang', { ms: exit.ms, signal: exit.signal, line: /otel-nest: shutting down[^\n]*/.exec(child.output())?.[0] });
  });

  it('SIGTERM with the otel-nest/register preload and enableShutdownHooks(), trickling collector: exits by SIGTERM in < 9 s', async () => {
    const collector = await hangingCollector({ kind: 'trickle', intervalMs: 200 });
    const child = await startChildApp(
      'test/fixtures/export-faults-app.mjs',
      { OTEL_SERVICE_NAME: 'preload-hooks', OTEL_EXPORTER_OTLP_ENDPOINT: collector.endpoint, OTEL_BSP_SCHEDULE_DELAY: '50', FIXTURE_OTEL_OPTIONS: '{}' },
      ['--import', 'otel-nest/register'],
    );
    children.push(child);
    await traffic(`http://127.0.0.1:${child.port}`, collector);
    const exit = await sigterm(child);
    expect(exit.signal).toBe('SIGTERM');
    expect(exit.ms).toBeLessThan(9000);
    checkOutput(child.output());
    report('shutdown-sigterm-preload-hooks-trickle', { ms: exit.ms, signal: exit.signal, line: /otel-nest: shutting down[^\n]*/.exec(child.output())?.[0] });
  });

  it('SIGTERM with the otel-nest/register preload alone (no shutdown hooks), hanging collector: exits by SIGTERM in < 9 s', async () => {
    const collector = await hangingCollector({ kind: 'hang' });
    const child = await startChildApp(
      'test/fixtures/export-faults-app.mjs',
      {
        OTEL_SERVICE_NAME: 'preload-only',
        OTEL_EXPORTER_OTLP_ENDPOINT: collector.endpoint,
        OTEL_BSP_SCHEDULE_DELAY: '50',
        FIXTURE_OTEL_OPTIONS: '{}',
        FIXTURE_NO_SHUTDOWN_HOOKS: '1',
      },
      ['--import', 'otel-nest/register'],
    );
    children.push(child);
    await traffic(`http://127.0.0.1:${child.port}`, collector);
    const exit = await sigterm(child);
    expect(exit.signal).toBe('SIGTERM');
    expect(exit.ms).toBeLessThan(9000);
    checkOutput(child.output());
    report('shutdown-sigterm-preload-only-hang', { ms: exit.ms, signal: exit.signal, line: /otel-nest: shutting down[^\n]*/.exec(child.output())?.[0] });
  });
});
