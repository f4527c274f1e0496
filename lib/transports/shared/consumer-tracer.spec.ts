import { SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { lastValueFrom, of, Subject, throwError } from 'rxjs';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTestingSdk, type TestingSdk } from '../../testing/testing-sdk.js';
import { ConsumerTracer, type ProcessingEndHook, type ProcessingStartHook } from './consumer-tracer.js';
import { getConsumerState, type IncomingMessageDescription } from './messaging-tracing.js';
import { recordDiagErrors } from '../../../test/support/diag-errors.js';

const PRODUCER_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PRODUCER_SPAN = '00f067aa0ba902b7';

/** A transport context as the tracer sees it: an object per message. */
interface FakeCtx {
  subject: string;
  headers?: Record<string, string>;
}

function describeMessage(ctx: FakeCtx): IncomingMessageDescription<Record<string, string> | undefined> {
  return {
    system: 'nats',
    destination: ctx.subject,
    pattern: ctx.subject,
    carrier: ctx.headers,
    getter: {
      keys: (carrier) => Object.keys(carrier ?? {}),
      get: (carrier, key) => carrier?.[key],
    },
  };
}

function newTracer(describe: (ctx: FakeCtx) => IncomingMessageDescription<any> | undefined = describeMessage) {
  const server = { getHandlerByPattern: vi.fn(() => ({ extras: {} })) };
  return { tracer: new ConsumerTracer<FakeCtx>(server, describe, undefined), server };
}

const TRANSPORT = Symbol('transport');


describe('ConsumerTracer', () => {
  const diagErrors = recordDiagErrors();
  let sdk: TestingSdk;

  beforeAll(() => {
    sdk = startTestingSdk();
  });
  afterEach(() => {
    sdk.reset();
  });
  afterAll(() => sdk.shutdown());

  function consumerSpans(): ReadableSpan[] {
    return sdk.getFinishedSpans().filter((span) => span.kind === SpanKind.CONSUMER);
  }

  /** The span ended exactly once: exported once, and the SDK never complained of a second end(). */
  function expectEndedOnce(): ReadableSpan {
    const spans = consumerSpans();
    expect(spans).toHaveLength(1);
    expect(diagErrors.filter((msg) => msg.includes('end()'))).toEqual([]);
    return spans[0]!;
  }

  it('success: the handler runs in the CONSUMER span, which ends at the end hook, once', async () => {
    const { tracer } = newTracer();
    const ctx: FakeCtx = { subject: 'orders.get', headers: { traceparent: `00-${PRODUCER_TRACE}-${PRODUCER_SPAN}-01` } };
    let inHandler: Span | undefined;
    const result = await tracer.startHook(TRANSPORT, ctx, async () => {
      inHandler = trace.getActiveSpan();
      return 'reply';
    });
    expect(result).toBe('reply');
    // Not ended before Nest says processing is over.
    expect(consumerSpans()).toHaveLength(0);
    tracer.endHook(TRANSPORT, ctx);
    tracer.endHook(TRANSPORT, ctx);

    const span = expectEndedOnce();
    expect(span.name).toBe('process orders.get');
    expect(inHandler?.spanContext().spanId).toBe(span.spanContext().spanId);
    expect(span.parentSpanContext?.spanId).toBe(PRODUCER_SPAN);
    expect(span.status.code).toBe(SpanStatusCode.UNSET);
  });

  it('handler throws (processing rejects): ERROR with error.type, the error rethrown unchanged, ended once', async () => {
    const { tracer } = newTracer();
    const ctx: FakeCtx = { subject: 'orders.fail' };
    const error = new RangeError('no such order');
    await expect(
      tracer.startHook(TRANSPORT, ctx, async () => {
        throw error;
      }),
    ).rejects.toBe(error);
    // Ended at the rejection; Nest's end hook comes after and changes nothing.
    expect(consumerSpans()).toHaveLength(1);
    tracer.endHook(TRANSPORT, ctx);

    const span = expectEndedOnce();
    expect(span.status.code).toBe(SpanStatusCode.ERROR);
    expect(span.attributes['error.type']).toBe('RangeError');
    expect(span.events.filter((event) => event.name === 'exception')).toHaveLength(1);
  });

  it('Observable errors: the reply stream error is kept and recorded at the end hook, once', async () => {
    const { tracer } = newTracer();
    const ctx: FakeCtx = { subject: 'orders.stream' };
    const error = new TypeError('stream broke');
    let reply: Promise<unknown> | undefined;
    await tracer.startHook(TRANSPORT, ctx, async () => {
      reply = lastValueFrom(tracer.watchReply(throwError(() => error)));
    });
    await expect(reply).rejects.toBe(error);
    expect(consumerSpans()).toHaveLength(0);
    tracer.endHook(TRANSPORT, ctx);

    const span = expectEndedOnce();
    expect(span.status.code).toBe(SpanStatusCode.ERROR);
    expect(span.attributes['error.type']).toBe('TypeError');
  });

  it('endOnSettle: the span ends when the reply stream errors, completes, or is unsubscribed, and the end hook adds nothing', async () => {
    const { tracer } = newTracer();
    const error = new TypeError('stream broke');
    const cases = [
      ['errors', (tracerReply: ReturnType<typeof tracer.watchReply>) => tracerReply.subscribe({ error: () => {} })],
      ['completes', (tracerReply: ReturnType<typeof tracer.watchReply>) => tracerReply.subscribe()],
      ['is unsubscribed', (tracerReply: ReturnType<typeof tracer.watchReply>) => tracerReply.subscribe().unsubscribe()],
    ] as const;
    const sources = { errors: throwError(() => error), completes: of(1, 2), 'is unsubscribed': new Subject<number>() };
    for (const [label, settle] of cases) {
      sdk.reset();
      const ctx: FakeCtx = { subject: `orders.${label}` };
      await tracer.startHook(TRANSPORT, ctx, async () => {
        settle(tracer.watchReply(sources[label] as never, true));
      });
      expect(consumerSpans(), label).toHaveLength(1);
      tracer.endHook(TRANSPORT, ctx);
      const span = expectEndedOnce();
      expect(span.status.code, label).toBe(label === 'errors' ? SpanStatusCode.ERROR : SpanStatusCode.UNSET);
    }
  });

  it('an unsubscribed reply without endOnSettle stays open until the end hook', async () => {
    const { tracer } = newTracer();
    const ctx: FakeCtx = { subject: 'orders.cancel' };
    await tracer.startHook(TRANSPORT, ctx, async () => {
      tracer.watchReply(new Subject<number>()).subscribe().unsubscribe();
    });
    expect(consumerSpans()).toHaveLength(0);
    tracer.endHook(TRANSPORT, ctx);
    expectEndedOnce();
  });

  it('hooks chained by the user run inside the span (start) and are still called (end)', async () => {
    const { tracer } = newTracer();
    const calls: string[] = [];
    let inUserStart: Span | undefined;
    let stateInUserStart: unknown;
    const userStart: ProcessingStartHook = (transportId, ctx, done) => {
      calls.push('user start');
      expect(transportId).toBe(TRANSPORT);
      inUserStart = trace.getActiveSpan();
      stateInUserStart = getConsumerState();
      return done();
    };
    const userEnd: ProcessingEndHook = (transportId, ctx) => {
      calls.push(`user end (${(ctx as FakeCtx).subject}, ended ${consumerSpans().length})`);
      expect(transportId).toBe(TRANSPORT);
    };
    tracer.chainStart(userStart);
    tracer.chainEnd(userEnd);

    const ctx: FakeCtx = { subject: 'orders.hooks' };
    await tracer.startHook(TRANSPORT, ctx, async () => {
      calls.push('handler');
    });
    tracer.endHook(TRANSPORT, ctx);

    const span = expectEndedOnce();
    expect(calls).toEqual(['user start', 'handler', 'user end (orders.hooks, ended 1)']);
    expect(inUserStart?.spanContext().spanId).toBe(span.spanContext().spanId);
    expect(stateInUserStart).toBeDefined();
  });

  it("the user's hooks run for a message it does not trace, and a failing describe never stops the message", async () => {
    const userStart = vi.fn((_id: unknown, _ctx: unknown, done: () => Promise<unknown>) => done());
    const userEnd = vi.fn();
    for (const describe of [() => undefined, () => { throw new Error('our bug'); }]) {
      const { tracer } = newTracer(describe);
      tracer.chainStart(userStart);
      tracer.chainEnd(userEnd);
      const ctx: FakeCtx = { subject: 'orders.untraced' };
      await expect(tracer.startHook(TRANSPORT, ctx, async () => 'handled')).resolves.toBe('handled');
      tracer.endHook(TRANSPORT, ctx);
    }
    expect(userStart).toHaveBeenCalledTimes(2);
    expect(userEnd).toHaveBeenCalledTimes(2);
    expect(consumerSpans()).toHaveLength(0);
  });

  it('publishReply (Nest 11): an end hook run inside a reply that is not the last keeps the span open', async () => {
    const { tracer } = newTracer();
    const ctx: FakeCtx = { subject: 'orders.streamed' };
    await tracer.startHook(TRANSPORT, ctx, async () => {});
    // Nest 11 calls the end hook in each reply's publish.
    expect(tracer.publishReply(ctx, { response: 1 }, () => (tracer.endHook(TRANSPORT, ctx), 'sent 1'))).toBe('sent 1');
    expect(consumerSpans()).toHaveLength(0);
    tracer.publishReply(ctx, { response: 2, isDisposed: true }, () => tracer.endHook(TRANSPORT, ctx));
    expectEndedOnce();
  });

  it('markEvent: an event starts a new trace linked to the producer (the default event policy)', async () => {
    const { tracer } = newTracer();
    const ctx: FakeCtx = { subject: 'orders.created', headers: { traceparent: `00-${PRODUCER_TRACE}-${PRODUCER_SPAN}-01` } };
    tracer.markEvent(ctx);
    await tracer.startHook(TRANSPORT, ctx, async () => {});
    tracer.endHook(TRANSPORT, ctx);
    const span = expectEndedOnce();
    expect(span.parentSpanContext).toBeUndefined();
    expect(span.links.map((link) => link.context.spanId)).toEqual([PRODUCER_SPAN]);
    expect(span.attributes['nestjs.handler.type']).toBe('event');
  });

  it('spans of concurrent messages are kept apart (one per transport context)', async () => {
    const { tracer } = newTracer();
    const a: FakeCtx = { subject: 'orders.a' };
    const b: FakeCtx = { subject: 'orders.b' };
    await tracer.startHook(TRANSPORT, a, async () => {});
    await tracer.startHook(TRANSPORT, b, async () => {});
    tracer.endHook(TRANSPORT, b);
    expect(consumerSpans().map((span) => span.name)).toEqual(['process orders.b']);
    tracer.endHook(TRANSPORT, a);
    expect(consumerSpans().map((span) => span.name)).toEqual(['process orders.b', 'process orders.a']);
    expect(diagErrors).toEqual([]);
  });
});
