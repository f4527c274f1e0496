import { HttpException } from '@nestjs/common';
import { context, trace, type Context, type Span } from '@opentelemetry/api';
import { Observable, isObservable } from 'rxjs';
import { recordError } from './record-error.js';
import { diagLimited } from './diag-limited.js';
import { callbackThrewIgnored } from '../otel.messages.js';

/** Hooks of {@link runInSpan}. Each is optional; a hook that throws is logged and ignored. */
export interface RunInSpanOptions {
  /**
   * Whether a thrown, rejected or emitted value fails the span (status ERROR, `error.type`, exception
   * event). The value is rethrown either way. Default: {@link defaultIsError}.
   */
  isError?: (error: unknown) => boolean;
  /** Called once with the failure, after it was recorded (or skipped by `isError`). Default: none. */
  onError?: (error: unknown, span: Span) => void;
  /** Called once, right before the span ends (e.g. to add final attributes). Default: none. */
  onEnd?: (span: Span) => void;
}

/**
 * Default failure test: every thrown value is an error except a Nest `HttpException` with a status
 * below 500. Those are expected client outcomes (404, 409, 422 ...) and leave the span status unset,
 * as the semantic conventions ask for server-side handling of 4xx.
 */
export function defaultIsError(error: unknown): boolean {
  if (error instanceof HttpException || isHttpExceptionLike(error)) {
    try {
      return !(error.getStatus() < 500);
    } catch {
      return true;
    }
  }
  return true;
}

// A second copy of @nestjs/common (e.g. a CJS app next to this ESM build) has its own class.
function isHttpExceptionLike(error: unknown): error is HttpException {
  return (
    error !== null &&
    typeof error === 'object' &&
    typeof (error as HttpException).getStatus === 'function' &&
    typeof (error as HttpException).getResponse === 'function'
  );
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as PromiseLike<unknown>).then === 'function'
  );
}

function safely(what: string, hook: () => void): void {
  try {
    hook();
  } catch (error) {
    diagLimited('warn', callbackThrewIgnored(what), error);
  }
}

/**
 * Runs `fn` with `span` active and ends the span exactly once when the work is done:
 * - a sync result or throw: right away;
 * - a Promise (any thenable): when it settles; the caller gets a new Promise of the same outcome;
 * - an Observable: when it completes, errors or is unsubscribed. The caller gets a new Observable
 *   that subscribes the source inside the span's context, so the work done on subscription is a
 *   child of the span. The span belongs to the first subscription; an Observable that is never
 *   subscribed never runs, and its span is never ended (nor exported).
 *
 * A failure is recorded on the span (see {@link RunInSpanOptions.isError}) and then rethrown,
 * rejected or re-emitted as the same value, unchanged.
 */
export function runInSpan<T>(span: Span, fn: () => T, options: RunInSpanOptions = {}): T {
  const { isError = defaultIsError, onError, onEnd } = options;
  const spanContext = trace.setSpan(context.active(), span);
  let ended = false;
  const end = (): void => {
    if (ended) {
      return;
    }
    ended = true;
    if (onEnd) {
      safely('onEnd', () => onEnd(span));
    }
    span.end();
  };
  const fail = (error: unknown): void => {
    let counts = true;
    safely('isError', () => {
      counts = isError(error);
    });
    if (counts) {
      recordError(span, error);
    }
    if (onError) {
      safely('onError', () => onError(error, span));
    }
  };

  let result: T;
  try {
    result = context.with(spanContext, fn);
  } catch (error) {
    fail(error);
    end();
    throw error;
  }

  if (isObservable(result)) {
    return observeInSpan(result, spanContext, fail, end) as T;
  }
  if (isThenable(result)) {
    return result.then(
      (value) => {
        end();
        return value;
      },
      (error: unknown) => {
        fail(error);
        end();
        throw error;
      },
    ) as T;
  }
  end();
  return result;
}

// The span ends before the outcome is forwarded, so an outer span that ends on the same
// notification always ends after this one.
function observeInSpan<V>(
  source: Observable<V>,
  ctx: Context,
  fail: (error: unknown) => void,
  end: () => void,
): Observable<V> {
  return new Observable<V>((subscriber) => {
    const subscription = context.with(ctx, () =>
      source.subscribe({
        next: (value) => subscriber.next(value),
        error: (error: unknown) => {
          fail(error);
          end();
          subscriber.error(error);
        },
        complete: () => {
          end();
          subscriber.complete();
        },
      }),
    );
    return () => {
      subscription.unsubscribe();
      end();
    };
  });
}

/**
 * An Observable that subscribes `source` inside `ctx`. Nest subscribes to a handler's Observable
 * later and elsewhere, so without this the work it starts would run in whatever context is
 * active at subscription time.
 */
export function bindObservableToContext<V>(ctx: Context, source: Observable<V>): Observable<V> {
  return new Observable<V>((subscriber) => context.with(ctx, () => source.subscribe(subscriber)));
}

/**
 * Runs `fn` in `ctx`. An Observable result is bound with {@link bindObservableToContext}, so its
 * subscription also happens in `ctx`; Promise continuations inherit `ctx` on their own.
 */
export function withContext<T>(ctx: Context, fn: () => T): T {
  const result = context.with(ctx, fn);
  return (isObservable(result) ? bindObservableToContext(ctx, result) : result) as T;
}
