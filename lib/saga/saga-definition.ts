import { validatePolicy, type OptionProblem } from './execution.js';
import { SagaDefinitionError } from './saga.errors.js';
import type {
  ExecutionPolicy,
  RetryPolicy,
  SagaCompensationContext,
  SagaDefinitionOptions,
  SagaStepContext,
  SagaStepDefinition,
  StepValue,
} from './saga.interfaces.js';
import {
  SAGA_EXAMPLES,
  sagaDuplicateStep,
  sagaNameInvalid,
  sagaOptionInvalid,
  sagaWithoutSteps,
} from './saga.messages.js';

/** An {@link OptionProblem} that throws a {@link SagaDefinitionError} about `where`. */
export function sagaProblem(where: string, example?: string): OptionProblem {
  return (option, expected, got) => {
    throw new SagaDefinitionError(sagaOptionInvalid(where, option, expected, got, example));
  };
}

/** Checks the options every step shares, whichever way it was defined. */
export function validateStepOptions(
  options: {
    timeoutMs?: number;
    retry?: RetryPolicy;
    compensation?: ExecutionPolicy;
    compensateOnFailure?: boolean;
  },
  problem: OptionProblem,
): void {
  validatePolicy({ timeoutMs: options.timeoutMs, retry: options.retry }, '', problem);
  validatePolicy(options.compensation, 'compensation', problem);
  if (options.compensateOnFailure !== undefined && typeof options.compensateOnFailure !== 'boolean') {
    problem('compensateOnFailure', 'a boolean', options.compensateOnFailure);
  }
}

export function validateSagaName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || name.trim() === '') {
    throw new SagaDefinitionError(sagaNameInvalid(name));
  }
}

function validateDefinitionOptions(saga: string, options: SagaDefinitionOptions): void {
  const value = options.onCompensationFailure;
  if (value !== undefined && value !== 'continue' && value !== 'stop') {
    sagaProblem(`saga "${saga}"`, "defineSaga('order', { onCompensationFailure: 'stop' })")(
      'onCompensationFailure',
      "'continue' or 'stop'",
      value,
    );
  }
}

/**
 * A saga: a name and its steps in run order. Build one with {@link defineSaga}; `@SagaStep()`
 * methods are turned into one at bootstrap. Validated when constructed, so a mistake shows at
 * startup with a {@link SagaDefinitionError}.
 *
 * `I` is the input type, `R` the type of the results of all steps, by step name.
 *
 * @publicApi
 */
export class SagaDefinition<I = unknown, R = Record<string, unknown>> {
  /** Carries the input and result types to `SagaOrchestrator.run()`; never set. */
  declare readonly __types?: { input: I; results: R };
  readonly steps: readonly SagaStepDefinition<I>[];

  constructor(
    readonly name: string,
    steps: readonly SagaStepDefinition<I>[],
    readonly options: SagaDefinitionOptions = {},
  ) {
    validateSagaName(name);
    if (!Array.isArray(steps) || steps.length === 0) {
      throw new SagaDefinitionError(sagaWithoutSteps(name));
    }
    validateDefinitionOptions(name, options);
    const seen = new Set<string>();
    steps.forEach((step, index) => {
      const label =
        step !== null && typeof step === 'object' && typeof step.name === 'string' && step.name.trim() !== ''
          ? `step "${step.name}"`
          : `step #${index + 1}`;
      const problem = sagaProblem(`${label} of saga "${name}"`, SAGA_EXAMPLES.builder);
      if (step === null || typeof step !== 'object') {
        problem('step', 'an object { name, run, compensate? }', step);
      }
      if (typeof step.name !== 'string' || step.name.trim() === '') {
        problem('name', 'a non-empty string', step.name);
      }
      if (typeof step.run !== 'function') {
        problem('run', 'a function (input, ctx) => result', step.run);
      }
      if (step.compensate !== undefined && typeof step.compensate !== 'function') {
        problem('compensate', 'a function (input, ctx) => unknown', step.compensate);
      }
      validateStepOptions(step, problem);
      if (seen.has(step.name)) {
        throw new SagaDefinitionError(sagaDuplicateStep(name, step.name, `step "${step.name}"`, `step #${index + 1}`));
      }
      seen.add(step.name);
    });
    this.steps = Object.freeze([...steps]);
    this.options = Object.freeze({ ...options });
  }
}

/** A step given to {@link SagaBuilder.step}. `R` holds the results of the steps before it. */
export interface SagaStepConfig<I, R, T> extends ExecutionPolicy {
  /** The forward action. Its value (a Promise's value, an Observable's last value) is the step's result. */
  run: (input: I, ctx: SagaStepContext<I, R>) => T;
  /** Undoes `run`; gets the step's result as `ctx.result`. Default: none. */
  compensate?: (input: I, ctx: SagaCompensationContext<I, StepValue<T>>) => unknown;
  /** Timeout and retries of `compensate`. Default: no timeout, no retry. */
  compensation?: ExecutionPolicy;
  /** See {@link SagaStepDefinition.compensateOnFailure}. Default `false`. */
  compensateOnFailure?: boolean;
}

/**
 * Builds a {@link SagaDefinition} step by step; each step's result type is added to the results
 * the next steps see:
 *
 * ```ts
 * const order = defineSaga<OrderInput>('order')
 *   .step('reserve', { run: (input) => inventory.reserve(input.items), compensate: (_input, ctx) => inventory.release(ctx.result!.id) })
 *   .step('charge', { run: (input, ctx) => payments.charge(input.total, ctx.results.reserve.id), retry: { attempts: 3 } })
 *   .build();
 * ```
 *
 * @publicApi
 */
export class SagaBuilder<I, R> {
  private readonly steps: SagaStepDefinition<I>[] = [];

  constructor(
    private readonly name: string,
    private readonly options: SagaDefinitionOptions = {},
  ) {
    validateSagaName(name);
    validateDefinitionOptions(name, options);
  }

  /** Adds a step after the previous ones. Its options are checked right away. */
  step<N extends string, T>(name: N, config: SagaStepConfig<I, R, T>): SagaBuilder<I, R & { readonly [K in N]: StepValue<T> }> {
    const problem = sagaProblem(`step "${String(name)}" of saga "${this.name}"`, SAGA_EXAMPLES.builder);
    if (config === null || typeof config !== 'object') {
      problem('options', 'an object { run, compensate?, timeoutMs?, retry? }', config);
    }
    const step = { ...config, name } as unknown as SagaStepDefinition<I>;
    if (this.steps.some((existing) => existing.name === name)) {
      throw new SagaDefinitionError(sagaDuplicateStep(this.name, name, `step "${name}"`, `step #${this.steps.length + 1}`));
    }
    // The full check (run, compensate, policies) runs in the SagaDefinition constructor; doing it
    // here too points at the offending .step() call.
    new SagaDefinition(this.name, [step]);
    this.steps.push(step);
    return this as unknown as SagaBuilder<I, R & { readonly [K in N]: StepValue<T> }>;
  }

  /** The finished, validated definition. The builder can go on and build others. */
  build(): SagaDefinition<I, R> {
    return new SagaDefinition<I, R>(this.name, this.steps, this.options);
  }
}

/**
 * Starts a saga definition named `name` whose input is `I`. See {@link SagaBuilder}.
 *
 * @publicApi
 */
export function defineSaga<I = unknown>(name: string, options: SagaDefinitionOptions = {}): SagaBuilder<I, Record<never, never>> {
  return new SagaBuilder<I, Record<never, never>>(name, options);
}
