import { diag, DiagLogLevel, trace, TraceFlags, type DiagLogger } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { TracerProvider, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { resetDiagLimited } from '../utils/diag-limited.js';
import {
  CappedBatchSpanProcessor,
  describeExportError,
  ExportHealth,
  HealthReportingSpanExporter,
} from './export-health.js';

const TARGET = 'http://collector:4318/v1/traces';

const lines: string[] = [];
const logger: DiagLogger = {
  error: (m: string) => lines.push(`error ${m}`),
  warn: (m: string) => lines.push(`warn ${m}`),
  info: (m: string) => lines.push(`info ${m}`),
  debug: () => undefined,
  verbose: () => undefined,
};

beforeEach(() => {
  lines.length = 0;
  resetDiagLimited();
  diag.setLogger(logger, DiagLogLevel.INFO);
});
afterEach(() => {
  diag.disable();
  vi.useRealTimers();
});

const ok: ExportResult = { code: ExportResultCode.SUCCESS };
const failed = (message = 'connect ECONNREFUSED 127.0.0.1:4318'): ExportResult => ({
  code: ExportResultCode.FAILED,
  error: Object.assign(new Error(message), { code: 'ECONNREFUSED' }),
});

/** An exporter whose exports end only when the test says so. */
class ManualExporter implements SpanExporter {
  readonly calls: Array<{ spans: ReadableSpan[]; done: (result: ExportResult) => void }> = [];
  shutdownResult: Promise<void> = Promise.resolve();
  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.calls.push({ spans, done });
  }
  shutdown(): Promise<void> {
    return this.shutdownResult;
  }
}

describe('ExportHealth: one line when an outage starts, one when spans flow again', () => {
  it('logs the first failure with its reason, stays quiet for the others, then reports the counts once', () => {
    let now = 1_000;
    const health = new ExportHealth({ target: TARGET, maxQueueSize: 2, now: () => now });
    const answers: string[] = [];
    expect(health.admit()).toBe(true);
    expect(health.admit()).toBe(true);
    expect(health.admit()).toBe(false);
    const first = health.exportStarted(2, () => answers.push('first'));
    // The cap counts queued spans, not spans handed to the exporter.
    expect(health.admit()).toBe(true);
    first(failed());
    health.exportStarted(1, () => answers.push('second'))(failed('Request timed out'));
    expect(answers).toEqual(['first', 'second']);
    expect(lines).toEqual([
      expect.stringMatching(/^warn otel-nest: exporting spans to http:\/\/collector:4318\/v1\/traces failed \(connect ECONNREFUSED 127\.0\.0\.1:4318\)\./),
    ]);
    expect(health.snapshot()).toMatchObject({ failing: true, failedExports: 2, droppedInFailedExports: 3, droppedQueueFull: 1 });

    now += 2_500;
    health.admit();
    health.exportStarted(1, () => undefined)(ok);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toBe(
      `warn otel-nest: exporting spans to ${TARGET} works again after 2.5 s: 2 exports failed and 4 spans dropped ` +
        '(3 in the failed exports, 1 because the queue was full at batch.maxQueueSize 2).',
    );
    expect(health.snapshot()).toMatchObject({ failing: false, exportedSpans: 1, queued: 0, inFlight: 0 });
  });

  it('an export that succeeds while the queue still overflows does not end the outage', () => {
    const health = new ExportHealth({ target: TARGET, maxQueueSize: 1 });
    health.admit();
    health.exportStarted(1, () => undefined)(failed());
    health.admit();
    const recovering = health.exportStarted(1, () => undefined);
    health.admit();
    health.admit(); // dropped while the recovering export is in flight
    recovering(ok);
    expect(lines).toHaveLength(1);
    expect(health.snapshot().failing).toBe(true);
    health.exportStarted(1, () => undefined)(ok);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(/works again after .*: 1 export failed and 2 spans dropped \(1 in the failed exports, 1 because the queue was full/);
  });

  it('a queue that overflows while exports succeed: one overload line, one line when it has room again', () => {
    const health = new ExportHealth({ target: TARGET, maxQueueSize: 1 });
    health.admit();
    const slow = health.exportStarted(1, () => undefined);
    health.admit();
    health.admit();
    health.admit();
    slow(ok);
    expect(lines).toEqual([expect.stringMatching(/^warn otel-nest: spans end faster than they are exported to .*batch\.maxQueueSize 1/)]);
    health.exportStarted(1, () => undefined)(ok);
    expect(lines[1]).toMatch(/the span queue for .* has room again after .*: 2 spans dropped because it was full \(batch\.maxQueueSize 1\)\./);
    expect(health.snapshot().failedExports).toBe(0);
  });

  it('gives up on an export at its deadline, answers the processor once, and ignores a late result', () => {
    vi.useFakeTimers();
    const health = new ExportHealth({ target: TARGET, exportDeadlineMillis: 1_000 });
    const answer = vi.fn();
    health.admit();
    const settle = health.exportStarted(1, answer);
    vi.advanceTimersByTime(999);
    expect(answer).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(answer).toHaveBeenCalledTimes(1);
    expect(lines[0]).toMatch(/failed \(no result from the exporter within 1000 ms\)/);
    settle(ok);
    expect(answer).toHaveBeenCalledTimes(1);
    expect(health.snapshot()).toMatchObject({ failedExports: 1, exportedSpans: 0, inFlight: 0 });
  });

  it('at shutdown: counts what is queued or in flight as lost, answers the processor, and says so in one line', async () => {
    const health = new ExportHealth({ target: TARGET, maxQueueSize: 10 });
    const answer = vi.fn();
    for (let i = 0; i < 5; i++) {
      health.admit();
    }
    health.exportStarted(3, answer);
    const idle = health.whenIdle();
    // An application leaving a shared SDK gives up on its flush only: the queue stays for the others.
    const other = new ExportHealth({ target: TARGET, maxQueueSize: 10 });
    other.admit();
    other.admit();
    other.exportStarted(1, () => undefined);
    expect(other.abandonAtShutdown(false)).toBe(1);
    expect(other.snapshot()).toMatchObject({ queued: 1, inFlight: 0, lostAtShutdown: 1 });

    expect(health.abandonAtShutdown(true)).toBe(5);
    await idle;
    expect(answer).toHaveBeenCalledTimes(1);
    expect(health.snapshot()).toMatchObject({ lostAtShutdown: 5, queued: 0, inFlight: 0, failedExports: 0 });
    expect(health.shutdownReport(5, 5_000)).toBe(
      `otel-nest: shutting down: 5 spans not exported to ${TARGET} within 5000 ms are dropped; otel-nest stopped ` +
        'waiting for the collector so that the application can exit.',
    );
    expect(new ExportHealth({ target: TARGET }).shutdownReport(0, 10)).toBeUndefined();
  });

  it('at shutdown during an outage: one line with what the outage cost, even when nothing is left to lose', () => {
    let now = 0;
    const health = new ExportHealth({ target: TARGET, maxQueueSize: 10, now: () => now });
    health.admit();
    health.exportStarted(1, () => undefined)(failed());
    now = 3_000;
    expect(health.shutdownReport(0, 12)).toBe(
      `otel-nest: shutting down: exports to ${TARGET} had been failing for 3.0 s (connect ECONNREFUSED 127.0.0.1:4318): ` +
        '1 export failed and 1 span dropped (1 in the failed exports, 0 because the queue was full at batch.maxQueueSize 10).',
    );
  });

  it('describes export errors by HTTP status, network code or message', () => {
    expect(describeExportError(Object.assign(new Error('Internal Server Error'), { code: 500 }))).toBe('HTTP 500 Internal Server Error');
    expect(describeExportError(Object.assign(new Error(''), { code: 'ECONNREFUSED' }))).toBe('ECONNREFUSED: Error');
    expect(describeExportError(new Error('Request timed out'))).toBe('Request timed out');
    expect(describeExportError(undefined)).toBe('the exporter reported a failure without an error');
    expect(describeExportError(new Error('x'.repeat(500)))).toHaveLength(200);
  });
});

describe('HealthReportingSpanExporter + CappedBatchSpanProcessor on the SDK', () => {
  function pipeline(exporter: SpanExporter, options: { maxQueueSize: number; maxExportBatchSize: number }) {
    const health = new ExportHealth({ target: TARGET, maxQueueSize: options.maxQueueSize });
    const processor = new CappedBatchSpanProcessor(
      { ...options, scheduledDelayMillis: 60_000, exportTimeoutMillis: 60_000, exporter: new HealthReportingSpanExporter(exporter, health) },
      health,
    );
    const provider = new TracerProvider({ spanProcessors: [processor] });
    const end = (count: number): void => {
      for (let i = 0; i < count; i++) {
        provider.getTracer('spec').startSpan(`s${i}`).end();
      }
    };
    return { health, processor, provider, end };
  }

  it('caps the queue before the SDK does: its count is the SDK queue, and the SDK never logs its own drops', async () => {
    const exporter = new ManualExporter();
    const { health, processor, provider, end } = pipeline(exporter, { maxQueueSize: 4, maxExportBatchSize: 2 });
    end(9);
    // 2 went out in a batch that hangs, 4 wait, 3 were refused.
    expect(exporter.calls.map((c) => c.spans.length)).toEqual([2]);
    expect((processor as unknown as { _finishedSpans: unknown[] })._finishedSpans).toHaveLength(4);
    expect(health.snapshot()).toMatchObject({ queued: 4, inFlight: 2, droppedQueueFull: 3 });

    exporter.calls[0]!.done(failed());
    await vi.waitFor(() => expect(exporter.calls).toHaveLength(2));
    end(1);
    expect(lines.filter((l) => /Dropped \d+ spans/.test(l))).toEqual([]);
    exporter.calls[1]!.done(ok);
    await vi.waitFor(() => expect(exporter.calls).toHaveLength(3));
    exporter.calls[2]!.done(ok);
    // One span is left below the batch size: the flush sends it.
    const flushed = provider.forceFlush();
    await vi.waitFor(() => expect(exporter.calls).toHaveLength(4));
    exporter.calls[3]!.done(ok);
    await flushed;
    // Nothing but our two lines, although two batches failed or were dropped.
    expect(lines).toEqual([
      expect.stringMatching(/^warn otel-nest: exporting spans to \S+ failed/),
      expect.stringMatching(/^warn otel-nest: exporting spans to \S+ works again/),
    ]);
    expect(lines[1]).toMatch(/works again after .*: 1 export failed and 5 spans dropped \(2 in the failed exports, 3 because the queue was full/);
    expect(health.snapshot()).toMatchObject({ failing: false, queued: 0, inFlight: 0, exportedSpans: 5 });
  });

  it("tells the processor every export succeeded, so the SDK's global error handler logs nothing per batch", async () => {
    const exporter = new ManualExporter();
    const { provider, end } = pipeline(exporter, { maxQueueSize: 10, maxExportBatchSize: 1 });
    end(3);
    for (let answered = 0; answered < 3; answered++) {
      await vi.waitFor(() => expect(exporter.calls.length).toBeGreaterThan(answered));
      exporter.calls[answered]!.done(failed('Internal Server Error'));
    }
    await expect(provider.forceFlush()).resolves.toBeUndefined();
    // Let the processor's promise chains run: a rejected batch would reach the error handler here.
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(lines.filter((l) => l.startsWith('error'))).toEqual([]);
    expect(lines).toHaveLength(1);
  });

  it('unsampled spans and spans after shutdown are not counted', async () => {
    const exporter = new ManualExporter();
    const { health, processor } = pipeline(exporter, { maxQueueSize: 10, maxExportBatchSize: 10 });
    const unsampled = trace.wrapSpanContext({ traceId: '1'.repeat(32), spanId: '2'.repeat(16), traceFlags: TraceFlags.NONE });
    processor.onEnd(unsampled as unknown as ReadableSpan);
    expect(health.snapshot().queued).toBe(0);
    await processor.shutdown();
    const sampled = trace.wrapSpanContext({ traceId: '1'.repeat(32), spanId: '3'.repeat(16), traceFlags: TraceFlags.SAMPLED });
    processor.onEnd(sampled as unknown as ReadableSpan);
    expect(health.snapshot().queued).toBe(0);
  });

  it("shutdown does not wait for exports given up on, whose requests may stay open in the exporter", async () => {
    const exporter = new ManualExporter();
    exporter.shutdownResult = new Promise(() => undefined);
    const health = new ExportHealth({ target: TARGET, exportDeadlineMillis: 20 });
    const reporting = new HealthReportingSpanExporter(exporter, health);
    const done = vi.fn();
    reporting.export([{} as ReadableSpan], done);
    await vi.waitFor(() => expect(done).toHaveBeenCalledWith({ code: ExportResultCode.SUCCESS }));
    await expect(reporting.shutdown()).resolves.toBeUndefined();
    await expect(reporting.forceFlush()).resolves.toBeUndefined();
  });
});
