import { setTimeout as sleep } from 'node:timers/promises';
import {
  context,
  INVALID_SPAN_CONTEXT,
  propagation,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
  type SpanOptions,
} from '@opentelemetry/api';
import { isObservable, type Subscription } from 'rxjs';
import { ATTR_ERROR_TYPE, ATTR_EXCEPTION_MESSAGE } from '../semconv.js';
import { errorTypeOf } from '../utils/record-error.js';
import { getOtelNestTracer } from '../utils/tracer.js';
import type { ExecutionPolicy, RetryPolicy, StepReturn } from './saga.interfaces.js';
import { diagLimited } from '../utils/diag-limited.js';
import { retryBackoffThrew, retryIfThrew, sagaBaggageNotSet, sagaSpanNotStarted } from '../otel.messages.js';

/**
 * Starts a span of ours. A tracer that throws must not stop the saga: the work then runs under a
 * non-recording span.
 */
export function startSpan(name: string, options: SpanOptions, parent: Context): Span {
  try {
    return getOtelNestTracer().startSpan(name, options, parent);
  } catch (error) {
    diagLimited('warn', sagaSpanNotStarted(name), error);
    return trace.wrapSpanContext(INVALID_SPAN_CONTEXT);
  }
}

/** `parent` with `entries` added to its baggage (same keys replaced), so they travel with every call. */
export function withBaggageEntries(parent: Context, entries: Record<string, string>): Context {
  try {
    let baggage = propagation.getBaggage(parent) ?? propagation.createBaggage();
    for (const [key, value] of Object.entries(entries)) {
      baggage = baggage.setEntry(key, { value });
    }
    return propagation.setBaggage(parent, baggage);
  } catch (error) {
    diagLimited('warn', sagaBaggageNotSet(), error);
    return parent;
  }
}

/**
 * Status ERROR with `message` and the `error.type` of `error`, without an exception event: for a
 * span that fails because a child failed, whose span has the event.
 */
export function markFailed(span: Span, error: unknown, message: string): void {
  try {
    span.setAttribute(ATTR_ERROR_TYPE, errorTypeOf(error));
    span.setStatus({ code: SpanStatusCode.ERROR, message });
  } catch {
    // A span implementation that throws must not stop the saga.
  }
}

/**
 * The message of a thrown value, for events, reports and our error messages. Remote errors (an
 * `RpcException` reply) arrive as plain objects: their `message` is used when they have one.
 */
export function messageOf(error: unknown): string {
  if (error instanceof Error) {
    return error.message;
  }
  if (typeof error === 'string') {
    return error;
  }
  if (error !== null && typeof error === 'object' && typeof (error as { message?: unknown }).message === 'string') {
    return (error as { message: string }).message;
  }
  try {
    return JSON.stringify(error) ?? String(error);
  } catch {
    return String(error);
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as PromiseLike<unknown>).then === 'function'
  );
}

/**
 * Calls `call` in `ctx` and settles with its outcome: a value, a Promise's value, or an
 * Observable's last value once it completes (the Observable is subscribed in `ctx`, so the work
 * it starts, e.g. a `ClientProxy.send`, is a child of the active span). After `timeoutMs` the
 * Promise rejects with `timeoutError()`, the signal is aborted and the Observable unsubscribed;
 * a late outcome is ignored.
 */
export function settle<T>(
  ctx: Context,
  call: (signal: AbortSignal) => StepReturn<T>,
  timeoutMs: number | undefined,
  timeoutError: () => Error,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const controller = new AbortController();
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    let subscription: Subscription | undefined;
    const finish = (settleWith: () => void): void => {
      if (done) {
        return;
      }
      done = true;
      if (timer !== undefined) {
        clearTimeout(timer);
      }
      settleWith();
    };
    if (timeoutMs !== undefined) {
      timer = setTimeout(() => {
        const error = timeoutError();
        finish(() => reject(error));
        controller.abort(error);
        subscription?.unsubscribe();
      }, timeoutMs);
    }

    let result: StepReturn<T>;
    try {
      result = context.with(ctx, () => call(controller.signal));
    } catch (error) {
      finish(() => reject(error));
      return;
    }
    if (isObservable(result)) {
      const source = result;
      let last: T | undefined;
      subscription = context.with(ctx, () =>
        source.subscribe({
          next: (value) => {
            last = value;
          },
          error: (error: unknown) => finish(() => reject(error)),
          complete: () => finish(() => resolve(last as T)),
        }),
      );
      return;
    }
    if (isThenable(result)) {
      result.then(
        (value) => finish(() => resolve(value)),
        (error: unknown) => finish(() => reject(error)),
      );
      return;
    }
    finish(() => resolve(result));
  });
}

/** Event names and attribute keys {@link runAttempts} writes on its span. */
export interface AttemptEvents {
  /** Before each attempt. Default: no event. */
  started?: string;
  /** After the attempt that succeeded. Default: no event. */
  completed?: string;
  /** After each failed attempt, with the error's type and message. */
  failed: string;
  attemptKey: string;
  willRetryKey: string;
}

export type AttemptsResult<T> =
  | { ok: true; value: T; attempts: number }
  | { ok: false; error: unknown; attempts: number; timedOut: boolean };

export interface RunAttemptsOptions<T> {
  /** Span the events go to (the span active in `ctx`). */
  span: Span;
  ctx: Context;
  policy: ExecutionPolicy | undefined;
  events: AttemptEvents;
  call: (attempt: number, signal: AbortSignal) => StepReturn<T>;
  timeoutError: (attempt: number, timeoutMs: number) => Error;
}

/**
 * Runs `call` until an attempt succeeds or the retry policy says stop. Never throws: the outcome
 * (with the last error) is returned, and the caller decides how the span ends.
 */
export async function runAttempts<T>(options: RunAttemptsOptions<T>): Promise<AttemptsResult<T>> {
  const { span, ctx, policy, events, call, timeoutError } = options;
  const allowed = policy?.retry?.attempts ?? 1;
  const timeoutMs = policy?.timeoutMs;
  for (let attempt = 1; ; attempt++) {
    if (events.started) {
      span.addEvent(events.started, { [events.attemptKey]: attempt });
    }
    let timeout: Error | undefined;
    try {
      const value = await settle(ctx, (signal) => call(attempt, signal), timeoutMs, () => {
        timeout = timeoutError(attempt, timeoutMs ?? 0);
        return timeout;
      });
      if (events.completed) {
        span.addEvent(events.completed, { [events.attemptKey]: attempt });
      }
      return { ok: true, value, attempts: attempt };
    } catch (error) {
      const timedOut = timeout !== undefined && error === timeout;
      const willRetry = attempt < allowed && shouldRetry(policy?.retry, error);
      const attributes: Attributes = {
        [events.attemptKey]: attempt,
        [events.willRetryKey]: willRetry,
        [ATTR_ERROR_TYPE]: errorTypeOf(error),
        [ATTR_EXCEPTION_MESSAGE]: messageOf(error),
      };
      span.addEvent(events.failed, attributes);
      if (!willRetry) {
        return { ok: false, error, attempts: attempt, timedOut };
      }
      const wait = retryDelay(policy?.retry, attempt, error);
      if (wait > 0) {
        await sleep(wait);
      }
    }
  }
}

function shouldRetry(retry: RetryPolicy | undefined, error: unknown): boolean {
  if (!retry?.retryIf) {
    return true;
  }
  try {
    return retry.retryIf(error) === true;
  } catch (hookError) {
    diagLimited('warn', retryIfThrew(), hookError);
    return false;
  }
}

/** Wait in ms before retry number `retry` (1-based). */
export function retryDelay(policy: RetryPolicy | undefined, retry: number, error: unknown): number {
  if (!policy) {
    return 0;
  }
  const base = policy.delayMs ?? 0;
  let wait: number;
  if (typeof policy.backoff === 'function') {
    try {
      wait = policy.backoff(retry, error);
    } catch (hookError) {
      diagLimited('warn', retryBackoffThrew(), hookError);
      wait = base;
    }
  } else if (policy.backoff === 'exponential') {
    wait = base * 2 ** (retry - 1);
  } else {
    wait = base;
  }
  if (!Number.isFinite(wait) || wait < 0) {
    wait = 0;
  }
  return policy.maxDelayMs !== undefined ? Math.min(wait, policy.maxDelayMs) : wait;
}

/** Reports one invalid option: `(option path, what it must be, what was given)`. */
export type OptionProblem = (option: string, expected: string, got: unknown) => never;

function isPositiveNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0;
}

/** Checks a timeout and retry policy, so mistakes show at definition time, not mid-saga. */
export function validatePolicy(policy: ExecutionPolicy | undefined, path: string, problem: OptionProblem): void {
  if (policy === undefined) {
    return;
  }
  if (policy === null || typeof policy !== 'object') {
    problem(path || 'policy', 'an object { timeoutMs?, retry? }', policy);
  }
  const prefix = path ? `${path}.` : '';
  if (policy.timeoutMs !== undefined && !isPositiveNumber(policy.timeoutMs)) {
    problem(`${prefix}timeoutMs`, 'a positive number of milliseconds', policy.timeoutMs);
  }
  validateRetry(policy.retry, `${prefix}retry`, problem);
}

function validateRetry(retry: RetryPolicy | undefined, path: string, problem: OptionProblem): void {
  if (retry === undefined) {
    return;
  }
  if (retry === null || typeof retry !== 'object') {
    problem(path, 'an object { attempts, delayMs?, backoff? }', retry);
  }
  if (!Number.isInteger(retry.attempts) || retry.attempts < 1) {
    problem(`${path}.attempts`, 'a positive integer (the first attempt included)', retry.attempts);
  }
  if (retry.delayMs !== undefined && !(typeof retry.delayMs === 'number' && Number.isFinite(retry.delayMs) && retry.delayMs >= 0)) {
    problem(`${path}.delayMs`, 'a non-negative number of milliseconds', retry.delayMs);
  }
  if (retry.maxDelayMs !== undefined && !(typeof retry.maxDelayMs === 'number' && retry.maxDelayMs >= 0)) {
    problem(`${path}.maxDelayMs`, 'a non-negative number of milliseconds', retry.maxDelayMs);
  }
  const backoff = retry.backoff;
  if (backoff !== undefined && backoff !== 'fixed' && backoff !== 'exponential' && typeof backoff !== 'function') {
    problem(`${path}.backoff`, "'fixed', 'exponential' or a function (retry, error) => ms", backoff);
  }
  if (retry.retryIf !== undefined && typeof retry.retryIf !== 'function') {
    problem(`${path}.retryIf`, 'a function (error) => boolean', retry.retryIf);
  }
}
