import { AssertionError } from 'node:assert';
import { isDeepStrictEqual } from 'node:util';
import { SpanStatusCode, type Attributes, type SpanContext, type SpanKind } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { contextOf, isReadableSpan, type SpanReference } from './span-query.js';
import { spanRecorder } from './span-recorder.js';
import { formatSpan, kindName, spanTree } from './span-tree.js';

function describeReference(reference: SpanReference): string {
  const { traceId, spanId } = contextOf(reference);
  const name = isReadableSpan(reference) ? `"${reference.name}" ` : '';
  return `${name}(trace ${traceId}, span ${spanId})`;
}

function describeName(expected: string | RegExp): string {
  return typeof expected === 'string' ? JSON.stringify(expected) : String(expected);
}

function matchesText(actual: string | undefined, expected: string | RegExp): boolean {
  if (actual === undefined) {
    return false;
  }
  return typeof expected === 'string' ? actual === expected : actual.search(expected) !== -1;
}

/** Keys of `expected` whose value in `actual` is missing or not deep-equal. */
function mismatchedKeys(actual: Attributes, expected: Attributes): string[] {
  return Object.keys(expected).filter(
    (key) => !Object.hasOwn(actual, key) || !isDeepStrictEqual(actual[key], expected[key]),
  );
}

/**
 * Fluent assertions on one span. Each method returns `this`, or throws a `node:assert`
 * `AssertionError` whose message shows the span and the tree of the traces involved.
 */
export class SpanExpectation {
  constructor(
    readonly span: ReadableSpan,
    private readonly spans?: readonly ReadableSpan[],
  ) {}

  toHaveName(expected: string | RegExp): this {
    if (!matchesText(this.span.name, expected)) {
      this.fail(`Expected span name ${describeName(expected)}, got ${JSON.stringify(this.span.name)}.`, {
        actual: this.span.name,
        expected,
        stackStartFn: this.toHaveName,
      });
    }
    return this;
  }

  toHaveKind(expected: SpanKind): this {
    if (this.span.kind !== expected) {
      this.fail(`Expected kind ${kindName(expected)}, got ${kindName(this.span.kind)}.`, {
        actual: kindName(this.span.kind),
        expected: kindName(expected),
        stackStartFn: this.toHaveKind,
      });
    }
    return this;
  }

  /**
   * The span's parent is `parent`: same trace id and `parentSpanContext.spanId` equal to the
   * parent's span id. A name or RegExp is checked against the recorded span that is the actual parent.
   */
  toHaveParent(parent: SpanReference | string | RegExp): this {
    const own = this.span.spanContext();
    const actualParent = this.span.parentSpanContext;
    if (typeof parent === 'string' || parent instanceof RegExp) {
      if (!actualParent?.spanId) {
        this.fail(`Expected a parent span named ${describeName(parent)}, but the span is a root.`, {
          stackStartFn: this.toHaveParent,
        });
      }
      const recorded = this.context().find(
        (candidate) =>
          candidate.spanContext().traceId === own.traceId && candidate.spanContext().spanId === actualParent.spanId,
      );
      if (!recorded) {
        this.fail(
          `Expected a parent span named ${describeName(parent)}, but the parent ` +
            `(span ${actualParent.spanId}${actualParent.isRemote ? ', remote' : ''}) is not among the recorded spans.`,
          { stackStartFn: this.toHaveParent },
        );
      }
      if (!matchesText(recorded.name, parent)) {
        this.fail(
          `Expected a parent span named ${describeName(parent)}, but the parent is ${JSON.stringify(recorded.name)}.`,
          { actual: recorded.name, expected: parent, stackStartFn: this.toHaveParent },
        );
      }
      return this;
    }

    const expected = contextOf(parent);
    if (own.traceId !== expected.traceId) {
      this.fail(
        `Expected the parent to be ${describeReference(parent)}, but the span is in another trace (${own.traceId}).`,
        { actual: own.traceId, expected: expected.traceId, stackStartFn: this.toHaveParent, related: parent },
      );
    }
    if (actualParent?.spanId !== expected.spanId) {
      const actualText = actualParent?.spanId ? `span ${actualParent.spanId}` : 'none (the span is a root)';
      this.fail(`Expected the parent to be ${describeReference(parent)}, but the parent is ${actualText}.`, {
        actual: actualParent?.spanId,
        expected: expected.spanId,
        stackStartFn: this.toHaveParent,
        related: parent,
      });
    }
    return this;
  }

  /** The span has no parent (a remote parent counts as a parent). */
  toBeRoot(): this {
    const parent = this.span.parentSpanContext;
    if (parent?.spanId) {
      this.fail(
        `Expected a root span, but it has parent span ${parent.spanId}${parent.isRemote ? ' (remote)' : ''}.`,
        { stackStartFn: this.toBeRoot },
      );
    }
    return this;
  }

  toBeInTraceOf(other: SpanReference): this {
    const actual = this.span.spanContext().traceId;
    const expected = contextOf(other).traceId;
    if (actual !== expected) {
      this.fail(`Expected the span to be in the trace of ${describeReference(other)}, but it is in trace ${actual}.`, {
        actual,
        expected,
        stackStartFn: this.toBeInTraceOf,
        related: other,
      });
    }
    return this;
  }

  /** The span has a link to `target` (trace id and span id), whose attributes include `attributes` if given. */
  toLinkTo(target: SpanReference, attributes?: Attributes): this {
    const expected = contextOf(target);
    const links = this.span.links.filter(
      (link) => link.context.traceId === expected.traceId && link.context.spanId === expected.spanId,
    );
    const actualLinks = this.span.links.map((link) => `${link.context.traceId}/${link.context.spanId}`);
    if (links.length === 0) {
      this.fail(
        `Expected a link to ${describeReference(target)}; the span's links: ` +
          `${actualLinks.length > 0 ? actualLinks.join(', ') : 'none'}.`,
        { stackStartFn: this.toLinkTo, related: target },
      );
    }
    if (attributes && !links.some((link) => mismatchedKeys(link.attributes ?? {}, attributes).length === 0)) {
      this.fail(
        `Expected the link to ${describeReference(target)} to have attributes ${JSON.stringify(attributes)}, ` +
          `got ${links.map((link) => JSON.stringify(link.attributes ?? {})).join(' and ')}.`,
        { stackStartFn: this.toLinkTo, related: target },
      );
    }
    return this;
  }

  /** Each key of `expected` is present and deep-equal (`isDeepStrictEqual`); other attributes are ignored. */
  toHaveAttributes(expected: Attributes): this {
    const wrong = mismatchedKeys(this.span.attributes, expected);
    if (wrong.length > 0) {
      const details = wrong.map((key) =>
        Object.hasOwn(this.span.attributes, key)
          ? `  ${key}: expected ${JSON.stringify(expected[key])}, got ${JSON.stringify(this.span.attributes[key])}`
          : `  ${key}: expected ${JSON.stringify(expected[key])}, but it is missing`,
      );
      this.fail(`Expected attributes to match:\n${details.join('\n')}`, {
        actual: Object.fromEntries(wrong.map((key) => [key, this.span.attributes[key]])),
        expected: Object.fromEntries(wrong.map((key) => [key, expected[key]])),
        stackStartFn: this.toHaveAttributes,
      });
    }
    return this;
  }

  toNotHaveAttribute(key: string): this {
    if (Object.hasOwn(this.span.attributes, key)) {
      this.fail(`Expected no attribute ${key}, got ${JSON.stringify(this.span.attributes[key])}.`, {
        stackStartFn: this.toNotHaveAttribute,
      });
    }
    return this;
  }

  /** Status code, and the status message (exact or RegExp) when given. */
  toHaveStatus(code: SpanStatusCode, message?: string | RegExp): this {
    const actual = this.span.status;
    const codeMatches = actual.code === code;
    const messageMatches = message === undefined || matchesText(actual.message, message);
    if (!codeMatches || !messageMatches) {
      const expectedText = `${SpanStatusCode[code]}${message === undefined ? '' : ` ${describeName(message)}`}`;
      const actualText = `${SpanStatusCode[actual.code]}${actual.message ? ` ${JSON.stringify(actual.message)}` : ''}`;
      this.fail(`Expected status ${expectedText}, got ${actualText}.`, {
        actual: actualText,
        expected: expectedText,
        stackStartFn: this.toHaveStatus,
      });
    }
    return this;
  }

  /** An event named `name` whose attributes include `attributes` if given. */
  toHaveEvent(name: string, attributes?: Attributes): this {
    const events = this.span.events.filter((event) => event.name === name);
    const names = this.span.events.map((event) => event.name);
    if (events.length === 0) {
      this.fail(`Expected an event ${JSON.stringify(name)}; the span's events: ${names.length > 0 ? names.join(', ') : 'none'}.`, {
        stackStartFn: this.toHaveEvent,
      });
    }
    if (attributes && !events.some((event) => mismatchedKeys(event.attributes ?? {}, attributes).length === 0)) {
      this.fail(
        `Expected the event ${JSON.stringify(name)} to have attributes ${JSON.stringify(attributes)}, ` +
          `got ${events.map((event) => JSON.stringify(event.attributes ?? {})).join(' and ')}.`,
        { stackStartFn: this.toHaveEvent },
      );
    }
    return this;
  }

  /** The spans the messages draw from: those given to `expectSpan`, else the process-wide recorder's. */
  private context(): readonly ReadableSpan[] {
    return this.spans ?? spanRecorder.getFinishedSpans();
  }

  private fail(
    message: string,
    details: {
      actual?: unknown;
      expected?: unknown;
      stackStartFn: (...args: never[]) => unknown;
      related?: SpanReference;
    },
  ): never {
    const traceIds = new Set([this.span.spanContext().traceId]);
    if (details.related) {
      traceIds.add(contextOf(details.related).traceId);
    }
    const shown = this.context().filter((candidate) => traceIds.has(candidate.spanContext().traceId));
    if (!shown.includes(this.span)) {
      shown.push(this.span);
    }
    if (details.related && isReadableSpan(details.related) && !shown.includes(details.related)) {
      shown.push(details.related);
    }
    const own: SpanContext = this.span.spanContext();
    throw new AssertionError({
      message:
        `${message}\n\nSpan: ${formatSpan(this.span)} (trace ${own.traceId}, span ${own.spanId})\n\n` +
        `Spans:\n${spanTree(shown, { mark: this.span })}`,
      actual: details.actual,
      expected: details.expected,
      operator: 'expectSpan',
      stackStartFn: details.stackStartFn,
    });
  }
}

/**
 * Fluent assertions on `span`. `spans` (default: the process-wide recorder's) resolves parent
 * names and gives failure messages their span tree. Passing `undefined` (a `findSpan` that found
 * nothing) fails with the tree of all spans.
 */
export function expectSpan(span: ReadableSpan | undefined, spans?: readonly ReadableSpan[]): SpanExpectation {
  if (!span) {
    const all = spans ?? spanRecorder.getFinishedSpans();
    throw new AssertionError({
      message: `Expected a span, got ${String(span)}.\n\nSpans:\n${spanTree(all)}`,
      actual: span,
      operator: 'expectSpan',
      stackStartFn: expectSpan,
    });
  }
  return new SpanExpectation(span, spans);
}
