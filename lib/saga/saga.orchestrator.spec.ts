import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { startTestingSdk, type TestingSdk } from '../testing/testing-sdk.js';
import { defer, delay, Observable, of, throwError } from 'rxjs';
import { afterAll, beforeAll, beforeEach, describe, expect, expectTypeOf, it } from 'vitest';
import { expectSpan } from '../testing/span-assertions.js';
import { childrenOf, getSpan } from '../testing/span-query.js';
import { spanTree } from '../testing/span-tree.js';
import { defineSaga } from './saga-definition.js';
import { SagaDefinitionError, SagaFailedError, SagaStepTimeoutError } from './saga.errors.js';
import type { SagaCompensationContext, SagaStepContext } from './saga.interfaces.js';
import { SagaOrchestrator } from './saga.orchestrator.js';

const exporter = new InMemorySpanExporter();
let sdk: TestingSdk;
const orchestrator = new SagaOrchestrator();

beforeAll(() => {
  sdk = startTestingSdk({ exporter });
});
beforeEach(() => exporter.reset());
afterAll(() => sdk.shutdown());

const spans = (): ReadableSpan[] => exporter.getFinishedSpans();
const exceptions = (span: ReadableSpan) => span.events.filter((event) => event.name === 'exception');
const eventNames = (span: ReadableSpan) => span.events.map((event) => event.name);

/**
 * The spans as `name STATUS` lines indented under their parent, siblings in start order (ties in
 * end order, which is the run order of sequential siblings).
 */
function shape(all: readonly ReadableSpan[]): string[] {
  const ids = new Set(all.map((span) => span.spanContext().spanId));
  const lines: string[] = [];
  const ordered = (list: ReadableSpan[]) =>
    list
      .map((span, index) => ({ span, index: all.indexOf(span), start: span.startTime, i: index }))
      .sort((a, b) => a.start[0] - b.start[0] || a.start[1] - b.start[1] || a.index - b.index)
      .map((entry) => entry.span);
  const visit = (span: ReadableSpan, depth: number): void => {
    lines.push(`${'  '.repeat(depth)}${span.name} ${SpanStatusCode[span.status.code]}`);
    for (const child of ordered(childrenOf(all, span))) {
      visit(child, depth + 1);
    }
  };
  for (const top of ordered(all.filter((span) => !span.parentSpanContext?.spanId || !ids.has(span.parentSpanContext.spanId)))) {
    visit(top, 0);
  }
  return lines;
}

interface OrderInput {
  orderId: string;
  total: number;
}

/** Reserve (sync) -> charge (Promise) -> ship (Observable); every call is logged. */
function orderSaga(log: string[], options: { failAt?: 'reserve' | 'charge' | 'ship'; failCompensation?: string[] } = {}) {
  const fail = (step: string) => {
    if (options.failAt === step) {
      throw new RangeError(`${step} refused`);
    }
  };
  const undo = (step: string) => {
    log.push(`undo ${step}`);
    if (options.failCompensation?.includes(step)) {
      throw new Error(`undo ${step} failed`);
    }
  };
  return defineSaga<OrderInput>('order')
    .step('reserve', {
      run: (input) => {
        log.push('reserve');
        fail('reserve');
        return { reservationId: `r-${input.orderId}` };
      },
      compensate: (_input, ctx) => {
        undo('reserve');
        return ctx.result?.reservationId;
      },
    })
    .step('charge', {
      run: async (input, ctx) => {
        log.push(`charge ${ctx.results.reserve.reservationId}`);
        await new Promise((resolve) => setTimeout(resolve, 2));
        fail('charge');
        return { paymentId: `p-${input.total}` };
      },
      compensate: async () => undo('charge'),
    })
    .step('ship', {
      run: (_input, ctx) =>
        defer(() => {
          log.push(`ship ${ctx.results.charge.paymentId}`);
          fail('ship');
          return of('label-1', 'label-2');
        }),
      compensate: () => of(undo('ship')),
    })
    .build();
}

describe('SagaOrchestrator: a saga that completes', () => {
  it('runs the steps in order, passes results on, and returns the typed context', async () => {
    const log: string[] = [];
    const result = await orchestrator.run(orderSaga(log), { orderId: 'o-1', total: 42 }, { sagaId: 'saga-1' });

    expect(log).toEqual(['reserve', 'charge r-o-1', 'ship p-42']);
    expect(result).toEqual({
      sagaId: 'saga-1',
      sagaName: 'order',
      outcome: 'completed',
      context: {
        sagaId: 'saga-1',
        sagaName: 'order',
        input: { orderId: 'o-1', total: 42 },
        // An Observable step's result is its last value.
        results: { reserve: { reservationId: 'r-o-1' }, charge: { paymentId: 'p-42' }, ship: 'label-2' },
      },
    });
    expectTypeOf(result.context.results.reserve).toEqualTypeOf<{ reservationId: string }>();
    expectTypeOf(result.context.results.charge).toEqualTypeOf<{ paymentId: string }>();
    expectTypeOf(result.context.results.ship).toEqualTypeOf<string>();
  });

  it('traces the run: saga {name} with one saga.step {step} child per step, attributes and events', async () => {
    await orchestrator.run(orderSaga([]), { orderId: 'o-1', total: 42 }, { sagaId: 'saga-1', attributes: { 'order.id': 'o-1' } });
    const all = spans();
    expect(shape(all)).toEqual([
      'saga order UNSET',
      '  saga.step reserve UNSET',
      '  saga.step charge UNSET',
      '  saga.step ship UNSET',
    ]);
    const root = getSpan(all, 'saga order');
    expectSpan(root, all)
      .toHaveKind(SpanKind.INTERNAL)
      .toBeRoot()
      .toHaveStatus(SpanStatusCode.UNSET)
      .toHaveAttributes({
        'saga.name': 'order',
        'saga.id': 'saga-1',
        'saga.outcome': 'completed',
        'saga.step.count': 3,
        'order.id': 'o-1',
      });
    ['reserve', 'charge', 'ship'].forEach((step, index) => {
      const span = getSpan(all, `saga.step ${step}`);
      expectSpan(span, all)
        .toHaveKind(SpanKind.INTERNAL)
        .toHaveParent(root)
        .toHaveAttributes({
          'saga.name': 'order',
          'saga.id': 'saga-1',
          'saga.step.name': step,
          'saga.step.index': index,
          'saga.step.outcome': 'completed',
          'saga.step.retries': 0,
        })
        .toHaveEvent('saga.step.started', { 'saga.step.attempt': 1 })
        .toHaveEvent('saga.step.completed', { 'saga.step.attempt': 1 });
      expect(eventNames(span)).toEqual(['saga.step.started', 'saga.step.completed']);
    });
    expect(all.every((span) => span.ended)).toBe(true);
  });

  it('is a child of the active span, and the work of each step is a child of its step span', async () => {
    const tracer = trace.getTracer('test');
    const saga = defineSaga('nested')
      .step('one', { run: () => tracer.startActiveSpan('work one', (span) => span.end()) })
      .step('two', { run: () => defer(() => of(tracer.startActiveSpan('work two', (span) => span.end()))) })
      .build();
    await tracer.startActiveSpan('POST /orders', async (request) => {
      await orchestrator.run(saga, undefined);
      request.end();
    });
    const all = spans();
    expect(shape(all)).toEqual([
      'POST /orders UNSET',
      '  saga nested UNSET',
      '    saga.step one UNSET',
      '      work one UNSET',
      '    saga.step two UNSET',
      '      work two UNSET',
    ]);
  });

  it('sets saga.id and saga.name as baggage inside the steps, on top of the caller baggage', async () => {
    const seen: Array<Record<string, string>> = [];
    const saga = defineSaga('bag')
      .step('look', {
        run: async () => {
          await Promise.resolve();
          const carrier: Record<string, string> = {};
          propagation.inject(context.active(), carrier);
          seen.push(carrier);
        },
      })
      .build();
    const callerBaggage = propagation.createBaggage({ 'tenant.id': { value: 'acme' } });
    await context.with(propagation.setBaggage(ROOT_CONTEXT, callerBaggage), () =>
      orchestrator.run(saga, undefined, { sagaId: 's-7' }),
    );
    const step = getSpan(spans(), 'saga.step look');
    expect(seen).toHaveLength(1);
    expect(seen[0]!.traceparent).toBe(`00-${step.spanContext().traceId}-${step.spanContext().spanId}-01`);
    expect(seen[0]!.baggage!.split(',').sort()).toEqual(['saga.id=s-7', 'saga.name=bag', 'tenant.id=acme']);
    // Outside the run, the caller's context is unchanged.
    expect(propagation.getBaggage(context.active())).toBeUndefined();
  });

  it('gives each step its context: sagaId, input, frozen results so far, index, attempt and a signal', async () => {
    const contexts: SagaStepContext<{ n: number }, any>[] = [];
    const saga = defineSaga<{ n: number }>('ctx')
      .step('a', { run: (input, ctx) => (contexts.push(ctx), input.n + 1) })
      .step('b', { run: (_input, ctx) => (contexts.push(ctx), ctx.results.a * 2) })
      .build();
    const result = await orchestrator.run(saga, { n: 1 });
    expect(result.context.results).toEqual({ a: 2, b: 4 });
    expect(contexts.map(({ signal: _s, ...rest }) => rest)).toEqual([
      { sagaId: result.sagaId, sagaName: 'ctx', input: { n: 1 }, results: {}, step: 'a', index: 0, attempt: 1 },
      { sagaId: result.sagaId, sagaName: 'ctx', input: { n: 1 }, results: { a: 2 }, step: 'b', index: 1, attempt: 1 },
    ]);
    expect(Object.isFrozen(contexts[1]!.results)).toBe(true);
    expect(contexts[0]!.signal.aborted).toBe(false);
    expect(result.sagaId).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('SagaOrchestrator: a failing step is compensated in reverse', () => {
  it('runs the compensations of the completed steps, last first, and throws SagaFailedError', async () => {
    const log: string[] = [];
    const error = await orchestrator
      .run(orderSaga(log, { failAt: 'ship' }), { orderId: 'o-2', total: 9 }, { sagaId: 'saga-2' })
      .catch((e: unknown) => e);

    expect(log).toEqual(['reserve', 'charge r-o-2', 'ship p-9', 'undo charge', 'undo reserve']);
    expect(error).toBeInstanceOf(SagaFailedError);
    const failure = error as SagaFailedError;
    expect(failure).toMatchObject({
      name: 'SagaFailedError',
      sagaId: 'saga-2',
      sagaName: 'order',
      failedStep: 'ship',
      outcome: 'compensated',
      compensations: [
        { step: 'charge', outcome: 'compensated', attempts: 1 },
        { step: 'reserve', outcome: 'compensated', attempts: 1 },
      ],
      results: { reserve: { reservationId: 'r-o-2' }, charge: { paymentId: 'p-9' } },
    });
    expect(failure.cause).toBeInstanceOf(RangeError);
    expect((failure.cause as Error).message).toBe('ship refused');
    expect(failure.message).toBe('Saga "order" failed at step "ship" (ship refused); the completed steps were compensated.');
  });

  it('traces it: the failed step ERROR, saga.compensate with one linked child per compensation, in reverse', async () => {
    await orchestrator.run(orderSaga([], { failAt: 'ship' }), { orderId: 'o-2', total: 9 }, { sagaId: 'saga-2' }).catch(() => undefined);
    const all = spans();
    expect(shape(all)).toEqual([
      'saga order ERROR',
      '  saga.step reserve UNSET',
      '  saga.step charge UNSET',
      '  saga.step ship ERROR',
      '  saga.compensate order UNSET',
      '    saga.compensation charge UNSET',
      '    saga.compensation reserve UNSET',
    ]);
    const root = getSpan(all, 'saga order');
    const reserve = getSpan(all, 'saga.step reserve');
    const charge = getSpan(all, 'saga.step charge');
    const ship = getSpan(all, 'saga.step ship');
    const compensate = getSpan(all, 'saga.compensate order');

    expectSpan(root, all)
      .toHaveStatus(SpanStatusCode.ERROR, /failed at step "ship"/)
      .toHaveAttributes({
        'saga.outcome': 'compensated',
        'saga.failed_step': 'ship',
        'error.type': 'SagaFailedError',
        'saga.step.count': 3,
      });
    expectSpan(ship, all)
      .toHaveStatus(SpanStatusCode.ERROR, 'ship refused')
      .toHaveAttributes({ 'saga.step.outcome': 'failed', 'saga.step.retries': 0, 'error.type': 'RangeError' })
      .toHaveEvent('saga.step.failed', {
        'saga.step.attempt': 1,
        'saga.step.will_retry': false,
        'error.type': 'RangeError',
        'exception.message': 'ship refused',
      });
    expect(eventNames(ship)).toEqual(['saga.step.started', 'saga.step.failed', 'exception']);
    expectSpan(compensate, all)
      .toHaveParent(root)
      .toHaveStatus(SpanStatusCode.UNSET)
      .toHaveAttributes({ 'saga.name': 'order', 'saga.id': 'saga-2', 'saga.failed_step': 'ship', 'saga.compensation.count': 2 });

    for (const [step, forward, index] of [
      ['charge', charge, 1],
      ['reserve', reserve, 0],
    ] as const) {
      const span = getSpan(all, `saga.compensation ${step}`);
      expectSpan(span, all)
        .toHaveParent(compensate)
        .toHaveStatus(SpanStatusCode.UNSET)
        .toLinkTo(forward, { 'saga.link.type': 'compensated_step' })
        .toLinkTo(ship, { 'saga.link.type': 'failed_step' })
        .toHaveAttributes({
          'saga.name': 'order',
          'saga.id': 'saga-2',
          'saga.step.name': step,
          'saga.step.index': index,
          'saga.compensation.outcome': 'compensated',
          'saga.compensation.retries': 0,
        });
      expect(span.links).toHaveLength(2);
      expect(eventNames(span)).toEqual(['saga.compensation.started', 'saga.compensation.completed']);
    }
    // Each error object is one exception event: the step's on its span, SagaFailedError on the root.
    expect(all.flatMap((span) => exceptions(span).map(() => span.name)).sort()).toEqual(['saga order', 'saga.step ship']);
    expect(exceptions(root)[0]!.attributes).toMatchObject({ 'exception.type': 'SagaFailedError' });
    expect(all.every((span) => span.ended)).toBe(true);
  });

  it('fails on a rejected Promise and on an errored Observable the same way', async () => {
    const log: string[] = [];
    await expect(orchestrator.run(orderSaga(log, { failAt: 'charge' }), { orderId: 'o', total: 1 })).rejects.toMatchObject({
      failedStep: 'charge',
      compensations: [{ step: 'reserve', outcome: 'compensated' }],
    });
    expect(log).toEqual(['reserve', 'charge r-o', 'undo reserve']);

    exporter.reset();
    const boom = new TypeError('stream broke');
    const saga = defineSaga('obs')
      .step('a', { run: () => 1, compensate: () => undefined })
      .step('b', { run: () => of(1).pipe(delay(1), () => throwError(() => boom)) })
      .build();
    const error = (await orchestrator.run(saga, undefined).catch((e: unknown) => e)) as SagaFailedError;
    expect(error.cause).toBe(boom);
    expectSpan(getSpan(spans(), 'saga.step b')).toHaveStatus(SpanStatusCode.ERROR, 'stream broke');
  });

  it('a failing first step has nothing to compensate: an empty saga.compensate span', async () => {
    const log: string[] = [];
    const error = (await orchestrator.run(orderSaga(log, { failAt: 'reserve' }), { orderId: 'o', total: 1 }).catch((e: unknown) => e)) as SagaFailedError;
    expect(log).toEqual(['reserve']);
    expect(error.compensations).toEqual([]);
    expect(error.outcome).toBe('compensated');
    expect(shape(spans())).toEqual([
      'saga order ERROR',
      '  saga.step reserve ERROR',
      '  saga.compensate order UNSET',
    ]);
    expectSpan(getSpan(spans(), 'saga.compensate order')).toHaveAttributes({ 'saga.compensation.count': 0 });
  });

  it('gives each compensation the step result, all results, the failed step and the cause', async () => {
    const seen: SagaCompensationContext<unknown, unknown>[] = [];
    const cause = new Error('declined');
    const saga = defineSaga('comp-ctx')
      .step('a', { run: () => 'A', compensate: (_input, ctx) => void seen.push(ctx) })
      .step('b', { run: () => 'B', compensate: (_input, ctx) => void seen.push(ctx) })
      .step('c', {
        run: () => {
          throw cause;
        },
      })
      .build();
    await orchestrator.run(saga, { x: 1 }, { sagaId: 's' }).catch(() => undefined);
    expect(seen.map(({ signal: _signal, ...rest }) => rest)).toEqual([
      { sagaId: 's', sagaName: 'comp-ctx', input: { x: 1 }, results: { a: 'A', b: 'B' }, step: 'b', index: 1, attempt: 1, result: 'B', failedStep: 'c', error: cause },
      { sagaId: 's', sagaName: 'comp-ctx', input: { x: 1 }, results: { a: 'A', b: 'B' }, step: 'a', index: 0, attempt: 1, result: 'A', failedStep: 'c', error: cause },
    ]);
  });

  it('a step without compensation is reported as skipped, with an event and no span', async () => {
    const saga = defineSaga('skip')
      .step('a', { run: () => 1, compensate: () => undefined })
      .step('notify', { run: () => 2 })
      .step('c', {
        run: () => {
          throw new Error('no');
        },
      })
      .build();
    const error = (await orchestrator.run(saga, undefined).catch((e: unknown) => e)) as SagaFailedError;
    expect(error.outcome).toBe('compensated');
    expect(error.compensations).toEqual([
      { step: 'notify', outcome: 'skipped', attempts: 0, reason: 'the step has no compensation' },
      { step: 'a', outcome: 'compensated', attempts: 1 },
    ]);
    expect(shape(spans())).toEqual([
      'saga skip ERROR',
      '  saga.step a UNSET',
      '  saga.step notify UNSET',
      '  saga.step c ERROR',
      '  saga.compensate skip UNSET',
      '    saga.compensation a UNSET',
    ]);
    expectSpan(getSpan(spans(), 'saga.compensate skip'))
      .toHaveAttributes({ 'saga.compensation.count': 1 })
      .toHaveEvent('saga.compensation.skipped', {
        'saga.step.name': 'notify',
        'saga.step.index': 1,
        'saga.compensation.skip_reason': 'the step has no compensation',
      });
  });

  it('compensateOnFailure also compensates the failed step itself, first, with no result', async () => {
    const log: string[] = [];
    const saga = defineSaga('remote')
      .step('a', { run: () => 'A', compensate: () => void log.push('undo a') })
      .step('charge', {
        run: () => {
          throw new Error('reply lost');
        },
        compensate: (_input, ctx) => void log.push(`undo charge result=${String(ctx.result)}`),
        compensateOnFailure: true,
      })
      .build();
    const error = (await orchestrator.run(saga, undefined).catch((e: unknown) => e)) as SagaFailedError;
    expect(log).toEqual(['undo charge result=undefined', 'undo a']);
    expect(error.compensations.map((report) => report.step)).toEqual(['charge', 'a']);
    const all = spans();
    const failed = getSpan(all, 'saga.step charge');
    expectSpan(getSpan(all, 'saga.compensation charge'), all)
      .toLinkTo(failed, { 'saga.link.type': 'compensated_step' })
      .toLinkTo(failed, { 'saga.link.type': 'failed_step' });
  });
});

describe('SagaOrchestrator: retries', () => {
  it('retries a step per its policy, in one span with an event per attempt', async () => {
    let calls = 0;
    const attempts: number[] = [];
    const saga = defineSaga('flaky')
      .step('call', {
        retry: { attempts: 3, delayMs: 5, backoff: 'exponential' },
        run: (_input, ctx) => {
          attempts.push(ctx.attempt);
          calls++;
          if (calls < 3) {
            throw new Error(`try ${calls} failed`);
          }
          return 'ok';
        },
      })
      .build();
    const started = Date.now();
    const result = await orchestrator.run(saga, undefined);
    expect(Date.now() - started).toBeGreaterThanOrEqual(5 + 10 - 2);
    expect(result.context.results.call).toBe('ok');
    expect(attempts).toEqual([1, 2, 3]);

    const step = getSpan(spans(), 'saga.step call');
    expectSpan(step).toHaveStatus(SpanStatusCode.UNSET).toHaveAttributes({ 'saga.step.outcome': 'completed', 'saga.step.retries': 2 });
    expect(step.events.map((event) => [event.name, event.attributes])).toEqual([
      ['saga.step.started', { 'saga.step.attempt': 1 }],
      ['saga.step.failed', { 'saga.step.attempt': 1, 'saga.step.will_retry': true, 'error.type': 'Error', 'exception.message': 'try 1 failed' }],
      ['saga.step.started', { 'saga.step.attempt': 2 }],
      ['saga.step.failed', { 'saga.step.attempt': 2, 'saga.step.will_retry': true, 'error.type': 'Error', 'exception.message': 'try 2 failed' }],
      ['saga.step.started', { 'saga.step.attempt': 3 }],
      ['saga.step.completed', { 'saga.step.attempt': 3 }],
    ]);
    // Failed attempts that were retried are events, not recorded errors.
    expect(exceptions(step)).toHaveLength(0);
  });

  it('gives up after the last attempt and records the last error once', async () => {
    let calls = 0;
    const saga = defineSaga('hopeless')
      .step('call', {
        retry: { attempts: 2 },
        run: () => {
          calls++;
          throw new Error(`failure ${calls}`);
        },
      })
      .build();
    const error = (await orchestrator.run(saga, undefined).catch((e: unknown) => e)) as SagaFailedError;
    expect(calls).toBe(2);
    expect((error.cause as Error).message).toBe('failure 2');
    const step = getSpan(spans(), 'saga.step call');
    expectSpan(step)
      .toHaveStatus(SpanStatusCode.ERROR, 'failure 2')
      .toHaveAttributes({ 'saga.step.outcome': 'failed', 'saga.step.retries': 1 })
      .toHaveEvent('saga.step.failed', { 'saga.step.attempt': 2, 'saga.step.will_retry': false });
    expect(exceptions(step)).toHaveLength(1);
  });

  it('retryIf decides which errors are retried', async () => {
    let calls = 0;
    class Permanent extends Error {}
    const saga = defineSaga('selective')
      .step('call', {
        retry: { attempts: 5, retryIf: (error) => !(error instanceof Permanent) },
        run: () => {
          calls++;
          throw calls === 1 ? new Error('transient') : new Permanent('card stolen');
        },
      })
      .build();
    await orchestrator.run(saga, undefined).catch(() => undefined);
    expect(calls).toBe(2);
    expectSpan(getSpan(spans(), 'saga.step call')).toHaveAttributes({ 'saga.step.retries': 1, 'error.type': 'Permanent' });
  });
});

describe('SagaOrchestrator: timeouts', () => {
  it('fails a step that does not settle in timeoutMs, aborts its signal, and compensates', async () => {
    let signal: AbortSignal | undefined;
    const log: string[] = [];
    const saga = defineSaga('slow')
      .step('a', { run: () => 'A', compensate: () => void log.push('undo a') })
      .step('hang', {
        timeoutMs: 20,
        run: (_input, ctx) => {
          signal = ctx.signal;
          return new Promise<never>(() => undefined);
        },
      })
      .build();
    const error = (await orchestrator.run(saga, undefined).catch((e: unknown) => e)) as SagaFailedError;
    expect(error.cause).toBeInstanceOf(SagaStepTimeoutError);
    expect(error.cause).toMatchObject({ sagaName: 'slow', step: 'hang', phase: 'step', timeoutMs: 20, attempt: 1 });
    expect((error.cause as Error).message).toBe('Step "hang" of saga "slow" timed out after 20 ms (attempt 1).');
    expect(signal?.aborted).toBe(true);
    expect(signal?.reason).toBe(error.cause);
    expect(log).toEqual(['undo a']);
    expectSpan(getSpan(spans(), 'saga.step hang'))
      .toHaveStatus(SpanStatusCode.ERROR, /timed out after 20 ms/)
      .toHaveAttributes({ 'saga.step.outcome': 'timed_out', 'error.type': 'SagaStepTimeoutError' });
  });

  it('unsubscribes an Observable step on timeout, and a timed-out attempt can be retried', async () => {
    let subscriptions = 0;
    let teardowns = 0;
    const saga = defineSaga('obs-timeout')
      .step('reply', {
        timeoutMs: 20,
        retry: { attempts: 2 },
        run: (_input, ctx) =>
          new Observable<string>((subscriber) => {
            subscriptions++;
            if (ctx.attempt === 2) {
              subscriber.next('late but fine');
              subscriber.complete();
            }
            return () => void teardowns++;
          }),
      })
      .build();
    const result = await orchestrator.run(saga, undefined);
    expect(result.context.results.reply).toBe('late but fine');
    expect(subscriptions).toBe(2);
    expect(teardowns).toBe(2);
    const step = getSpan(spans(), 'saga.step reply');
    expectSpan(step)
      .toHaveAttributes({ 'saga.step.outcome': 'completed', 'saga.step.retries': 1 })
      .toHaveEvent('saga.step.failed', { 'saga.step.attempt': 1, 'error.type': 'SagaStepTimeoutError', 'saga.step.will_retry': true });
  });

  it('times out a compensation per its own policy', async () => {
    const saga = defineSaga('comp-timeout')
      .step('a', { run: () => 1, compensate: () => new Promise(() => undefined), compensation: { timeoutMs: 15 } })
      .step('b', {
        run: () => {
          throw new Error('b failed');
        },
      })
      .build();
    const error = (await orchestrator.run(saga, undefined).catch((e: unknown) => e)) as SagaFailedError;
    expect(error.outcome).toBe('compensation_failed');
    expect(error.compensations[0]!.error).toBeInstanceOf(SagaStepTimeoutError);
    expect(error.compensations[0]!.error).toMatchObject({ phase: 'compensation', step: 'a' });
  });
});

describe('SagaOrchestrator: compensation failure', () => {
  it('retries a failing compensation, records it, runs the others, and ends compensation_failed', async () => {
    const log: string[] = [];
    let chargeUndoCalls = 0;
    const saga = defineSaga('refund')
      .step('reserve', { run: () => 'r', compensate: () => void log.push('undo reserve') })
      .step('charge', {
        run: () => 'p',
        compensation: { retry: { attempts: 2 } },
        compensate: () => {
          chargeUndoCalls++;
          log.push('undo charge');
          throw new Error(`refund failed ${chargeUndoCalls}`);
        },
      })
      .step('ship', {
        run: () => {
          throw new Error('no courier');
        },
      })
      .build();
    const error = (await orchestrator.run(saga, undefined, { sagaId: 's-9' }).catch((e: unknown) => e)) as SagaFailedError;

    expect(log).toEqual(['undo charge', 'undo charge', 'undo reserve']);
    expect(error.outcome).toBe('compensation_failed');
    expect(error.compensations).toMatchObject([
      { step: 'charge', outcome: 'failed', attempts: 2, error: { message: 'refund failed 2' } },
      { step: 'reserve', outcome: 'compensated', attempts: 1 },
    ]);
    expect(error.message).toBe('Saga "refund" failed at step "ship" (no courier); compensation failed for "charge".');

    const all = spans();
    expect(shape(all)).toEqual([
      'saga refund ERROR',
      '  saga.step reserve UNSET',
      '  saga.step charge UNSET',
      '  saga.step ship ERROR',
      '  saga.compensate refund ERROR',
      '    saga.compensation charge ERROR',
      '    saga.compensation reserve UNSET',
    ]);
    expectSpan(getSpan(all, 'saga refund'), all).toHaveAttributes({ 'saga.outcome': 'compensation_failed', 'saga.id': 's-9' });
    expectSpan(getSpan(all, 'saga.compensate refund'), all)
      .toHaveStatus(SpanStatusCode.ERROR, '1 of 2 compensation(s) failed')
      .toHaveAttributes({ 'error.type': 'Error', 'saga.compensation.count': 2 });
    const undoCharge = getSpan(all, 'saga.compensation charge');
    expectSpan(undoCharge, all)
      .toHaveStatus(SpanStatusCode.ERROR, 'refund failed 2')
      .toHaveAttributes({ 'saga.compensation.outcome': 'failed', 'saga.compensation.retries': 1 })
      .toHaveEvent('saga.compensation.failed', { 'saga.compensation.attempt': 1, 'saga.compensation.will_retry': true })
      .toHaveEvent('saga.compensation.failed', { 'saga.compensation.attempt': 2, 'saga.compensation.will_retry': false });
    expect(exceptions(undoCharge)).toHaveLength(1);
    expect(exceptions(getSpan(all, 'saga.compensate refund'))).toHaveLength(0);
  });

  it("onCompensationFailure: 'stop' skips the compensations after a failed one", async () => {
    const log: string[] = [];
    const saga = defineSaga('strict', { onCompensationFailure: 'stop' })
      .step('a', { run: () => 1, compensate: () => void log.push('undo a') })
      .step('b', {
        run: () => 2,
        compensate: () => {
          throw new Error('undo b failed');
        },
      })
      .step('c', {
        run: () => {
          throw new Error('c failed');
        },
      })
      .build();
    const error = (await orchestrator.run(saga, undefined).catch((e: unknown) => e)) as SagaFailedError;
    expect(log).toEqual([]);
    expect(error.compensations).toMatchObject([
      { step: 'b', outcome: 'failed', attempts: 1 },
      { step: 'a', outcome: 'skipped', attempts: 0, reason: 'an earlier compensation failed and onCompensationFailure is "stop"' },
    ]);
    expectSpan(getSpan(spans(), 'saga.compensate strict')).toHaveEvent('saga.compensation.skipped', { 'saga.step.name': 'a' });

    // A run option overrides the definition.
    exporter.reset();
    const again = (await orchestrator.run(saga, undefined, { onCompensationFailure: 'continue' }).catch((e: unknown) => e)) as SagaFailedError;
    expect(log).toEqual(['undo a']);
    expect(again.compensations.map((report) => report.outcome)).toEqual(['failed', 'compensated']);
  });
});

describe('SagaOrchestrator: misuse', () => {
  it('a name needs the registry of OtelSagaModule', async () => {
    await expect(orchestrator.run('order', {})).rejects.toThrow(SagaDefinitionError);
    await expect(orchestrator.run('order', {})).rejects.toThrow(/needs the SagaRegistry of OtelSagaModule/);
    expect(spans()).toHaveLength(0);
  });

  it('rejects bad run options before anything runs', async () => {
    let ran = false;
    const saga = defineSaga('x').step('a', { run: () => (ran = true) }).build();
    await expect(orchestrator.run(saga, undefined, { sagaId: '' })).rejects.toThrow(/"sagaId" must be a non-empty string, got ""/);
    await expect(orchestrator.run(saga, undefined, { onCompensationFailure: 'later' as 'stop' })).rejects.toThrow(
      /"onCompensationFailure" must be 'continue' or 'stop', got "later"/,
    );
    await expect(orchestrator.run(42 as unknown as string, undefined)).rejects.toThrow(/"saga" must be a SagaDefinition or the name/);
    expect(ran).toBe(false);
    expect(spans()).toHaveLength(0);
  });

  it('keeps the thrown value unchanged, whatever it is', async () => {
    const saga = defineSaga('odd')
      .step('a', {
        run: () => {
          throw 'a plain string';
        },
      })
      .build();
    const error = (await orchestrator.run(saga, undefined).catch((e: unknown) => e)) as SagaFailedError;
    expect(error.cause).toBe('a plain string');
    expect(error.message).toBe('Saga "odd" failed at step "a" (a plain string); the completed steps were compensated.');
    expectSpan(getSpan(spans(), 'saga.step a')).toHaveStatus(SpanStatusCode.ERROR, 'a plain string');
    expect(spanTree(spans())).toContain('saga.step a');
  });
});
