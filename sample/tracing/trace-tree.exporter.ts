import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { formatTraceTree } from './trace-tree.js';

/** Options of {@link TraceTreeExporter}. */
export interface TraceTreeExporterOptions {
  /**
   * Print each trace to the console once no span of it has ended for `quietMs` (a running server
   * never knows that a trace is complete). Default `false`: read the spans with `formatTrace()`.
   */
  printEachTrace?: boolean;
  /** Default 250 ms. */
  quietMs?: number;
  /** Spans kept in memory; the oldest are dropped first. Default 5000. */
  maxSpans?: number;
}

/**
 * A SpanExporter that keeps the finished spans in memory and prints traces as indented trees, so
 * the sample shows its traces without a collector. Give it to the SDK with a SimpleSpanProcessor
 * (or `OtelModule.forRoot({ exporter, batch: false })`) so every span arrives as soon as it ends.
 */
export class TraceTreeExporter implements SpanExporter {
  private spans: ReadableSpan[] = [];
  private readonly pending = new Map<string, NodeJS.Timeout>();
  private readonly printEachTrace: boolean;
  private readonly quietMs: number;
  private readonly maxSpans: number;

  constructor(options: TraceTreeExporterOptions = {}) {
    this.printEachTrace = options.printEachTrace ?? false;
    this.quietMs = options.quietMs ?? 250;
    this.maxSpans = options.maxSpans ?? 5000;
  }

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    this.spans.push(...spans);
    if (this.spans.length > this.maxSpans) {
      this.spans = this.spans.slice(-this.maxSpans);
    }
    if (this.printEachTrace) {
      for (const traceId of new Set(spans.map((span) => span.spanContext().traceId))) {
        this.schedulePrint(traceId);
      }
    }
    resultCallback({ code: ExportResultCode.SUCCESS });
  }

  /** The finished spans, of one trace or of all, in the order they ended. */
  getSpans(traceId?: string): ReadableSpan[] {
    return traceId === undefined ? [...this.spans] : this.spans.filter((span) => span.spanContext().traceId === traceId);
  }

  /** The trace as an indented tree; `(no spans in trace ...)` when none were recorded. */
  formatTrace(traceId: string): string {
    const spans = this.getSpans(traceId);
    return spans.length > 0 ? formatTraceTree(traceId, spans) : `(no spans in trace ${traceId})`;
  }

  forceFlush(): Promise<void> {
    for (const traceId of this.pending.keys()) {
      this.print(traceId);
    }
    return Promise.resolve();
  }

  /** Prints what is pending and keeps the spans, so that they can still be read after the app closed. */
  shutdown(): Promise<void> {
    return this.forceFlush();
  }

  private schedulePrint(traceId: string): void {
    clearTimeout(this.pending.get(traceId));
    // unref: a trace waiting to be printed never keeps the process alive.
    this.pending.set(traceId, setTimeout(() => this.print(traceId), this.quietMs).unref());
  }

  private print(traceId: string): void {
    clearTimeout(this.pending.get(traceId));
    this.pending.delete(traceId);
    console.log(`\n${this.formatTrace(traceId)}\n`);
  }
}
