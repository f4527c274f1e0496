import { SpanKind, SpanStatusCode, type AttributeValue } from '@opentelemetry/api';
import { hrTimeToMilliseconds } from '@opentelemetry/core';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';

// Standard HTTP and Nest attributes are on every span and mostly repeat the span name; the tree
// shows only these few of them, and every attribute of the application's own (order.id, tenant.id).
const HIDDEN_PREFIXES = ['http.', 'url.', 'server.', 'client.', 'network.', 'user_agent.', 'code.', 'nestjs.'];
const SHOWN_STANDARD = new Set(['http.response.status_code', 'url.full', 'error.type']);
const INDENT = '  ';

function compareStart(a: ReadableSpan, b: ReadableSpan): number {
  const [as, ans] = a.startTime;
  const [bs, bns] = b.startTime;
  return as !== bs ? as - bs : ans - bns;
}

function formatValue(value: AttributeValue | undefined): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** One line: `name [KIND] 1.2 ms ERROR "why"  key=value ...  events: a, b`. */
export function formatSpanLine(span: ReadableSpan): string {
  let line = `${span.name} [${SpanKind[span.kind]}] ${hrTimeToMilliseconds(span.duration).toFixed(1)} ms`;
  if (span.status.code === SpanStatusCode.ERROR) {
    line += span.status.message ? ` ERROR ${JSON.stringify(span.status.message)}` : ' ERROR';
  }
  const attributes = Object.entries(span.attributes)
    .filter(([key]) => SHOWN_STANDARD.has(key) || !HIDDEN_PREFIXES.some((prefix) => key.startsWith(prefix)))
    .map(([key, value]) => `${key}=${formatValue(value)}`);
  if (attributes.length > 0) {
    line += `  ${attributes.join(' ')}`;
  }
  if (span.events.length > 0) {
    line += `  events: ${span.events.map((event) => event.name).join(', ')}`;
  }
  return line;
}

/**
 * The spans of one trace as an indented tree, children under their parent in start order. A span
 * whose parent is not among `spans` (the caller's span, in another process) starts a top level line
 * that names that parent.
 */
export function formatTraceTree(traceId: string, spans: readonly ReadableSpan[]): string {
  const sorted = [...spans].sort(compareStart);
  const ids = new Set(sorted.map((span) => span.spanContext().spanId));
  const children = new Map<string, ReadableSpan[]>();
  const tops: ReadableSpan[] = [];
  for (const span of sorted) {
    const parentId = span.parentSpanContext?.spanId;
    if (parentId !== undefined && ids.has(parentId)) {
      children.set(parentId, [...(children.get(parentId) ?? []), span]);
    } else {
      tops.push(span);
    }
  }

  const lines = [`trace ${traceId}`];
  const visit = (span: ReadableSpan, depth: number): void => {
    let line = INDENT.repeat(depth) + formatSpanLine(span);
    const parent = span.parentSpanContext;
    if (depth === 0 && parent !== undefined) {
      line += `  (parent ${parent.spanId}${parent.isRemote ? ', remote' : ''})`;
    }
    lines.push(line);
    for (const child of children.get(span.spanContext().spanId) ?? []) {
      visit(child, depth + 1);
    }
  };
  for (const top of tops) {
    visit(top, 0);
  }
  return lines.join('\n');
}
