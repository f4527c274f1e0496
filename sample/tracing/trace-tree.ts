/**
 * Prints a trace as an indented tree, one line per span: name, service, kind, duration, and notes
 * (message pattern, HTTP or gRPC status, ERROR with its message, links). Works on spans as OTLP/JSON delivers them, e.g.
 * from the trace viewer of `otel-nest/devtools` or any OTLP receiver.
 */

/** The fields of a span decoded from OTLP/JSON that the tree needs. */
export interface TreeSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  /** OTLP span kind: 1 INTERNAL, 2 SERVER, 3 CLIENT, 4 PRODUCER, 5 CONSUMER. */
  kind: number;
  /** Nanoseconds since the epoch, as a decimal string. */
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  /** OTLP status code: 0 UNSET, 1 OK, 2 ERROR. */
  status: { code: number; message: string };
  attributes: Record<string, unknown>;
  links: ReadonlyArray<{ traceId: string; spanId: string; attributes?: Record<string, unknown> }>;
  resource: Record<string, unknown>;
}

const KINDS = ['UNSPECIFIED', 'INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER'];
const STATUS_ERROR = 2;

export const serviceOf = (span: TreeSpan): string => String(span.resource['service.name'] ?? 'unknown_service');

export const durationMs = (span: TreeSpan): number =>
  Number(BigInt(span.endTimeUnixNano) - BigInt(span.startTimeUnixNano)) / 1e6;

/**
 * By start time, then by end time: the SDK records start times in whole milliseconds, so spans
 * that ran one after the other within a millisecond have the same start.
 */
export function compareStart(a: TreeSpan, b: TreeSpan): number {
  for (const key of ['startTimeUnixNano', 'endTimeUnixNano'] as const) {
    const [x, y] = [BigInt(a[key]), BigInt(b[key])];
    if (x !== y) {
      return x < y ? -1 : 1;
    }
  }
  return 0;
}

function notes(span: TreeSpan, byId: ReadonlyMap<string, TreeSpan>): string {
  const parts: string[] = [];
  // RabbitMQ spans are named after the queue; the Nest pattern tells the messages apart.
  const pattern = span.attributes['nestjs.pattern'];
  if (typeof pattern === 'string' && !span.name.endsWith(pattern)) {
    parts.push(`(${pattern})`);
  }
  const status = span.attributes['http.response.status_code'] ?? span.attributes['rpc.status_code'];
  if (status !== undefined) {
    parts.push(String(status));
  }
  if (span.status.code === STATUS_ERROR) {
    parts.push(span.status.message ? `ERROR ${JSON.stringify(span.status.message)}` : 'ERROR');
  }
  // One note per linked span; a saga's link types (compensated_step, failed_step) in parentheses.
  const linked = new Map<string, string[]>();
  for (const link of span.links) {
    const target = byId.get(link.spanId);
    const label = target ? `${target.name} [${serviceOf(target)}]` : `${link.traceId}/${link.spanId}`;
    const type = link.attributes?.['saga.link.type'];
    linked.set(label, [...(linked.get(label) ?? []), ...(type === undefined ? [] : [String(type)])]);
  }
  for (const [label, types] of linked) {
    parts.push(`link → ${label}${types.length > 0 ? ` (${types.join(', ')})` : ''}`);
  }
  return parts.join('  ');
}

/**
 * The spans of one trace as a tree. A span whose parent was not received (it is in a service that
 * does not export here) starts a top-level line.
 */
export function formatTraceTree(spans: readonly TreeSpan[]): string {
  if (spans.length === 0) {
    return '(no spans)';
  }
  const sorted = [...spans].sort(compareStart);
  const byId = new Map(sorted.map((span) => [span.spanId, span]));
  const children = new Map<string, TreeSpan[]>();
  const tops: TreeSpan[] = [];
  for (const span of sorted) {
    if (span.parentSpanId !== undefined && byId.has(span.parentSpanId)) {
      children.set(span.parentSpanId, [...(children.get(span.parentSpanId) ?? []), span]);
    } else {
      tops.push(span);
    }
  }

  const rows: Array<{ tree: string; span: TreeSpan }> = [];
  const visit = (span: TreeSpan, prefix: string, connector: string): void => {
    rows.push({ tree: `${prefix}${connector}${span.name}`, span });
    const kids = children.get(span.spanId) ?? [];
    const childPrefix = prefix + (connector === '├─ ' ? '│  ' : connector === '└─ ' ? '   ' : '');
    kids.forEach((child, index) => visit(child, childPrefix, index === kids.length - 1 ? '└─ ' : '├─ '));
  };
  tops.forEach((top) => visit(top, '', ''));

  const nameWidth = Math.max(...rows.map((row) => row.tree.length));
  const serviceWidth = Math.max(...rows.map((row) => serviceOf(row.span).length));
  const services = new Set(sorted.map(serviceOf));
  const header = `trace ${sorted[0]!.traceId}: ${sorted.length} spans, ${services.size} services (${[...services].join(', ')})`;
  const lines = rows.map(({ tree, span }) =>
    [
      tree.padEnd(nameWidth),
      serviceOf(span).padEnd(serviceWidth),
      (KINDS[span.kind] ?? String(span.kind)).padEnd(8),
      `${durationMs(span).toFixed(1).padStart(7)} ms`,
      notes(span, byId),
    ]
      .join('  ')
      .trimEnd(),
  );
  return [header, ...lines].join('\n');
}
