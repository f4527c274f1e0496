import { AssertionError } from 'node:assert';
import { isDeepStrictEqual } from 'node:util';
import type { Attributes, SpanContext, SpanKind } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { byStartTime, kindName, spanTree } from './span-tree.js';

export type SpanPredicate = (span: ReadableSpan) => boolean;

/** Every given field must match: name (exact or RegExp), kind, trace id, attributes (each key deep-equal). */
export interface SpanFilter {
  name?: string | RegExp;
  kind?: SpanKind;
  traceId?: string;
  attributes?: Attributes;
}

/** A span name (exact), a RegExp tested against the name, a predicate, or a {@link SpanFilter}. */
export type SpanMatcher = string | RegExp | SpanPredicate | SpanFilter;

/** A recorded span, or the context of one (e.g. a remote parent a test injected itself). */
export type SpanReference = ReadableSpan | SpanContext;

export function isReadableSpan(value: SpanReference): value is ReadableSpan {
  return typeof (value as ReadableSpan).spanContext === 'function';
}

export function contextOf(reference: SpanReference): SpanContext {
  return isReadableSpan(reference) ? reference.spanContext() : reference;
}

function matchesName(name: string, expected: string | RegExp): boolean {
  // `search` ignores `lastIndex`, so a global RegExp gives the same answer on every call.
  return typeof expected === 'string' ? name === expected : name.search(expected) !== -1;
}

export function matchesSpan(span: ReadableSpan, matcher: SpanMatcher): boolean {
  if (typeof matcher === 'string' || matcher instanceof RegExp) {
    return matchesName(span.name, matcher);
  }
  if (typeof matcher === 'function') {
    return matcher(span);
  }
  if (matcher.name !== undefined && !matchesName(span.name, matcher.name)) {
    return false;
  }
  if (matcher.kind !== undefined && span.kind !== matcher.kind) {
    return false;
  }
  if (matcher.traceId !== undefined && span.spanContext().traceId !== matcher.traceId) {
    return false;
  }
  const attributes = matcher.attributes ?? {};
  return Object.keys(attributes).every(
    (key) => Object.hasOwn(span.attributes, key) && isDeepStrictEqual(span.attributes[key], attributes[key]),
  );
}

export function describeMatcher(matcher: SpanMatcher): string {
  if (typeof matcher === 'string') {
    return `named ${JSON.stringify(matcher)}`;
  }
  if (matcher instanceof RegExp) {
    return `named like ${String(matcher)}`;
  }
  if (typeof matcher === 'function') {
    return `matching ${matcher.name ? `predicate ${matcher.name}` : 'the predicate'}`;
  }
  const parts: string[] = [];
  if (matcher.name !== undefined) {
    parts.push(`name ${typeof matcher.name === 'string' ? JSON.stringify(matcher.name) : String(matcher.name)}`);
  }
  if (matcher.kind !== undefined) {
    parts.push(`kind ${kindName(matcher.kind)}`);
  }
  if (matcher.traceId !== undefined) {
    parts.push(`trace ${matcher.traceId}`);
  }
  if (matcher.attributes !== undefined) {
    parts.push(`attributes ${JSON.stringify(matcher.attributes)}`);
  }
  return parts.length > 0 ? `with ${parts.join(', ')}` : 'matching {}';
}

/** All spans that match, in start order. */
export function findSpans(spans: readonly ReadableSpan[], matcher: SpanMatcher): ReadableSpan[] {
  return byStartTime(spans.filter((span) => matchesSpan(span, matcher)));
}

/** The first span (by start time) that matches, or `undefined`. */
export function findSpan(spans: readonly ReadableSpan[], matcher: SpanMatcher): ReadableSpan | undefined {
  return findSpans(spans, matcher)[0];
}

/** The one span that matches; throws an `AssertionError` (with the span tree) when there are none or several. */
export function getSpan(spans: readonly ReadableSpan[], matcher: SpanMatcher): ReadableSpan {
  const found = findSpans(spans, matcher);
  if (found.length !== 1) {
    throw new AssertionError({
      message:
        `Expected exactly one span ${describeMatcher(matcher)}, found ${found.length}.\n\n` +
        `Spans:\n${spanTree(spans)}`,
      actual: found.length,
      expected: 1,
      operator: 'getSpan',
      stackStartFn: getSpan,
    });
  }
  return found[0]!;
}

/** Every span of the trace `span` belongs to, in start order (`span` included when it is in `spans`). */
export function traceOf(spans: readonly ReadableSpan[], span: SpanReference): ReadableSpan[] {
  const traceId = contextOf(span).traceId;
  return byStartTime(spans.filter((candidate) => candidate.spanContext().traceId === traceId));
}

/** The direct children of `span`, in start order. */
export function childrenOf(spans: readonly ReadableSpan[], span: SpanReference): ReadableSpan[] {
  const { traceId, spanId } = contextOf(span);
  return byStartTime(
    spans.filter(
      (candidate) =>
        candidate.spanContext().traceId === traceId && candidate.parentSpanContext?.spanId === spanId,
    ),
  );
}
