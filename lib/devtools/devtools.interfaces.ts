/**
 * The trace viewer's data model: spans as decoded from OTLP/JSON, and what the JSON API
 * (`GET /api/traces`, `GET /api/traces/:id`) answers. Everything here is plain JSON.
 */

/**
 * An OTLP AnyValue, decoded: a kvlist becomes an object, an array an array, an empty value `null`,
 * an int64 a number (a decimal string when it would lose precision), bytes a base64 string.
 */
export type ViewerValue = string | number | boolean | null | ViewerValue[] | { [key: string]: ViewerValue };

export type ViewerAttributes = Record<string, ViewerValue>;

/** OTLP span kinds, indexed by their number (`0` UNSPECIFIED to `5` CONSUMER). */
export const SPAN_KIND_NAMES = ['UNSPECIFIED', 'INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER'] as const;

/** OTLP status codes, indexed by their number. */
export const STATUS_CODE_NAMES = ['UNSET', 'OK', 'ERROR'] as const;

/** `status.code` of a failed span. */
export const STATUS_CODE_ERROR = 2;

export interface ViewerLink {
  /** 32 lower-case hex digits. */
  traceId: string;
  /** 16 lower-case hex digits. */
  spanId: string;
  traceState?: string;
  attributes: ViewerAttributes;
}

export interface ViewerEvent {
  name: string;
  /** Nanoseconds since the epoch, as a decimal string. */
  timeUnixNano: string;
  attributes: ViewerAttributes;
}

export interface ViewerSpan {
  /** 32 lower-case hex digits. */
  traceId: string;
  /** 16 lower-case hex digits. */
  spanId: string;
  /** Absent for a root span. */
  parentSpanId?: string;
  traceState?: string;
  /**
   * OTLP span flags: the low 8 bits are the W3C trace flags (0x01 sampled, 0x02 random); 0x100 /
   * 0x200 say whether the parent is known to be remote. 0 when the sender set none.
   */
  flags: number;
  name: string;
  /** As in OTLP: 0 UNSPECIFIED, 1 INTERNAL, 2 SERVER, 3 CLIENT, 4 PRODUCER, 5 CONSUMER. */
  kind: number;
  /** Nanoseconds since the epoch, as a decimal string. */
  startTimeUnixNano: string;
  /** Nanoseconds since the epoch, as a decimal string. */
  endTimeUnixNano: string;
  attributes: ViewerAttributes;
  /** 0 UNSET, 1 OK, 2 ERROR; `message` is `''` when none was sent. */
  status: { code: number; message: string };
  events: ViewerEvent[];
  links: ViewerLink[];
  /** The attributes of the resource that sent the span. */
  resource: ViewerAttributes;
  /** `service.name` of the resource, or `unknown_service` when it has none. */
  service: string;
  scope: { name: string; version?: string };
}

/** One line of the trace list. */
export interface TraceSummary {
  traceId: string;
  /** Name of the root span; when no root span was received, of the earliest span (see `rootMissing`). */
  rootName: string;
  /** Service of that span. */
  rootService: string;
  /** No span without a parent was received (yet): the trace started in a service that does not export here. */
  rootMissing: boolean;
  /** Services in the order their first span started. */
  services: string[];
  spanCount: number;
  /** Spans refused because the trace already held `maxSpansPerTrace`. */
  droppedSpans: number;
  /** Earliest span start, nanoseconds since the epoch as a decimal string. */
  startTimeUnixNano: string;
  /** Latest span end, nanoseconds since the epoch as a decimal string. */
  endTimeUnixNano: string;
  durationMs: number;
  /** Some span has status ERROR. */
  error: boolean;
  errorCount: number;
  /** Stored traces that this trace links to or that link to it, sorted. */
  relatedTraceIds: string[];
}

/** The other end of a span link. */
export interface LinkEnd {
  traceId: string;
  spanId: string;
  /** The linked span is in the same trace as the span that shows this link. */
  sameTrace: boolean;
  /** The linked span is stored (its trace was received and not evicted). */
  found: boolean;
  /** Name and service of the linked span, when found. */
  name?: string;
  service?: string;
  /** Attributes of the link itself. */
  attributes: ViewerAttributes;
}

/** One row of the waterfall: the spans of a trace in tree order (a parent before its children, siblings by start). */
export interface WaterfallRow {
  span: ViewerSpan;
  /** 0 for a root (or an orphan), parent depth + 1 otherwise. */
  depth: number;
  /** The span names a parent that was not received. */
  parentMissing: boolean;
  /** The span's own links, in order ("linked to"). */
  linksTo: LinkEnd[];
  /** Stored spans whose links point at this span ("linked from"), in any trace. */
  linkedFrom: LinkEnd[];
}

/** A log line that belongs to a trace (found by its trace id), as the viewer shows it under the waterfall. */
export interface ViewerLogRecord {
  traceId: string;
  /** The span that was active when the line was written, when known. */
  spanId?: string;
  /** When the line was written (or received), nanoseconds since the epoch as a decimal string. */
  timeUnixNano: string;
  /** The service that wrote it. */
  service: string;
  /** `INFO`, `WARN`, ... as the logger said; `''` when unknown. */
  severity: string;
  /** The line as written. */
  body: string;
}

export interface TraceDetail {
  summary: TraceSummary;
  rows: WaterfallRow[];
  /** The trace's log lines, oldest first; empty when none were given to the viewer. */
  logs: ViewerLogRecord[];
}
