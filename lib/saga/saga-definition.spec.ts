import { of } from 'rxjs';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { defineSaga, SagaDefinition } from './saga-definition.js';
import { SagaDefinitionError } from './saga.errors.js';
import type { SagaCompensationContext, SagaStepContext, SagaStepDefinition } from './saga.interfaces.js';

describe('defineSaga()', () => {
  it('builds a frozen definition with the steps in the order given', () => {
    const saga = defineSaga<{ id: string }>('order', { onCompensationFailure: 'stop' })
      .step('reserve', { run: () => ({ reservationId: 'r' }), compensate: () => undefined, timeoutMs: 100 })
      .step('charge', { run: async () => 42, retry: { attempts: 3, delayMs: 10, backoff: 'exponential' } })
      .build();
    expect(saga).toBeInstanceOf(SagaDefinition);
    expect(saga.name).toBe('order');
    expect(saga.options).toEqual({ onCompensationFailure: 'stop' });
    expect(saga.steps.map((step) => step.name)).toEqual(['reserve', 'charge']);
    expect(saga.steps[0]!.timeoutMs).toBe(100);
    expect(Object.isFrozen(saga.steps)).toBe(true);
    expect(Object.isFrozen(saga.options)).toBe(true);
  });

  it('types each step context with the results of the steps before it', () => {
    defineSaga<{ id: string }>('typed')
      .step('reserve', { run: (input) => ({ reservationId: input.id }) })
      .step('charge', {
        run: async (_input, ctx) => {
          expectTypeOf(ctx.results.reserve).toEqualTypeOf<{ reservationId: string }>();
          return 42;
        },
        compensate: (_input, ctx) => {
          expectTypeOf(ctx).toEqualTypeOf<SagaCompensationContext<{ id: string }, number>>();
        },
      })
      .step('ship', {
        run: (_input, ctx) => {
          expectTypeOf(ctx).toMatchTypeOf<SagaStepContext<{ id: string }, { reserve: { reservationId: string }; charge: number }>>();
          return of('label');
        },
        compensate: (_input, ctx) => {
          expectTypeOf(ctx.result).toEqualTypeOf<string | undefined>();
        },
      })
      .build();
  });

  it('a builder can build several definitions, each with its own copy of the steps', () => {
    const builder = defineSaga('grow').step('a', { run: () => 1 });
    const first = builder.build();
    const second = builder.step('b', { run: () => 2 }).build();
    expect(first.steps.map((step) => step.name)).toEqual(['a']);
    expect(second.steps.map((step) => step.name)).toEqual(['a', 'b']);
  });

  it('rejects wrong definitions with a SagaDefinitionError that says how to fix them', () => {
    const cases: Array<[() => unknown, RegExp]> = [
      [() => defineSaga(''), /a saga name must be a non-empty string, got ""/],
      [() => defineSaga('x').build(), /saga "x" has no steps\. Add one with \.step\('reserve', \{ run, compensate \}\)/],
      [() => defineSaga('x').step('a', { run: () => 1 }).step('a', { run: () => 2 }), /saga "x" has two steps named "a"/],
      [() => defineSaga('x').step('a', { run: 'go' as never }), /step "a" of saga "x": "run" must be a function \(input, ctx\) => result, got "go"/],
      [() => defineSaga('x').step('a', { run: () => 1, compensate: {} as never }), /"compensate" must be a function/],
      [() => defineSaga('x').step('a', { run: () => 1, timeoutMs: Infinity }), /"timeoutMs" must be a positive number of milliseconds, got Infinity/],
      [() => defineSaga('x').step('a', { run: () => 1, retry: { attempts: 0 } }), /"retry.attempts" must be a positive integer \(the first attempt included\), got 0/],
      [() => defineSaga('x').step('a', { run: () => 1, retry: { attempts: 2, delayMs: -5 } }), /"retry.delayMs" must be a non-negative number/],
      [() => defineSaga('x').step('a', { run: () => 1, retry: { attempts: 2, retryIf: true as never } }), /"retry.retryIf" must be a function/],
      [() => defineSaga('x').step('a', { run: () => 1, compensation: { retry: { attempts: -1 } } }), /"compensation.retry.attempts" must be a positive integer/],
      [() => defineSaga('x', { onCompensationFailure: 'panic' as never }), /"onCompensationFailure" must be 'continue' or 'stop', got "panic"/],
      [() => defineSaga('x').step('', { run: () => 1 }), /"name" must be a non-empty string, got ""/],
      [() => new SagaDefinition('x', [null as unknown as SagaStepDefinition]), /"step" must be an object/],
    ];
    for (const [make, message] of cases) {
      expect(make).toThrow(SagaDefinitionError);
      expect(make).toThrow(message);
    }
    try {
      defineSaga('x').build();
    } catch (error) {
      expect((error as Error).name).toBe('SagaDefinitionError');
      expect((error as Error).message.startsWith('otel-nest: ')).toBe(true);
    }
  });
});
