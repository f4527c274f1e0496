import { HttpException, NotFoundException } from '@nestjs/common';
import { context, createContextKey, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { startTestingSdk, type TestingSdk } from '../testing/testing-sdk.js';
import { defer, firstValueFrom, of, Subject, throwError, toArray } from 'rxjs';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ATTR_ERROR_TYPE } from '../semconv.js';
import { bindObservableToContext, defaultIsError, runInSpan, withContext } from './run-in-context.js';

const exporter = new InMemorySpanExporter();
let sdk: TestingSdk;
const tracer = () => trace.getTracer('run-in-context.spec');

beforeAll(() => {
  sdk = startTestingSdk({ exporter });
});
afterEach(() => exporter.reset());
afterAll(() => sdk.shutdown());

const finished = (name?: string): ReadableSpan[] =>
  exporter.getFinishedSpans().filter((span) => name === undefined || span.name === name);
const only = (name: string): ReadableSpan => {
  const spans = finished(name);
  expect(spans).toHaveLength(1);
  return spans[0]!;
};
const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;
const idOf = (span: Span | ReadableSpan) => span.spanContext().spanId;
const child = (name: string) => tracer().startSpan(name).end();

describe('runInSpan', () => {
  it('runs a sync function with the span active and ends the span when it returns', () => {
    const span = tracer().startSpan('sync');
    const result = runInSpan(span, () => {
      expect(trace.getActiveSpan()).toBe(span);
      child('inner');
      expect(finished('sync')).toHaveLength(0);
      return 42;
    });
    expect(result).toBe(42);
    const done = only('sync');
    expect(done.status.code).toBe(SpanStatusCode.UNSET);
    expect(parentOf(only('inner'))).toBe(idOf(done));
    expect(trace.getActiveSpan()).toBeUndefined();
  });

  it('records a sync throw once and rethrows the same error', () => {
    const error = new TypeError('boom');
    const span = tracer().startSpan('throws');
    let caught: unknown;
    try {
      runInSpan(span, () => {
        throw error;
      });
    } catch (thrown) {
      caught = thrown;
    }
    expect(caught).toBe(error);
    const done = only('throws');
    expect(done.status).toEqual({ code: SpanStatusCode.ERROR, message: 'boom' });
    expect(done.attributes[ATTR_ERROR_TYPE]).toBe('TypeError');
    expect(done.events.filter((event) => event.name === 'exception')).toHaveLength(1);
  });

  it('ends the span only when a Promise resolves, with the span active in continuations', async () => {
    let resolve!: (value: string) => void;
    const gate = new Promise<string>((r) => (resolve = r));
    const span = tracer().startSpan('async');
    const pending = runInSpan(span, async () => {
      const value = await gate;
      child('after-await');
      return value;
    });
    await new Promise((r) => setImmediate(r));
    expect(finished('async')).toHaveLength(0);
    resolve('done');
    await expect(pending).resolves.toBe('done');
    const done = only('async');
    expect(done.status.code).toBe(SpanStatusCode.UNSET);
    expect(parentOf(only('after-await'))).toBe(idOf(done));
  });

  it('records a rejection and rejects with the same error object', async () => {
    const error = new RangeError('bad');
    const span = tracer().startSpan('rejects');
    const pending = runInSpan(span, async () => {
      await Promise.resolve();
      throw error;
    });
    await expect(pending).rejects.toBe(error);
    const done = only('rejects');
    expect(done.status.code).toBe(SpanStatusCode.ERROR);
    expect(done.attributes[ATTR_ERROR_TYPE]).toBe('RangeError');
    expect(done.events.filter((event) => event.name === 'exception')).toHaveLength(1);
  });

  it('leaves the status unset when isError says the value is not an error, and still calls onError', async () => {
    const error = new Error('expected');
    const onError = vi.fn();
    const span = tracer().startSpan('expected');
    await expect(
      runInSpan(span, () => Promise.reject(error), { isError: () => false, onError }),
    ).rejects.toBe(error);
    const done = only('expected');
    expect(done.status.code).toBe(SpanStatusCode.UNSET);
    expect(done.attributes[ATTR_ERROR_TYPE]).toBeUndefined();
    expect(done.events).toHaveLength(0);
    expect(onError).toHaveBeenCalledExactlyOnceWith(error, span);
  });

  it('does not record a Nest 4xx HttpException by default, but does record a 5xx', () => {
    const notFound = new NotFoundException();
    const serverError = new HttpException('down', 503);
    expect(() => runInSpan(tracer().startSpan('404'), () => { throw notFound; })).toThrow(notFound);
    expect(() => runInSpan(tracer().startSpan('503'), () => { throw serverError; })).toThrow(serverError);
    expect(only('404').status.code).toBe(SpanStatusCode.UNSET);
    expect(only('503').status.code).toBe(SpanStatusCode.ERROR);
    expect(only('503').attributes[ATTR_ERROR_TYPE]).toBe('HttpException');
  });

  it('ends the span once and returns the result when a hook throws', () => {
    const onEnd = vi.fn(() => {
      throw new Error('hook');
    });
    const span = tracer().startSpan('hook');
    expect(runInSpan(span, () => 'ok', { onEnd })).toBe('ok');
    expect(onEnd).toHaveBeenCalledOnce();
    expect(only('hook').ended).toBe(true);
  });

  describe('Observable results', () => {
    it('ends the span when the Observable completes, not when it is returned', async () => {
      const source = new Subject<number>();
      const span = tracer().startSpan('obs');
      const result = runInSpan(span, () => source.asObservable());
      const values: number[] = [];
      const completed = new Promise<void>((resolve) => result.subscribe({ next: (v) => values.push(v), complete: resolve }));
      source.next(1);
      source.next(2);
      expect(finished('obs')).toHaveLength(0);
      source.complete();
      await completed;
      expect(values).toEqual([1, 2]);
      expect(only('obs').status.code).toBe(SpanStatusCode.UNSET);
    });

    it('subscribes the source inside the span context, even when subscribed from elsewhere', async () => {
      const span = tracer().startSpan('obs-ctx');
      const result = runInSpan(span, () =>
        defer(() => {
          child('on-subscribe');
          return of('a', 'b');
        }),
      );
      expect(finished('on-subscribe')).toHaveLength(0);
      const other = tracer().startSpan('other');
      const values = await context.with(trace.setSpan(context.active(), other), () =>
        firstValueFrom(result.pipe(toArray())),
      );
      other.end();
      expect(values).toEqual(['a', 'b']);
      expect(parentOf(only('on-subscribe'))).toBe(idOf(only('obs-ctx')));
    });

    it('records an Observable error and re-emits the same error object', async () => {
      const error = new Error('stream failed');
      const span = tracer().startSpan('obs-error');
      const result = runInSpan(span, () => throwError(() => error));
      await expect(firstValueFrom(result)).rejects.toBe(error);
      const done = only('obs-error');
      expect(done.status.code).toBe(SpanStatusCode.ERROR);
      expect(done.events.filter((event) => event.name === 'exception')).toHaveLength(1);
    });

    it('ends the span on unsubscribe, exactly once', () => {
      const onEnd = vi.fn();
      const source = new Subject<number>();
      const span = tracer().startSpan('obs-unsub');
      const subscription = runInSpan(span, () => source.asObservable(), { onEnd }).subscribe();
      expect(finished('obs-unsub')).toHaveLength(0);
      subscription.unsubscribe();
      subscription.unsubscribe();
      source.complete();
      expect(finished('obs-unsub')).toHaveLength(1);
      expect(onEnd).toHaveBeenCalledOnce();
    });

    it('never runs nor ends the span of an Observable that is not subscribed', () => {
      const work = vi.fn(() => of(1));
      const span = tracer().startSpan('obs-lazy');
      const result = runInSpan(span, () => defer(work));
      expect(work).not.toHaveBeenCalled();
      expect(finished('obs-lazy')).toHaveLength(0);
      result.subscribe();
      expect(work).toHaveBeenCalledOnce();
      expect(finished('obs-lazy')).toHaveLength(1);
    });
  });
});

describe('defaultIsError', () => {
  it('treats 4xx HttpExceptions (and look-alikes) as expected, everything else as errors', () => {
    expect(defaultIsError(new NotFoundException())).toBe(false);
    expect(defaultIsError(new HttpException('x', 499))).toBe(false);
    expect(defaultIsError(new HttpException('x', 500))).toBe(true);
    expect(defaultIsError({ getStatus: () => 400, getResponse: () => ({}) })).toBe(false);
    expect(defaultIsError(new Error('x'))).toBe(true);
    expect(defaultIsError('text')).toBe(true);
  });
});

describe('withContext and bindObservableToContext', () => {
  const key = createContextKey('run-in-context.spec');

  it('runs a function in the given context', () => {
    const ctx = context.active().setValue(key, 'v1');
    expect(withContext(ctx, () => context.active().getValue(key))).toBe('v1');
    expect(context.active().getValue(key)).toBeUndefined();
  });

  it('binds an Observable result so its subscription runs in the context', async () => {
    const ctx = context.active().setValue(key, 'v2');
    const result = withContext(ctx, () => defer(() => of(context.active().getValue(key))));
    expect(await firstValueFrom(result)).toBe('v2');
  });

  it('bindObservableToContext makes spans started on subscription children of the bound span', async () => {
    const parent = tracer().startSpan('bound-parent');
    const bound = bindObservableToContext(
      trace.setSpan(context.active(), parent),
      defer(() => {
        child('bound-child');
        return of(true);
      }),
    );
    await firstValueFrom(bound);
    parent.end();
    expect(parentOf(only('bound-child'))).toBe(idOf(only('bound-parent')));
  });
});
