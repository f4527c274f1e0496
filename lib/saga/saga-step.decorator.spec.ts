import 'reflect-metadata';
import { Controller, Inject, Injectable, Module, Scope, SetMetadata, type Type } from '@nestjs/common';
import { REQUEST } from '@nestjs/core';
import { Test, type TestingModule } from '@nestjs/testing';
import { SpanStatusCode } from '@opentelemetry/api';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SAGA_BAGGAGE_KEYS, SAGA_STEP_METADATA } from './saga.constants.js';
import { defineSaga, type SagaDefinition } from './saga-definition.js';
import { SagaDefinitionError, SagaFailedError } from './saga.errors.js';
import type { SagaCompensationContext, SagaStepContext } from './saga.interfaces.js';
import { OtelSagaModule } from './saga.module.js';
import { SagaOrchestrator } from './saga.orchestrator.js';
import { SagaRegistry } from './saga.registry.js';
import { OtelTestingModule } from '../testing/otel-testing.module.js';
import { expectSpan } from '../testing/span-assertions.js';
import { childrenOf, getSpan } from '../testing/span-query.js';
import { spanRecorder } from '../testing/span-recorder.js';
import { getSagaStepOptions, SagaStep } from './saga-step.decorator.js';
import { Traced } from '../decorators/traced.decorator.js';

interface OrderInput {
  orderId: string;
  amount: number;
  failPayment?: boolean;
}

const calls: string[] = [];

@Injectable()
class InventorySteps {
  private readonly prefix = 'r';

  @Traced()
  @SagaStep({ saga: 'order', order: 10, compensate: 'release' })
  reserve(input: OrderInput, ctx: SagaStepContext<OrderInput>) {
    calls.push(`reserve ${input.orderId} #${ctx.index}`);
    return { reservationId: `${this.prefix}-${input.orderId}` };
  }

  release(_input: OrderInput, ctx: SagaCompensationContext<OrderInput, { reservationId: string }>) {
    calls.push(`release ${ctx.result?.reservationId} after ${ctx.failedStep}`);
  }
}

@Injectable()
class PaymentSteps {
  refunds = 0;

  @SetMetadata('role', 'payment')
  @SagaStep({
    saga: 'order',
    step: 'charge',
    order: 20,
    retry: { attempts: 2 },
    compensate(this: PaymentSteps) {
      this.refunds++;
      calls.push('refund');
    },
  })
  async pay(input: OrderInput, ctx: SagaStepContext<OrderInput, { reserve: { reservationId: string } }>) {
    calls.push(`pay ${input.amount} for ${ctx.results.reserve.reservationId} attempt ${ctx.attempt}`);
    if (input.failPayment) {
      throw new Error('card declined');
    }
    return { paymentId: 'p-1' };
  }
}

/** Steps may live on controllers too; this one closes the saga and has nothing to undo. */
@Controller()
class ConfirmController {
  @SagaStep({ saga: 'order', order: 30 })
  confirm(input: OrderInput) {
    calls.push(`confirm ${input.orderId}`);
    return 'confirmed';
  }
}

const refundSaga = defineSaga<{ id: string }>('refund')
  .step('refund', { run: (input) => `refunded ${input.id}` })
  .build();

describe('@SagaStep options', () => {
  const decorate = (options: unknown, key = 'method') => {
    class Target {
      method(): void {}
    }
    const descriptor = Object.getOwnPropertyDescriptor(Target.prototype, 'method')!;
    SagaStep(options as never)(Target.prototype, key, descriptor);
    return Target;
  };

  it('stores the options on the method, one entry per saga, without wrapping it', () => {
    class Steps {
      @SagaStep({ saga: 'a', order: 1 })
      @SagaStep({ saga: 'b', order: 2, step: 'other' })
      work(): string {
        return 'same';
      }
    }
    const method = Steps.prototype.work;
    expect(method.name).toBe('work');
    expect(new Steps().work()).toBe('same');
    expect(getSagaStepOptions(method)).toEqual([
      { saga: 'b', order: 2, step: 'other' },
      { saga: 'a', order: 1 },
    ]);
    expect(Reflect.getMetadata(SAGA_STEP_METADATA, method)).toHaveLength(2);
    expect(getSagaStepOptions(undefined)).toEqual([]);
  });

  it('keeps the metadata of other decorators, above or below it', () => {
    expect(Reflect.getMetadata('role', PaymentSteps.prototype.pay)).toBe('payment');
    expect(getSagaStepOptions(PaymentSteps.prototype.pay)).toHaveLength(1);
    // @Traced above @SagaStep: the wrapper got the step options copied.
    expect(getSagaStepOptions(InventorySteps.prototype.reserve)).toEqual([
      { saga: 'order', order: 10, compensate: 'release' },
    ]);
  });

  it('rejects wrong options when the class is defined, saying how to fix them', () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ saga: '', order: 1 }, /a saga name must be a non-empty string, got ""/],
      [{ saga: 'x' }, /"order" must be a finite number \(steps run in ascending order\), got undefined/],
      [{ saga: 'x', order: Number.NaN }, /"order" must be a finite number/],
      [{ saga: 'x', order: 1, step: '' }, /"step" must be a non-empty string \(default: the method name\), got ""/],
      [{ saga: 'x', order: 1, compensate: 3 }, /"compensate" must be the name of a method of the provider, or a function, got 3/],
      [{ saga: 'x', order: 1, timeoutMs: -1 }, /"timeoutMs" must be a positive number of milliseconds, got -1/],
      [{ saga: 'x', order: 1, retry: { attempts: 1.5 } }, /"retry.attempts" must be a positive integer/],
      [{ saga: 'x', order: 1, retry: { attempts: 2, backoff: 'linear' } }, /"retry.backoff" must be 'fixed', 'exponential' or a function/],
      [{ saga: 'x', order: 1, compensation: { timeoutMs: 0 } }, /"compensation.timeoutMs" must be a positive number/],
      [{ saga: 'x', order: 1, compensateOnFailure: 'yes' }, /"compensateOnFailure" must be a boolean/],
    ];
    for (const [options, message] of cases) {
      expect(() => decorate(options)).toThrow(SagaDefinitionError);
      expect(() => decorate(options)).toThrow(message);
    }
    expect(() => decorate({ saga: 'x', order: 1 })).not.toThrow();
    expect(() => decorate({ saga: 'x', order: 1, timeoutMs: -1 })).toThrow(/@SagaStep\(\) on Target.method/);
  });

  it('only decorates instance methods, and a method only once per saga', () => {
    expect(() => {
      class Bad {
        @SagaStep({ saga: 'x', order: 1 })
        static work(): void {}
      }
      return Bad;
    }).toThrow(/@SagaStep\(\) can only decorate methods, and Bad.work is not a method/);
    expect(() => {
      class Accessor {
        @SagaStep({ saga: 'x', order: 1 })
        get value(): number {
          return 1;
        }
      }
      return Accessor;
    }).toThrow(/Accessor.value is not a method/);
    expect(() => {
      class Twice {
        @SagaStep({ saga: 'x', order: 2 })
        @SagaStep({ saga: 'x', order: 1 })
        work(): void {}
      }
      return Twice;
    }).toThrow(/"saga" must be a saga Twice.work is not already a step of, got "x"/);
  });
});

describe('@SagaStep discovery and runs by name (OtelSagaModule)', () => {
  let moduleRef: TestingModule;
  let orchestrator: SagaOrchestrator;

  beforeAll(async () => {
    moduleRef = await Test.createTestingModule({
      imports: [
        OtelTestingModule.forRoot({ serviceName: 'orders', baggageToAttributes: [...SAGA_BAGGAGE_KEYS] }),
        OtelSagaModule.forRoot({ sagas: [refundSaga] }),
      ],
      providers: [InventorySteps, PaymentSteps],
      controllers: [ConfirmController],
    }).compile();
    await moduleRef.init();
    orchestrator = moduleRef.get(SagaOrchestrator);
  });
  afterAll(async () => {
    await moduleRef?.close();
  });
  beforeEach(() => {
    spanRecorder.reset();
    calls.length = 0;
  });

  it('finds the steps of every provider and controller, sorted by order, next to registered sagas', () => {
    const registry = moduleRef.get(SagaRegistry);
    expect(registry.names()).toEqual(['order', 'refund']);
    expect(registry.get('order')!.steps.map((step) => step.name)).toEqual(['reserve', 'charge', 'confirm']);
    expect(registry.get('refund')).toBe(refundSaga);
  });

  it('runs a decorated saga by name, with `this` bound to the provider', async () => {
    const result = await orchestrator.run('order', { orderId: 'o-1', amount: 5 }, { sagaId: 'saga-d1' });
    expect(calls).toEqual(['reserve o-1 #0', 'pay 5 for r-o-1 attempt 1', 'confirm o-1']);
    expect(result.context.results).toEqual({ reserve: { reservationId: 'r-o-1' }, charge: { paymentId: 'p-1' }, confirm: 'confirmed' });

    const spans = spanRecorder.getFinishedSpans();
    const root = getSpan(spans, 'saga order');
    expectSpan(root, spans).toHaveAttributes({ 'saga.name': 'order', 'saga.id': 'saga-d1', 'saga.step.count': 3, 'saga.outcome': 'completed' });
    expect(childrenOf(spans, root).map((span) => span.name)).toEqual(['saga.step reserve', 'saga.step charge', 'saga.step confirm']);
    // The @Traced span of the step method is a child of its step span, and baggageToAttributes
    // copied saga.id and saga.name onto it.
    const traced = getSpan(spans, 'InventorySteps.reserve');
    expectSpan(traced, spans)
      .toHaveParent(getSpan(spans, 'saga.step reserve'))
      .toHaveAttributes({ 'saga.id': 'saga-d1', 'saga.name': 'order' });
  });

  it('retries and compensates decorated steps per their options', async () => {
    const payments = moduleRef.get(PaymentSteps);
    const before = payments.refunds;
    const error = (await orchestrator
      .run('order', { orderId: 'o-2', amount: 7, failPayment: true })
      .catch((e: unknown) => e)) as SagaFailedError;
    expect(error).toBeInstanceOf(SagaFailedError);
    expect(calls).toEqual([
      'reserve o-2 #0',
      'pay 7 for r-o-2 attempt 1',
      'pay 7 for r-o-2 attempt 2',
      'release r-o-2 after charge',
    ]);
    // The failed step itself is not compensated (compensateOnFailure is off).
    expect(payments.refunds).toBe(before);
    expect(error.compensations).toEqual([{ step: 'reserve', outcome: 'compensated', attempts: 1 }]);

    const spans = spanRecorder.getFinishedSpans();
    expectSpan(getSpan(spans, 'saga.step charge'), spans)
      .toHaveStatus(SpanStatusCode.ERROR, 'card declined')
      .toHaveAttributes({ 'saga.step.retries': 1, 'saga.step.outcome': 'failed' });
    expectSpan(getSpan(spans, 'saga.compensation reserve'), spans)
      .toHaveParent(getSpan(spans, 'saga.compensate order'))
      .toLinkTo(getSpan(spans, 'saga.step reserve'), { 'saga.link.type': 'compensated_step' })
      .toLinkTo(getSpan(spans, 'saga.step charge'), { 'saga.link.type': 'failed_step' });
  });

  it('runs registered definitions by name, and names the known sagas for an unknown one', async () => {
    const result = await orchestrator.run('refund', { id: 'x' });
    expect(result.context.results).toEqual({ refund: 'refunded x' });
    await expect(orchestrator.run('ordr', {})).rejects.toThrow(
      /there is no saga named "ordr"\. Known sagas: "order", "refund"\./,
    );
  });
});

describe('@SagaStep bootstrap errors', () => {
  async function bootstrap(providers: Type[], sagas: SagaDefinition<any, any>[] = []) {
    const moduleRef = await Test.createTestingModule({
      imports: [OtelSagaModule.forRoot({ sagas })],
      providers,
    }).compile();
    try {
      await moduleRef.init();
    } finally {
      await moduleRef.close();
    }
  }

  it('two steps of one saga with the same order', async () => {
    @Injectable()
    class A {
      @SagaStep({ saga: 'dup', order: 1 })
      first(): void {}
    }
    @Injectable()
    class B {
      @SagaStep({ saga: 'dup', order: 1 })
      second(): void {}
    }
    await expect(bootstrap([A, B])).rejects.toThrow(
      /saga "dup" has two steps with order 1 \(A.first and B.second\), so their sequence is undefined/,
    );
  });

  it('two steps of one saga with the same name', async () => {
    @Injectable()
    class A {
      @SagaStep({ saga: 'names', order: 1, step: 'pay' })
      first(): void {}
      @SagaStep({ saga: 'names', order: 2 })
      pay(): void {}
    }
    await expect(bootstrap([A])).rejects.toThrow(/saga "names" has two steps named "pay" \(A.first and A.pay\)/);
  });

  it('a compensation method the provider does not have', async () => {
    @Injectable()
    class Inventory {
      @SagaStep({ saga: 'missing', order: 1, compensate: 'relase' })
      reserve(): void {}
      release(): void {}
    }
    const error = await bootstrap([Inventory]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SagaDefinitionError);
    expect((error as Error).message).toBe(
      'otel-nest: step "reserve" of saga "missing" (Inventory.reserve) names compensation method "relase", which the ' +
        'provider does not have. Methods of the provider: reserve, release. Fix the name, or pass the function itself as { compensate }.',
    );
  });

  it('a step on a request-scoped provider', async () => {
    @Injectable({ scope: Scope.REQUEST })
    class PerRequest {
      @SagaStep({ saga: 'scoped', order: 1 })
      run(): void {}
    }
    await expect(bootstrap([PerRequest])).rejects.toThrow(/PerRequest.run is a step of saga "scoped", but its provider is request-scoped/);

    // A singleton that depends on REQUEST becomes request-scoped too.
    @Injectable()
    class DependsOnRequest {
      constructor(@Inject(REQUEST) readonly request: unknown) {}
      @SagaStep({ saga: 'scoped', order: 1 })
      run(): void {}
    }
    await expect(bootstrap([DependsOnRequest])).rejects.toThrow(/DependsOnRequest.run is a step of saga "scoped", but its provider is request-scoped/);
  });

  it('a saga defined by decorators and registered as a definition', async () => {
    @Injectable()
    class Refunds {
      @SagaStep({ saga: 'refund', order: 1 })
      refund(): void {}
    }
    await expect(bootstrap([Refunds], [refundSaga])).rejects.toThrow(/saga "refund" is defined twice/);
  });

  it('without forRoot(), OtelSagaModule still finds the steps', async () => {
    @Injectable()
    class Solo {
      @SagaStep({ saga: 'solo', order: 1 })
      run(): string {
        return 'ran';
      }
    }
    @Module({ imports: [OtelSagaModule], providers: [Solo] })
    class SoloModule {}
    const moduleRef = await Test.createTestingModule({ imports: [SoloModule] }).compile();
    await moduleRef.init();
    const result = await moduleRef.get(SagaOrchestrator).run('solo', undefined);
    expect(result.context.results).toEqual({ run: 'ran' });
    await moduleRef.close();
  });
});
