import { context, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { defer, Observable, of, ReplaySubject, Subject, throwError, timer, lastValueFrom, toArray, map } from 'rxjs';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { startTestingSdk, type TestingSdk } from '../../testing/testing-sdk.js';
import { producerSpanEnder, startProducerSpan } from './messaging-tracing.js';
import {
  PendingRequests,
  SEND_CANCELLED,
  SEND_CLIENT_CLOSED,
  traceEmit,
  traceRequestReply,
  type ProducerHandle,
} from './producer-tracer.js';
import { recordDiagErrors } from '../../../test/support/diag-errors.js';


describe('producer tracer', () => {
  const diagErrors = recordDiagErrors();
  let sdk: TestingSdk;
  let caller: Span;

  beforeAll(() => {
    sdk = startTestingSdk();
  });
  beforeEach(() => {
    caller = trace.getTracer('caller').startSpan('caller');
  });
  afterEach(() => {
    sdk.reset();
  });
  afterAll(() => sdk.shutdown());

  const inCaller = <T>(fn: () => T): T => context.with(trace.setSpan(ROOT_CONTEXT, caller), fn);

  /** What a traced client's `start` does: a PRODUCER span under the active context. */
  const start = vi.fn((): ProducerHandle => {
    const { span, ctx } = startProducerSpan({ system: 'nats', destination: 'orders.get', pattern: 'orders.get', isEvent: false });
    return { ctx, end: producerSpanEnder(span) };
  });

  function producerSpans(): ReadableSpan[] {
    return sdk.getFinishedSpans().filter((span) => span.kind === SpanKind.PRODUCER);
  }

  /** Exactly one PRODUCER span ended, once (the SDK reports a second end() through diag). */
  function expectEndedOnce(): ReadableSpan {
    const spans = producerSpans();
    expect(spans).toHaveLength(1);
    expect(diagErrors.filter((msg) => msg.includes('end()'))).toEqual([]);
    expect(spans[0]!.parentSpanContext?.spanId).toBe(caller.spanContext().spanId);
    return spans[0]!;
  }

  describe('traceRequestReply (send)', () => {
    it('starts the span at subscription (cold), subscribes the source in it, ends once at completion', async () => {
      let sourceSpan: Span | undefined;
      const source = defer(() => {
        sourceSpan = trace.getActiveSpan();
        return timer(1).pipe(map(() => 'reply'));
      });
      const traced = inCaller(() => traceRequestReply(source, start));
      expect(producerSpans()).toHaveLength(0);

      const seenInCaller: Array<Span | undefined> = [];
      const replies = await inCaller(() =>
        lastValueFrom(traced.pipe(map((value) => (seenInCaller.push(trace.getActiveSpan()), value)), toArray())),
      );
      expect(replies).toEqual(['reply']);
      const span = expectEndedOnce();
      expect(span.status.code).toBe(SpanStatusCode.UNSET);
      // The request was serialized and published in the PRODUCER span's context ...
      expect(sourceSpan?.spanContext().spanId).toBe(span.spanContext().spanId);
      // ... and the reply reaches the caller in the caller's context.
      expect(seenInCaller.map((s) => s?.spanContext().spanId)).toEqual([caller.spanContext().spanId]);
    });

    it('an error reply: ERROR with the recordable error, the original error to the caller, ended once', async () => {
      const error = Object.assign(new Error('out of stock'), { code: 'E_STOCK' });
      const recordable = vi.fn(() => ({ name: 'OutOfStockError', message: 'out of stock' }));
      const traced = inCaller(() => traceRequestReply(throwError(() => error), start, recordable));
      await expect(inCaller(() => lastValueFrom(traced))).rejects.toBe(error);
      const span = expectEndedOnce();
      expect(recordable).toHaveBeenCalledWith(error);
      expect(span.status.code).toBe(SpanStatusCode.ERROR);
      expect(span.attributes['error.type']).toBe('OutOfStockError');
    });

    it('unsubscribed before any reply (timeout, cancel): ERROR cancelled, ended once', () => {
      const traced = inCaller(() => traceRequestReply(new Subject<string>(), start));
      const subscription = inCaller(() => traced.subscribe());
      expect(producerSpans()).toHaveLength(0);
      subscription.unsubscribe();
      subscription.unsubscribe();
      const span = expectEndedOnce();
      expect(span.status.code).toBe(SpanStatusCode.ERROR);
      expect(span.attributes['error.type']).toBe(SEND_CANCELLED);
      expect(span.events).toEqual([]);
    });

    it('unsubscribed after a reply (take(1) of a stream): ended once, not an error', () => {
      const replies = new ReplaySubject<string>();
      replies.next('first');
      const traced = inCaller(() => traceRequestReply(replies, start));
      const seen: string[] = [];
      const subscription = inCaller(() => traced.subscribe((value) => seen.push(value)));
      subscription.unsubscribe();
      replies.next('late');
      replies.complete();
      expect(seen).toEqual(['first']);
      const span = expectEndedOnce();
      expect(span.status.code).toBe(SpanStatusCode.UNSET);
    });

    it('each subscription is its own request with its own span', async () => {
      const traced = inCaller(() => traceRequestReply(of('reply'), start));
      await inCaller(() => lastValueFrom(traced));
      await inCaller(() => lastValueFrom(traced));
      expect(producerSpans()).toHaveLength(2);
      expect(diagErrors).toEqual([]);
    });

    it('sends untraced when start fails (returns undefined)', async () => {
      const traced = traceRequestReply(of('a', 'b'), () => undefined);
      await expect(lastValueFrom(traced.pipe(toArray()))).resolves.toEqual(['a', 'b']);
      expect(producerSpans()).toHaveLength(0);
    });

    it('with pending requests: close() ends the open spans with client_closed, and only those', async () => {
      const pending = new PendingRequests();
      const done = inCaller(() => traceRequestReply(of('reply'), start, undefined, pending));
      await inCaller(() => lastValueFrom(done));
      const open = inCaller(() => traceRequestReply(new Subject<string>(), start, undefined, pending));
      const subscription = inCaller(() => open.subscribe({ error: () => {} }));
      pending.endAllClosed();
      pending.endAllClosed();
      // The caller's unsubscription afterwards changes nothing.
      subscription.unsubscribe();

      const spans = producerSpans();
      expect(spans).toHaveLength(2);
      expect(spans.map((s) => s.attributes['error.type'])).toEqual([undefined, SEND_CLIENT_CLOSED]);
      expect(spans[1]!.status.code).toBe(SpanStatusCode.ERROR);
      expect(diagErrors).toEqual([]);
    });
  });

  describe('traceEmit (emit)', () => {
    it('calls emit in the span context and ends once when the publish completes', () => {
      const published = new ReplaySubject<void>();
      let emitSpan: Span | undefined;
      const producer = inCaller(() => start());
      const result = traceEmit(() => {
        emitSpan = trace.getActiveSpan();
        return published;
      }, producer);
      expect(producerSpans()).toHaveLength(0);
      published.complete();
      // The caller subscribing too (Nest's emit is hot) does not end it again.
      result.subscribe();
      const span = expectEndedOnce();
      expect(emitSpan?.spanContext().spanId).toBe(span.spanContext().spanId);
      expect(span.status.code).toBe(SpanStatusCode.UNSET);
    });

    it('a failed publish: ERROR with the error type, ended once', () => {
      const published = new ReplaySubject<void>();
      const producer = inCaller(() => start());
      const result = traceEmit(() => published, producer);
      published.error(new TypeError('broker gone'));
      result.subscribe({ error: () => {} });
      const span = expectEndedOnce();
      expect(span.status.code).toBe(SpanStatusCode.ERROR);
      expect(span.attributes['error.type']).toBe('TypeError');
    });

    it('emit throwing synchronously: the error is rethrown unchanged and the span ends once with it', () => {
      const error = new SyntaxError('cannot serialize');
      const producer = inCaller(() => start());
      expect(() =>
        traceEmit((): Observable<void> => {
          throw error;
        }, producer),
      ).toThrow(error);
      const span = expectEndedOnce();
      expect(span.attributes['error.type']).toBe('SyntaxError');
    });
  });
});
