import { TraceFlags } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import {
  BatchSpanProcessor,
  type BatchSpanProcessorOptions,
  type ReadableSpan,
  type SpanExporter,
} from '@opentelemetry/sdk-trace';
import {
  exportFailing,
  exportOverloadCleared,
  exportOverloaded,
  exportResumed,
  exportStateAtShutdown,
  type ExportEpisodeReport,
} from '../otel.messages.js';
import { diagLimited } from '../utils/diag-limited.js';

/**
 * What happens to spans when the collector fails, and how otel-nest reports it.
 *
 * The SDK alone drops a batch whose export fails (no retry beyond the exporter's own, within its
 * `timeoutMillis`), drops new spans while its queue holds `maxQueueSize`, and logs both: a diag
 * error per failed batch (through the global error handler) and a "Dropped N spans" warning each
 * time the queue frees up. During one outage that is a line per batch. Here instead:
 * - {@link CappedBatchSpanProcessor} refuses a span when the queue is full, before the SDK's
 *   processor sees it, and counts it;
 * - {@link HealthReportingSpanExporter} counts every export's result, gives up on an export that
 *   has no result after its deadline, and tells the processor "done" either way (the processor
 *   does nothing with a failure but log it, and count it in self-observability metrics that
 *   otel-nest does not enable);
 * - {@link ExportHealth} turns the counts into episodes: one diag line when an outage starts, with
 *   the reason, and one when spans flow again, with how many exports failed and spans were dropped.
 *
 * Spans still in the queue when the collector comes back are delivered: the queue is never
 * discarded, only capped. Spans of a failed export and spans refused at the cap are lost.
 */

/** How long after the exporter's own `timeoutMillis` an export is given up on. */
export const EXPORT_DEADLINE_GRACE_MS = 1000;

export interface ExportHealthOptions {
  /** Where spans go, for messages: the OTLP URL, or the exporter's class name. */
  readonly target: string;
  /** The batch queue's cap; undefined without a queue (SimpleSpanProcessor). */
  readonly maxQueueSize?: number;
  /** An export without a result after this many ms counts as failed; undefined: no deadline. */
  readonly exportDeadlineMillis?: number;
  /** Clock (tests). */
  readonly now?: () => number;
}

/** Counters since the SDK started, and the current state. */
export interface ExportHealthSnapshot {
  /** An outage or overflow episode is open: spans are being dropped. */
  readonly failing: boolean;
  /** Spans in the batch queue (otel-nest's count of what the SDK's processor holds). */
  readonly queued: number;
  /** Spans handed to the exporter that have no result yet. */
  readonly inFlight: number;
  readonly exportedSpans: number;
  readonly failedExports: number;
  /** Spans of failed (or given up) exports. */
  readonly droppedInFailedExports: number;
  /** Spans refused because the queue held `maxQueueSize`. */
  readonly droppedQueueFull: number;
  /** Spans still queued or in flight when shutdown stopped waiting. */
  readonly lostAtShutdown: number;
}

interface Episode {
  readonly startedAt: number;
  failedExports: number;
  spansInFailedExports: number;
  queueFullDrops: number;
  /** Why the first export failed; undefined while only the queue overflows. */
  reason: string | undefined;
  /** The start line was written (an episode of drops waits for its first export result). */
  announced: boolean;
}

/** One export handed to the exporter. */
interface PendingExport {
  readonly spans: number;
  /** The queue-drop counter when the export started: unchanged at its end = no drop meanwhile. */
  readonly dropsAtStart: number;
  /** Tells the processor the export is done. */
  readonly answer: () => void;
  timer: NodeJS.Timeout | undefined;
}

export class ExportHealth {
  readonly target: string;
  readonly maxQueueSize: number | undefined;
  readonly exportDeadlineMillis: number | undefined;
  private readonly now: () => number;
  private readonly pending = new Set<PendingExport>();
  private idleWaiters: Array<() => void> = [];
  private episode: Episode | undefined;
  private queued = 0;
  private exportedSpans = 0;
  private failedExports = 0;
  private droppedInFailedExports = 0;
  private droppedQueueFull = 0;
  private lostAtShutdown = 0;
  /** Exports given up on (deadline or shutdown) whose request may still be open in the exporter. */
  private abandoned = 0;

  constructor(options: ExportHealthOptions) {
    this.target = options.target;
    this.maxQueueSize = options.maxQueueSize;
    this.exportDeadlineMillis = options.exportDeadlineMillis;
    this.now = options.now ?? Date.now;
  }

  snapshot(): ExportHealthSnapshot {
    return {
      failing: this.episode !== undefined,
      queued: this.queued,
      inFlight: this.inFlight(),
      exportedSpans: this.exportedSpans,
      failedExports: this.failedExports,
      droppedInFailedExports: this.droppedInFailedExports,
      droppedQueueFull: this.droppedQueueFull,
      lostAtShutdown: this.lostAtShutdown,
    };
  }

  /** Whether a span may enter the queue; counts it as queued, or as dropped at the cap. */
  admit(): boolean {
    if (this.maxQueueSize !== undefined && this.queued >= this.maxQueueSize) {
      this.droppedQueueFull++;
      this.openEpisode().queueFullDrops++;
      return false;
    }
    this.queued++;
    return true;
  }

  /**
   * `spans` left the queue for the exporter. Returns the callback for the exporter's result;
   * `answer` (tells the processor) is called exactly once: with the result, at the deadline, or
   * when shutdown gives up. A result that comes later is ignored.
   */
  exportStarted(spans: number, answer: () => void): (result: ExportResult) => void {
    // The processor takes its batch out of the queue right before it calls export.
    this.queued = Math.max(0, this.queued - spans);
    const entry: PendingExport = { spans, dropsAtStart: this.droppedQueueFull, answer, timer: undefined };
    this.pending.add(entry);
    const settle = (result: ExportResult): void => {
      if (this.finish(entry)) {
        this.record(entry, result);
        entry.answer();
        this.notifyIfIdle();
      }
    };
    if (this.exportDeadlineMillis !== undefined) {
      const deadline = this.exportDeadlineMillis;
      entry.timer = setTimeout(() => {
        this.abandoned++;
        settle({ code: ExportResultCode.FAILED, error: new Error(`no result from the exporter within ${deadline} ms`) });
      }, deadline);
      entry.timer.unref();
    }
    return settle;
  }

  /** Whether an export was ever given up on (its request may still be open in the exporter). */
  hasAbandonedExports(): boolean {
    return this.abandoned > 0;
  }

  /** Resolves once no export is waiting for a result. */
  whenIdle(): Promise<void> {
    if (this.pending.size === 0) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Shutdown stops waiting: every export still waiting is given up on and counted as lost (not as
   * failed exports), and with `queueToo` (the SDK shuts down) the spans still queued as well.
   * Otherwise the queue stays: the applications still holding the SDK export it. Returns how many
   * spans were lost.
   */
  abandonAtShutdown(queueToo: boolean): number {
    const waiting = [...this.pending].filter((entry) => this.finish(entry));
    const lost = (queueToo ? this.queued : 0) + waiting.reduce((sum, entry) => sum + entry.spans, 0);
    this.lostAtShutdown += lost;
    this.abandoned += waiting.length;
    if (queueToo) {
      this.queued = 0;
    }
    // The processor's flush and shutdown wait for these answers.
    waiting.forEach((entry) => entry.answer());
    this.notifyIfIdle();
    return lost;
  }

  /** The one line for shutdown: spans lost now, and the open episode if exports were failing. */
  shutdownReport(lost: number, waitedMs: number): string | undefined {
    const episode = this.episode;
    if (lost === 0 && episode === undefined) {
      return undefined;
    }
    return exportStateAtShutdown(this.target, lost, waitedMs, episode && this.report(episode));
  }

  /** Takes `entry` out of the waiting set; false if it already ended. */
  private finish(entry: PendingExport): boolean {
    if (!this.pending.delete(entry)) {
      return false;
    }
    clearTimeout(entry.timer);
    return true;
  }

  private inFlight(): number {
    let spans = 0;
    for (const entry of this.pending) {
      spans += entry.spans;
    }
    return spans;
  }

  private notifyIfIdle(): void {
    if (this.pending.size === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      waiters.forEach((resolve) => resolve());
    }
  }

  private openEpisode(): Episode {
    this.episode ??= {
      startedAt: this.now(),
      failedExports: 0,
      spansInFailedExports: 0,
      queueFullDrops: 0,
      reason: undefined,
      announced: false,
    };
    return this.episode;
  }

  private record(entry: PendingExport, result: ExportResult): void {
    if (result.code === ExportResultCode.SUCCESS) {
      this.exportedSpans += entry.spans;
      const episode = this.episode;
      if (episode === undefined) {
        return;
      }
      if (this.droppedQueueFull === entry.dropsAtStart) {
        // Exported, and the queue had room the whole time: the episode is over.
        this.episode = undefined;
        const report = this.report(episode);
        this.log(report.failedExports > 0 ? exportResumed(this.target, report) : exportOverloadCleared(this.target, report));
      } else if (!episode.announced) {
        // Exports work but cannot keep up: the queue overflows.
        episode.announced = true;
        this.log(exportOverloaded(this.target, this.maxQueueSize ?? 0));
      }
      return;
    }
    this.failedExports++;
    this.droppedInFailedExports += entry.spans;
    const episode = this.openEpisode();
    episode.failedExports++;
    episode.spansInFailedExports += entry.spans;
    episode.reason ??= describeExportError(result.error);
    if (!episode.announced) {
      episode.announced = true;
      this.log(exportFailing(this.target, episode.reason));
    }
  }

  private report(episode: Episode): ExportEpisodeReport {
    return {
      durationMs: this.now() - episode.startedAt,
      failedExports: episode.failedExports,
      spansInFailedExports: episode.spansInFailedExports,
      queueFullDrops: episode.queueFullDrops,
      maxQueueSize: this.maxQueueSize,
      reason: episode.reason,
    };
  }

  /**
   * Episodes already make these lines rare; the rate limit of diagLimited (per identical text)
   * only holds back a collector that flaps between the same two states within a minute.
   */
  private log(message: string): void {
    diagLimited('warn', message);
  }
}

/** `HTTP 500 Internal Server Error`, `connect ECONNREFUSED 127.0.0.1:4318`, `Request timed out`. */
export function describeExportError(error: unknown): string {
  if (error instanceof Error || (typeof error === 'object' && error !== null && 'message' in error)) {
    const { message, code, name } = error as { message?: unknown; code?: unknown; name?: unknown };
    const text = typeof message === 'string' && message !== '' ? message : typeof name === 'string' ? name : 'unknown error';
    let described = text;
    if (typeof code === 'number') {
      described = `HTTP ${code}${text === 'unknown error' ? '' : ` ${text}`}`;
    } else if (typeof code === 'string' && !text.includes(code)) {
      described = `${code}: ${text}`;
    }
    return described.length > 200 ? `${described.slice(0, 197)}...` : described;
  }
  return error === undefined ? 'the exporter reported a failure without an error' : String(error).slice(0, 200);
}

/**
 * Wraps the exporter the processor calls: counts results for {@link ExportHealth}, gives up on an
 * export at its deadline, and always answers the processor with success (see the file comment).
 */
export class HealthReportingSpanExporter implements SpanExporter {
  constructor(
    readonly exporter: SpanExporter,
    private readonly health: ExportHealth,
  ) {}

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    let answered = false;
    const answer = (): void => {
      if (!answered) {
        answered = true;
        resultCallback({ code: ExportResultCode.SUCCESS });
      }
    };
    const settle = this.health.exportStarted(spans.length, answer);
    try {
      this.exporter.export(spans, settle);
    } catch (error) {
      settle({ code: ExportResultCode.FAILED, error: error instanceof Error ? error : new Error(String(error)) });
    }
  }

  async forceFlush(): Promise<void> {
    // The exporter's own flush also waits for requests given up on; those may never end.
    const own = this.exporter.forceFlush?.() ?? Promise.resolve();
    await (this.health.hasAbandonedExports() ? Promise.race([own, this.health.whenIdle()]) : own);
  }

  async shutdown(): Promise<void> {
    const own = this.exporter.shutdown();
    await (this.health.hasAbandonedExports() ? Promise.race([own, this.health.whenIdle()]) : own);
  }
}

/**
 * The SDK's BatchSpanProcessor, with the queue cap applied (and counted) before a span reaches it,
 * so that its own per-drop-run warning never fires and otel-nest reports drops once per episode.
 */
export class CappedBatchSpanProcessor extends BatchSpanProcessor {
  private closed = false;

  constructor(
    options: BatchSpanProcessorOptions,
    /** Its counts: what was exported, failed and dropped (the SDK's own counters never see a drop). */
    readonly exportHealth: ExportHealth,
  ) {
    super(options);
  }

  override onEnd(span: ReadableSpan): void {
    // The SDK ignores these two itself; they never enter the queue, so they are not counted.
    const ignored = this.closed || (span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0;
    if (ignored || this.exportHealth.admit()) {
      super.onEnd(span);
    }
  }

  override shutdown(): Promise<void> {
    this.closed = true;
    return super.shutdown();
  }
}
