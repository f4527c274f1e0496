import { context, SpanKind, trace, type Attributes, type Context, type Span } from '@opentelemetry/api';
import { getHttpRequestState } from '../http/http-server.instrumentation.js';
import { enhancerSpanFailed } from '../otel.messages.js';
import {
  ATTR_NESTJS_CONTROLLER,
  ATTR_NESTJS_ENHANCER_CALLS,
  ATTR_NESTJS_ENHANCER_COLLAPSED,
  ATTR_NESTJS_ENHANCER_NAME,
  ATTR_NESTJS_HANDLER,
  ATTR_NESTJS_TYPE,
} from '../semconv.js';
import { getConsumerState } from '../transports/shared/messaging-tracing.js';
import { diagLimited } from '../utils/diag-limited.js';
import { recordError } from '../utils/record-error.js';
import { getOtelNestTracer } from '../utils/tracer.js';
import type { EnhancerType, ResolvedEnhancerSpans } from './enhancer-spans.config.js';

/** What an execution context or arguments host may tell about the handler (filters' hosts often do not). */
export interface HandlerDescription {
  getClass?(): unknown;
  getHandler?(): unknown;
}

/** One finished call waiting for its window to close. */
export interface FinishedCall {
  readonly span: Span;
  /** `performance.now()` at the end, which `span.end()` turns into the exact end time. */
  readonly endedAt: number;
  readonly duration: number;
  readonly failed: boolean;
}

/**
 * The calls of one enhancer under one parent span that follow each other without a turn of the
 * event loop in between (a pipe run for each of 30 arguments: Nest resolves them in one
 * `Promise.all`). Their spans stay open until the window closes: then either all of them end, with
 * the end times they had, or, above `collapseAbove`, only the slowest `keepSlowest` and the failed
 * ones do. A span that is never ended is never exported. The window closes on the first
 * `setImmediate` at which no call of the group is running.
 */
export class CollapseWindow {
  private running = 0;
  private finished: FinishedCall[] = [];
  private scheduled = false;

  constructor(private readonly limits: Pick<ResolvedEnhancerSpans, 'collapseAbove' | 'keepSlowest'>) {}

  started(): void {
    this.running++;
  }

  ended(call: FinishedCall): void {
    this.running--;
    this.finished.push(call);
    if (this.running === 0 && !this.scheduled) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        // A call that started since then closes the window when it ends.
        if (this.running === 0) {
          this.close();
        }
      });
    }
  }

  /** Ends the spans of the window's calls, or the ones kept of them. Never throws. */
  close(): void {
    const calls = this.finished;
    this.finished = [];
    try {
      if (calls.length <= this.limits.collapseAbove) {
        for (const call of calls) {
          call.span.end(call.endedAt);
        }
        return;
      }
      const slowest = calls
        .filter((call) => !call.failed)
        .sort((a, b) => b.duration - a.duration)
        .slice(0, this.limits.keepSlowest);
      // Failed calls always keep their span: an error is never collapsed away.
      const kept = calls.filter((call) => call.failed || slowest.includes(call));
      for (const call of kept) {
        call.span.setAttribute(ATTR_NESTJS_ENHANCER_CALLS, calls.length);
        call.span.setAttribute(ATTR_NESTJS_ENHANCER_COLLAPSED, calls.length - kept.length);
        call.span.end(call.endedAt);
      }
    } catch (err) {
      diagLimited('error', enhancerSpanFailed(), err);
    }
  }
}

/** Windows per parent state (the request's or message's, which ends with it) and enhancer span name. */
const windows = new WeakMap<object, Map<string, CollapseWindow>>();

function windowFor(parentState: object, name: string, config: ResolvedEnhancerSpans): CollapseWindow {
  let byName = windows.get(parentState);
  if (!byName) {
    byName = new Map();
    windows.set(parentState, byName);
  }
  let window = byName.get(name);
  if (!window) {
    window = new CollapseWindow(config);
    byName.set(name, window);
  }
  return window;
}

/**
 * One call of an enhancer method, with its span. Finished exactly once, by {@link finish} or
 * {@link fail}, whichever comes first.
 */
export class EnhancerCall {
  private done = false;
  private readonly startedAt = performance.now();

  constructor(
    readonly span: Span,
    /** The context the enhancer method runs in: the request's, with this span active. */
    readonly context: Context,
    private readonly window: CollapseWindow | undefined,
  ) {
    window?.started();
  }

  setAttribute(key: string, value: string | number | boolean): void {
    if (!this.done) {
      this.span.setAttribute(key, value);
    }
  }

  fail(error: unknown): void {
    if (this.done) {
      return;
    }
    recordError(this.span, error);
    this.end(true);
  }

  finish(): void {
    if (!this.done) {
      this.end(false);
    }
  }

  private end(failed: boolean): void {
    this.done = true;
    try {
      if (!this.window) {
        this.span.end();
        return;
      }
      const endedAt = performance.now();
      this.window.ended({ span: this.span, endedAt, duration: endedAt - this.startedAt, failed });
    } catch (err) {
      diagLimited('error', enhancerSpanFailed(), err);
    }
  }
}

/**
 * Starts the span of one enhancer call, as a child of the recording SERVER span of the HTTP
 * request or CONSUMER span of the message in the active context, whatever span is active below
 * it, so that every enhancer span sits once, directly, under its request. `undefined` (and no
 * cost beyond the context lookup) when there is none: outside a request, unsampled, or already
 * ended.
 */
export function startEnhancerCall(
  config: ResolvedEnhancerSpans,
  type: EnhancerType,
  enhancerName: string,
  handler: HandlerDescription | undefined,
  extra: Attributes | undefined,
): EnhancerCall | undefined {
  const active = context.active();
  const parentState = getHttpRequestState(active) ?? getConsumerState(active);
  if (!parentState || !parentState.span.isRecording()) {
    return undefined;
  }
  try {
    const attributes: Attributes = { [ATTR_NESTJS_TYPE]: type, [ATTR_NESTJS_ENHANCER_NAME]: enhancerName, ...extra };
    if (handler) {
      addHandler(attributes, handler);
    }
    const name = `${type} ${enhancerName}`;
    const span = getOtelNestTracer().startSpan(
      name,
      { kind: SpanKind.INTERNAL, attributes },
      trace.setSpan(active, parentState.span),
    );
    const window = Number.isFinite(config.collapseAbove) ? windowFor(parentState, name, config) : undefined;
    return new EnhancerCall(span, trace.setSpan(active, span), window);
  } catch (err) {
    diagLimited('error', enhancerSpanFailed(), err);
    return undefined;
  }
}

function addHandler(attributes: Attributes, handler: HandlerDescription): void {
  const controller = typeof handler.getClass === 'function' ? (handler.getClass() as { name?: unknown } | undefined) : undefined;
  const method = typeof handler.getHandler === 'function' ? (handler.getHandler() as { name?: unknown } | undefined) : undefined;
  // An HTTP filter's host knows neither (Nest builds it from the request alone).
  if (typeof controller?.name === 'string' && controller.name) {
    attributes[ATTR_NESTJS_CONTROLLER] = controller.name;
  }
  if (typeof method?.name === 'string' && method.name) {
    attributes[ATTR_NESTJS_HANDLER] = method.name;
  }
}
