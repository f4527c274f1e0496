import { AssertionError } from 'node:assert';
import { setTimeout as sleep } from 'node:timers/promises';
import { Injectable } from '@nestjs/common';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { describeMatcher, findSpan, type SpanMatcher } from './span-query.js';
import { spanTree } from './span-tree.js';

/** Receives every finished span recorded so far (start order not guaranteed). */
export type SpansPredicate = (spans: readonly ReadableSpan[]) => boolean;

/** Options of {@link SpanRecorder.waitForSpans} and {@link SpanRecorder.waitForSpan}. */
export interface WaitForSpansOptions {
  /** Give up after this many ms. Default 3000 (below Vitest's and Jest's 5000 ms test timeout). */
  timeoutMs?: number;
  /** Delay between two checks, in ms. Default 10. */
  intervalMs?: number;
}

const DEFAULT_TIMEOUT_MS = 3000;
const DEFAULT_INTERVAL_MS = 10;

/**
 * Every Nest app of a test process exports into this one exporter, and each app's shutdown shuts
 * its span processor down. `InMemorySpanExporter` stops recording for good on `shutdown()`, so the
 * app closed by one test would blind every test after it: shutdown only flushes here.
 */
class SharedInMemorySpanExporter extends InMemorySpanExporter {
  override shutdown(): Promise<void> {
    return this.forceFlush();
  }
}

// Kept on globalThis so that copies of this module (test runners that re-evaluate modules per file,
// or a package loaded through two paths) still share one exporter, as they share the global SDK.
const EXPORTER_KEY = Symbol.for('otel-nest.testing.span-exporter');

function sharedExporter(): InMemorySpanExporter {
  const holder = globalThis as unknown as Record<symbol, InMemorySpanExporter | undefined>;
  holder[EXPORTER_KEY] ??= new SharedInMemorySpanExporter();
  return holder[EXPORTER_KEY];
}

/**
 * The spans finished in this process. Every instance reads the same process-wide exporter, so
 * `new SpanRecorder()`, {@link spanRecorder} and `app.get(SpanRecorder)` all see the same spans.
 */
@Injectable()
export class SpanRecorder {
  /** The exporter to hand to the SDK (`OtelTestingModule` does it for you). Survives `shutdown()`. */
  readonly exporter: InMemorySpanExporter = sharedExporter();

  /** A copy of the finished spans, in the order they ended. */
  getFinishedSpans(): ReadableSpan[] {
    return [...this.exporter.getFinishedSpans()];
  }

  /** Forget every span recorded so far (call it in `beforeEach`). */
  reset(): void {
    this.exporter.reset();
  }

  /**
   * Resolves with all finished spans once there are at least `count` of them, or once `predicate`
   * returns true. Spans of async flows end after the HTTP response, so tests wait for them here.
   * A predicate that throws (e.g. `getSpan` before the span exists) counts as "not yet"; on
   * timeout the `AssertionError` shows its last error and the span tree.
   */
  async waitForSpans(condition: number | SpansPredicate, options: WaitForSpansOptions = {}): Promise<ReadableSpan[]> {
    const check: SpansPredicate =
      typeof condition === 'number' ? (spans) => spans.length >= condition : condition;
    const description =
      typeof condition === 'number' ? `at least ${condition} finished span(s)` : 'the span predicate to hold';
    return this.poll(description, options, (spans) => (check(spans) ? spans : undefined));
  }

  /** Resolves with the first finished span (by start time) that matches. */
  async waitForSpan(matcher: SpanMatcher, options: WaitForSpansOptions = {}): Promise<ReadableSpan> {
    return this.poll(`a span ${describeMatcher(matcher)}`, options, (spans) => findSpan(spans, matcher));
  }

  private async poll<T>(
    description: string,
    options: WaitForSpansOptions,
    attempt: (spans: ReadableSpan[]) => T | undefined,
  ): Promise<T> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const intervalMs = options.intervalMs ?? DEFAULT_INTERVAL_MS;
    const deadline = Date.now() + timeoutMs;
    let lastError: unknown;
    for (;;) {
      const spans = this.getFinishedSpans();
      try {
        const result = attempt(spans);
        if (result !== undefined) {
          return result;
        }
      } catch (error) {
        lastError = error;
      }
      if (Date.now() >= deadline) {
        let message =
          `Timed out after ${timeoutMs} ms waiting for ${description}; ` +
          `${spans.length} finished span(s):\n${spanTree(spans)}`;
        if (lastError !== undefined) {
          message += `\n\nLast check failed with: ${lastError instanceof Error ? lastError.message : String(lastError)}`;
        }
        throw new AssertionError({ message, operator: 'waitForSpans' });
      }
      await sleep(intervalMs);
    }
  }
}

/** The process-wide recorder (same spans as any other `SpanRecorder`). */
export const spanRecorder = new SpanRecorder();
