import {
  STATUS_CODE_ERROR,
  type LinkEnd,
  type TraceDetail,
  type TraceSummary,
  type ViewerLink,
  type ViewerLogRecord,
  type ViewerSpan,
  type WaterfallRow,
} from './devtools.interfaces.js';

export interface TraceStoreOptions {
  /** Traces kept; past it, the trace that received a span least recently is dropped whole. Default 200. */
  maxTraces?: number;
  /** Spans kept per trace; later spans of a full trace are refused and counted. Default 2000. */
  maxSpansPerTrace?: number;
  /** Log lines kept per trace; later ones are refused. Default 1000. */
  maxLogsPerTrace?: number;
}

/** What {@link TraceStore.add} did with a batch of spans. */
export interface AddResult {
  /** Spans stored. */
  accepted: number;
  /** Spans refused because their trace was full. */
  rejected: number;
  /** Spans ignored because a span with the same trace and span id was already stored (an exporter retry). */
  duplicates: number;
}

export const DEFAULT_MAX_TRACES = 200;
export const DEFAULT_MAX_SPANS_PER_TRACE = 2000;
export const DEFAULT_MAX_LOGS_PER_TRACE = 1000;
const TRACE_ID = /^[0-9a-f]{32}$/;
const SPAN_ID = /^[0-9a-f]{16}$/;
/** Longest log body kept, in characters; longer ones are cut with an ellipsis. */
const MAX_LOG_BODY = 16_384;

interface StoredTrace {
  readonly traceId: string;
  readonly spans: Map<string, ViewerSpan>;
  dropped: number;
  /** Trace ids that spans of this trace link to (this trace's own id included, for in-trace links). */
  readonly linkedTraceIds: Set<string>;
  /** Cached summary without `relatedTraceIds` (which depends on other traces); cleared on change. */
  summary: Omit<TraceSummary, 'relatedTraceIds'> | undefined;
}

function positiveInteger(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) {
    return fallback;
  }
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`TraceStore: ${name} must be a positive integer, got ${String(value)}.`);
  }
  return value;
}

function compareNanos(a: string, b: string): number {
  const left = BigInt(a);
  const right = BigInt(b);
  return left < right ? -1 : left > right ? 1 : 0;
}

function byStart(a: ViewerSpan, b: ViewerSpan): number {
  return compareNanos(a.startTimeUnixNano, b.startTimeUnixNano) || (a.spanId < b.spanId ? -1 : a.spanId > b.spanId ? 1 : 0);
}

/** A span's end, never before its start (clock skew or a broken sender). */
function endOf(span: ViewerSpan): bigint {
  const start = BigInt(span.startTimeUnixNano);
  const end = BigInt(span.endTimeUnixNano);
  return end < start ? start : end;
}

/**
 * The viewer's memory: spans grouped by trace, bounded in traces and in spans per trace.
 * Traces are kept in the order they last received a span; the stalest is evicted whole.
 */
export class TraceStore {
  readonly maxTraces: number;
  readonly maxSpansPerTrace: number;
  readonly maxLogsPerTrace: number;
  private readonly traces = new Map<string, StoredTrace>();
  /** Log lines by trace id, apart from the spans: lines often arrive before their trace's spans. */
  private readonly logLines = new Map<string, ViewerLogRecord[]>();

  constructor(options: TraceStoreOptions = {}) {
    this.maxTraces = positiveInteger(options.maxTraces, DEFAULT_MAX_TRACES, 'maxTraces');
    this.maxSpansPerTrace = positiveInteger(options.maxSpansPerTrace, DEFAULT_MAX_SPANS_PER_TRACE, 'maxSpansPerTrace');
    this.maxLogsPerTrace = positiveInteger(options.maxLogsPerTrace, DEFAULT_MAX_LOGS_PER_TRACE, 'maxLogsPerTrace');
  }

  /**
   * Keeps log lines with the trace their `traceId` names (the sample runner gives the lines it
   * read from the services' output). Lines without a valid trace id are ignored; the lines of at
   * most `maxTraces` traces are kept (the stalest go first), `maxLogsPerTrace` per trace.
   * Returns how many were kept.
   */
  addLogs(records: readonly ViewerLogRecord[]): number {
    let kept = 0;
    for (const record of records) {
      const traceId = typeof record?.traceId === 'string' ? record.traceId.toLowerCase() : '';
      if (!TRACE_ID.test(traceId) || typeof record.body !== 'string') {
        continue;
      }
      const lines = this.logLines.get(traceId) ?? [];
      this.logLines.delete(traceId);
      this.logLines.set(traceId, lines);
      if (lines.length >= this.maxLogsPerTrace) {
        continue;
      }
      const spanId = typeof record.spanId === 'string' && SPAN_ID.test(record.spanId.toLowerCase()) ? record.spanId.toLowerCase() : undefined;
      lines.push({
        traceId,
        ...(spanId ? { spanId } : {}),
        timeUnixNano: /^\d{1,20}$/.test(String(record.timeUnixNano)) ? String(record.timeUnixNano) : '0',
        service: typeof record.service === 'string' ? record.service : '',
        severity: typeof record.severity === 'string' ? record.severity : '',
        body: record.body.length > MAX_LOG_BODY ? `${record.body.slice(0, MAX_LOG_BODY)}…` : record.body,
      });
      kept++;
    }
    for (const traceId of this.logLines.keys()) {
      if (this.logLines.size <= this.maxTraces) {
        break;
      }
      this.logLines.delete(traceId);
    }
    return kept;
  }

  /** The log lines of a trace, oldest first (by time, then in the order given). */
  logs(traceId: string): ViewerLogRecord[] {
    const lines = this.logLines.get(traceId) ?? [];
    return lines
      .map((line, index) => ({ line, index }))
      .sort((a, b) => compareNanos(a.line.timeUnixNano, b.line.timeUnixNano) || a.index - b.index)
      .map(({ line }) => line);
  }

  /** Number of traces held. */
  get size(): number {
    return this.traces.size;
  }

  add(spans: readonly ViewerSpan[]): AddResult {
    const result: AddResult = { accepted: 0, rejected: 0, duplicates: 0 };
    for (const span of spans) {
      let trace = this.traces.get(span.traceId);
      if (trace) {
        // Move to the back: the most recently updated trace is the last one evicted.
        this.traces.delete(span.traceId);
      } else {
        trace = { traceId: span.traceId, spans: new Map(), dropped: 0, linkedTraceIds: new Set(), summary: undefined };
      }
      this.traces.set(span.traceId, trace);
      if (trace.spans.has(span.spanId)) {
        result.duplicates++;
        continue;
      }
      trace.summary = undefined;
      if (trace.spans.size >= this.maxSpansPerTrace) {
        trace.dropped++;
        result.rejected++;
        continue;
      }
      trace.spans.set(span.spanId, span);
      for (const link of span.links) {
        trace.linkedTraceIds.add(link.traceId);
      }
      result.accepted++;
    }
    for (const traceId of this.traces.keys()) {
      if (this.traces.size <= this.maxTraces) {
        break;
      }
      this.traces.delete(traceId);
    }
    return result;
  }

  clear(): void {
    this.traces.clear();
    this.logLines.clear();
  }

  /** Every stored trace, newest start first. */
  list(): TraceSummary[] {
    const related = this.relatedTraceIds();
    return [...this.traces.values()]
      .map((trace) => ({ ...this.summaryOf(trace), relatedTraceIds: [...(related.get(trace.traceId) ?? [])].sort() }))
      .sort((a, b) => compareNanos(b.startTimeUnixNano, a.startTimeUnixNano) || (a.traceId < b.traceId ? -1 : 1));
  }

  /** The stored spans of a trace, in arrival order; empty when unknown. */
  spans(traceId: string): ViewerSpan[] {
    return [...(this.traces.get(traceId)?.spans.values() ?? [])];
  }

  summary(traceId: string): TraceSummary | undefined {
    const trace = this.traces.get(traceId);
    if (!trace) {
      return undefined;
    }
    return { ...this.summaryOf(trace), relatedTraceIds: [...(this.relatedTraceIds().get(traceId) ?? [])].sort() };
  }

  /** The trace as waterfall rows, or `undefined` when it is not stored. */
  get(traceId: string): TraceDetail | undefined {
    const trace = this.traces.get(traceId);
    const summary = this.summary(traceId);
    if (!trace || !summary) {
      return undefined;
    }
    const linkedFrom = this.incomingLinks(traceId);
    const rows: WaterfallRow[] = this.treeOrder(trace).map(({ span, depth, parentMissing }) => ({
      span,
      depth,
      parentMissing,
      linksTo: span.links.map((link) => this.linkEnd(link.traceId, link.spanId, span.traceId, link.attributes)),
      linkedFrom: linkedFrom.get(span.spanId) ?? [],
    }));
    return { summary, rows, logs: this.logs(traceId) };
  }

  private linkEnd(traceId: string, spanId: string, fromTraceId: string, attributes: ViewerLink['attributes']): LinkEnd {
    const target = this.traces.get(traceId)?.spans.get(spanId);
    const end: LinkEnd = { traceId, spanId, sameTrace: traceId === fromTraceId, found: target !== undefined, attributes };
    if (target) {
      end.name = target.name;
      end.service = target.service;
    }
    return end;
  }

  /** Spans (of any stored trace) linking into `traceId`, by the span id they point at. */
  private incomingLinks(traceId: string): Map<string, LinkEnd[]> {
    const incoming = new Map<string, LinkEnd[]>();
    for (const source of this.traces.values()) {
      if (!source.linkedTraceIds.has(traceId)) {
        continue;
      }
      for (const span of source.spans.values()) {
        for (const link of span.links) {
          if (link.traceId !== traceId) {
            continue;
          }
          const ends = incoming.get(link.spanId) ?? [];
          ends.push({
            traceId: span.traceId,
            spanId: span.spanId,
            sameTrace: span.traceId === traceId,
            found: true,
            name: span.name,
            service: span.service,
            attributes: link.attributes,
          });
          incoming.set(link.spanId, ends);
        }
      }
    }
    return incoming;
  }

  /** For each stored trace: the other stored traces it links to or is linked from. */
  private relatedTraceIds(): Map<string, Set<string>> {
    const related = new Map<string, Set<string>>();
    const relate = (a: string, b: string): void => {
      const set = related.get(a) ?? new Set<string>();
      set.add(b);
      related.set(a, set);
    };
    for (const trace of this.traces.values()) {
      for (const target of trace.linkedTraceIds) {
        if (target !== trace.traceId && this.traces.has(target)) {
          relate(trace.traceId, target);
          relate(target, trace.traceId);
        }
      }
    }
    return related;
  }

  private summaryOf(trace: StoredTrace): Omit<TraceSummary, 'relatedTraceIds'> {
    if (trace.summary) {
      return trace.summary;
    }
    const spans = [...trace.spans.values()].sort(byStart);
    const roots = spans.filter((span) => span.parentSpanId === undefined);
    // Without a received root, the earliest span whose parent is unknown stands for it.
    const root = roots[0] ?? spans.find((span) => !trace.spans.has(span.parentSpanId!)) ?? spans[0];
    const services: string[] = [];
    let start: bigint | undefined;
    let end: bigint | undefined;
    let errorCount = 0;
    for (const span of spans) {
      if (!services.includes(span.service)) {
        services.push(span.service);
      }
      const spanStart = BigInt(span.startTimeUnixNano);
      const spanEnd = endOf(span);
      start = start === undefined || spanStart < start ? spanStart : start;
      end = end === undefined || spanEnd > end ? spanEnd : end;
      if (span.status.code === STATUS_CODE_ERROR) {
        errorCount++;
      }
    }
    trace.summary = {
      traceId: trace.traceId,
      rootName: root?.name ?? '',
      rootService: root?.service ?? '',
      rootMissing: roots.length === 0,
      services,
      spanCount: trace.spans.size,
      droppedSpans: trace.dropped,
      startTimeUnixNano: (start ?? 0n).toString(),
      endTimeUnixNano: (end ?? 0n).toString(),
      durationMs: Number((end ?? 0n) - (start ?? 0n)) / 1e6,
      error: errorCount > 0,
      errorCount,
    };
    return trace.summary;
  }

  /**
   * Depth-first from the roots, children by start time. A span whose parent was not received is a
   * root of its own (`parentMissing`); spans caught in a parent cycle (a broken sender) are too.
   */
  private treeOrder(trace: StoredTrace): Array<{ span: ViewerSpan; depth: number; parentMissing: boolean }> {
    const spans = [...trace.spans.values()].sort(byStart);
    const children = new Map<string, ViewerSpan[]>();
    for (const span of spans) {
      if (span.parentSpanId !== undefined && span.parentSpanId !== span.spanId && trace.spans.has(span.parentSpanId)) {
        const siblings = children.get(span.parentSpanId) ?? [];
        siblings.push(span);
        children.set(span.parentSpanId, siblings);
      }
    }
    const ordered: Array<{ span: ViewerSpan; depth: number; parentMissing: boolean }> = [];
    const visited = new Set<string>();
    const visit = (top: ViewerSpan, parentMissing: boolean): void => {
      // Iterative, so a pathological chain of 2000 spans cannot overflow the stack.
      const stack: Array<{ span: ViewerSpan; depth: number }> = [{ span: top, depth: 0 }];
      let first = true;
      while (stack.length > 0) {
        const { span, depth } = stack.pop()!;
        if (visited.has(span.spanId)) {
          continue;
        }
        visited.add(span.spanId);
        ordered.push({ span, depth, parentMissing: first && parentMissing });
        first = false;
        const kids = children.get(span.spanId) ?? [];
        for (let index = kids.length - 1; index >= 0; index--) {
          stack.push({ span: kids[index]!, depth: depth + 1 });
        }
      }
    };
    for (const span of spans) {
      const isTop = span.parentSpanId === undefined || !trace.spans.has(span.parentSpanId) || span.parentSpanId === span.spanId;
      if (isTop) {
        visit(span, span.parentSpanId !== undefined && span.parentSpanId !== span.spanId);
      }
    }
    // Whatever is left hangs in a parent cycle: show it rather than lose it.
    for (const span of spans) {
      if (!visited.has(span.spanId)) {
        visit(span, true);
      }
    }
    return ordered;
  }
}
