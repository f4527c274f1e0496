import { Injectable } from '@nestjs/common';
import {
  context,
  defaultTextMapGetter,
  isSpanContextValid,
  propagation,
  ROOT_CONTEXT,
  trace,
  type AttributeValue,
  type Attributes,
  type Context,
  type Link,
  type Span,
  type SpanOptions,
  type Tracer,
} from '@opentelemetry/api';
import { extractContext, injectContext } from '../propagation/carrier.js';
import { recordError } from '../utils/record-error.js';
import { runInSpan, withContext } from '../utils/run-in-context.js';
import { getOtelNestTracer } from '../utils/tracer.js';

/** Baggage key set by {@link TraceService.withUser}. */
export const BAGGAGE_USER_ID = 'user.id';
/** Baggage key set by {@link TraceService.withTenant}. */
export const BAGGAGE_TENANT_ID = 'tenant.id';

/** Options of {@link TraceService.withSpan}: the usual `SpanOptions` plus a failure test. */
export interface WithSpanOptions extends SpanOptions {
  /**
   * Whether a thrown, rejected or emitted value fails the span. Default: everything except a Nest
   * `HttpException` with status below 500.
   */
  isError?: (error: unknown) => boolean;
}

/**
 * Manual tracing for application code: the active span, child spans, events, links, errors and
 * baggage. Every method is safe without a registered SDK: spans are then non-recording, ids are
 * `undefined` and nothing throws.
 *
 * @publicApi
 */
@Injectable()
export class TraceService {
  /** The library's tracer (scope `otel-nest`), for code that needs the raw OpenTelemetry API. */
  getTracer(): Tracer {
    return getOtelNestTracer();
  }

  /** The span active in the current context, or `undefined`. */
  getActiveSpan(): Span | undefined {
    return trace.getActiveSpan();
  }

  /** The active trace id (32 hex chars), or `undefined` when there is no valid active span. */
  getTraceId(): string | undefined {
    const spanContext = trace.getActiveSpan()?.spanContext();
    return spanContext && isSpanContextValid(spanContext) ? spanContext.traceId : undefined;
  }

  /** The active span id (16 hex chars), or `undefined` when there is no valid active span. */
  getSpanId(): string | undefined {
    const spanContext = trace.getActiveSpan()?.spanContext();
    return spanContext && isSpanContextValid(spanContext) ? spanContext.spanId : undefined;
  }

  /** Sets one attribute on the active span. No-op without one. */
  setAttribute(key: string, value: AttributeValue): void {
    trace.getActiveSpan()?.setAttribute(key, value);
  }

  /** Sets attributes on the active span. No-op without one. */
  setAttributes(attributes: Attributes): void {
    trace.getActiveSpan()?.setAttributes(attributes);
  }

  /** Adds an event to the active span. No-op without one. */
  addEvent(name: string, attributes?: Attributes): void {
    trace.getActiveSpan()?.addEvent(name, attributes);
  }

  /** Adds a link to the active span. No-op without one. */
  addLink(link: Link): void {
    trace.getActiveSpan()?.addLink(link);
  }

  /** Adds links to the active span. No-op without one. */
  addLinks(links: Link[]): void {
    trace.getActiveSpan()?.addLinks(links);
  }

  /**
   * Marks the active span as failed by `error` (status ERROR, `error.type`, one exception event per
   * error object). Does not throw. No-op without an active span.
   */
  recordError(error: unknown): void {
    const span = trace.getActiveSpan();
    if (span) {
      recordError(span, error);
    }
  }

  /**
   * Starts a child of the active span (or a root span) without making it active. The caller must
   * end it; use {@link withSpan} to have it active and ended for you.
   */
  startSpan(name: string, options?: SpanOptions): Span {
    return getOtelNestTracer().startSpan(name, options, context.active());
  }

  /**
   * Runs `fn` in a new active child span and ends the span when `fn` returns, its Promise settles
   * or its Observable finalizes. Errors are recorded and rethrown unchanged.
   */
  withSpan<T>(name: string, fn: (span: Span) => T, options?: WithSpanOptions): T;
  withSpan<T>(name: string, options: WithSpanOptions, fn: (span: Span) => T): T;
  withSpan<T>(
    name: string,
    fnOrOptions: ((span: Span) => T) | WithSpanOptions,
    optionsOrFn?: WithSpanOptions | ((span: Span) => T),
  ): T {
    const fn = (typeof fnOrOptions === 'function' ? fnOrOptions : optionsOrFn) as (span: Span) => T;
    const options = (typeof fnOrOptions === 'function' ? optionsOrFn : fnOrOptions) as WithSpanOptions | undefined;
    const { isError, ...spanOptions } = options ?? {};
    const span = this.startSpan(name, spanOptions);
    return runInSpan(span, () => fn(span), { isError });
  }

  /** The value of one baggage entry in the active context, or `undefined`. */
  getBaggage(key: string): string | undefined {
    return propagation.getBaggage(context.active())?.getEntry(key)?.value;
  }

  /** Every baggage entry in the active context, as `{ key: value }` (empty without baggage). */
  getAllBaggage(): Record<string, string> {
    const entries = propagation.getBaggage(context.active())?.getAllEntries() ?? [];
    return Object.fromEntries(entries.map(([key, entry]) => [key, entry.value]));
  }

  /**
   * Runs `fn` with `entries` added to the active baggage (same keys are replaced). The baggage is
   * propagated with outgoing calls made inside `fn`, including from a returned Observable.
   */
  withBaggage<T>(entries: Record<string, string>, fn: () => T): T {
    const active = context.active();
    let baggage = propagation.getBaggage(active) ?? propagation.createBaggage();
    for (const [key, value] of Object.entries(entries)) {
      baggage = baggage.setEntry(key, { value });
    }
    return withContext(propagation.setBaggage(active, baggage), fn);
  }

  /** Runs `fn` with baggage `user.id` set to `userId`. */
  withUser<T>(userId: string, fn: () => T): T {
    return this.withBaggage({ [BAGGAGE_USER_ID]: userId }, fn);
  }

  /** Runs `fn` with baggage `tenant.id` set to `tenantId`. */
  withTenant<T>(tenantId: string, fn: () => T): T {
    return this.withBaggage({ [BAGGAGE_TENANT_ID]: tenantId }, fn);
  }

  /** Baggage `user.id` of the active context, or `undefined`. */
  getUserId(): string | undefined {
    return this.getBaggage(BAGGAGE_USER_ID);
  }

  /** Baggage `tenant.id` of the active context, or `undefined`. */
  getTenantId(): string | undefined {
    return this.getBaggage(BAGGAGE_TENANT_ID);
  }

  /**
   * Writes the active context (`traceparent`, `baggage`, ... as the global propagator decides) into
   * `carrier` and returns it, for hand-made transports (a job payload, a custom header map).
   */
  injectContext<C extends Record<string, string>>(carrier: C = {} as C): C {
    injectContext(context.active(), carrier);
    return carrier;
  }

  /**
   * Reads a context from `carrier` with the global propagator, on top of `base` (default: an empty
   * context, so nothing of the current request leaks in). Use it with `context.with()` or
   * `trace.getSpanContext()` to parent or link a span. Malformed headers give `base` back.
   */
  extractContext(carrier: Record<string, string | string[] | undefined>, base: Context = ROOT_CONTEXT): Context {
    return extractContext(carrier, defaultTextMapGetter, base);
  }
}
