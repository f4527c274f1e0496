import { SpanKind, SpanStatusCode, type AttributeValue, type HrTime } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';

/** Options of {@link spanTree}. */
export interface SpanTreeOptions {
  /** Span to point at with `<--` (the subject of a failed assertion). Default none. */
  mark?: ReadableSpan;
  /** Attributes shown per line before `+N more`. Default 6. */
  maxAttributes?: number;
}

const MAX_VALUE_LENGTH = 40;
const INDENT = '  ';

function compareHrTime(a: HrTime, b: HrTime): number {
  return a[0] !== b[0] ? a[0] - b[0] : a[1] - b[1];
}

/** Spans ordered by start time; the input is left untouched. */
export function byStartTime(spans: readonly ReadableSpan[]): ReadableSpan[] {
  return [...spans].sort((a, b) => compareHrTime(a.startTime, b.startTime));
}

export function kindName(kind: SpanKind): string {
  return SpanKind[kind] ?? `kind ${String(kind)}`;
}

export function statusText(span: ReadableSpan): string {
  const name = SpanStatusCode[span.status.code] ?? `status ${String(span.status.code)}`;
  return span.status.message ? `${name} ${JSON.stringify(span.status.message)}` : name;
}

function shortValue(value: AttributeValue | undefined): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > MAX_VALUE_LENGTH ? `${text.slice(0, MAX_VALUE_LENGTH - 1)}…` : text;
}

/** One line: `name [KIND] STATUS {key=value, ...} events=a,b links=N`. */
export function formatSpan(span: ReadableSpan, maxAttributes = 6): string {
  const keys = Object.keys(span.attributes);
  const shown = keys.slice(0, maxAttributes).map((key) => `${key}=${shortValue(span.attributes[key])}`);
  if (keys.length > maxAttributes) {
    shown.push(`+${keys.length - maxAttributes} more`);
  }
  let line = `${span.name} [${kindName(span.kind)}] ${statusText(span)}`;
  if (shown.length > 0) {
    line += ` {${shown.join(', ')}}`;
  }
  if (span.events.length > 0) {
    line += ` events=${span.events.map((event) => event.name).join(',')}`;
  }
  if (span.links.length > 0) {
    line += ` links=${span.links.length}`;
  }
  return line;
}

/**
 * The spans as an indented tree, one block per trace (in order of first start), children under
 * their parent in start order. A span whose parent is not among `spans` is shown at the top of its
 * trace with the missing parent's id, so a broken parent link is visible at a glance.
 */
export function spanTree(spans: readonly ReadableSpan[], options: SpanTreeOptions = {}): string {
  if (spans.length === 0) {
    return '(no spans)';
  }
  const maxAttributes = options.maxAttributes ?? 6;
  const markId = options.mark?.spanContext().spanId;

  const traces = new Map<string, ReadableSpan[]>();
  for (const span of byStartTime(spans)) {
    const traceId = span.spanContext().traceId;
    const list = traces.get(traceId);
    if (list) {
      list.push(span);
    } else {
      traces.set(traceId, [span]);
    }
  }

  const lines: string[] = [];
  for (const [traceId, list] of traces) {
    lines.push(`trace ${traceId}`);
    const ids = new Set(list.map((span) => span.spanContext().spanId));
    const children = new Map<string, ReadableSpan[]>();
    const tops: ReadableSpan[] = [];
    for (const span of list) {
      const parentId = span.parentSpanContext?.spanId;
      if (parentId && parentId !== span.spanContext().spanId && ids.has(parentId)) {
        const siblings = children.get(parentId);
        if (siblings) {
          siblings.push(span);
        } else {
          children.set(parentId, [span]);
        }
      } else {
        tops.push(span);
      }
    }

    // Guards against duplicated span ids, which would otherwise print a subtree twice.
    const printed = new Set<ReadableSpan>();
    const visit = (span: ReadableSpan, depth: number): void => {
      if (printed.has(span)) {
        return;
      }
      printed.add(span);
      let line = INDENT.repeat(depth + 1) + formatSpan(span, maxAttributes);
      const parent = span.parentSpanContext;
      if (depth === 0 && parent?.spanId) {
        line += ` (parent ${parent.spanId}${parent.isRemote ? ' remote' : ''}, not recorded)`;
      }
      if (markId !== undefined && span.spanContext().spanId === markId) {
        line += '  <--';
      }
      lines.push(line);
      for (const child of children.get(span.spanContext().spanId) ?? []) {
        visit(child, depth + 1);
      }
    };
    for (const top of tops) {
      visit(top, 0);
    }
  }
  return lines.join('\n');
}
