import { SAGA_STEP_METADATA } from './saga.constants.js';
import { sagaProblem, validateSagaName, validateStepOptions } from './saga-definition.js';
import { SagaDefinitionError } from './saga.errors.js';
import type { SagaStepOptions } from './saga.interfaces.js';
import { SAGA_EXAMPLES, sagaStepOnNonMethod } from './saga.messages.js';

/**
 * Marks a provider method as step `order` of saga `saga`. At bootstrap, `OtelSagaModule` finds
 * the marked methods of every singleton provider and controller, sorts each saga's steps by
 * `order` and registers the saga; `SagaOrchestrator.run('order', input)` then runs it. The
 * method is called with `(input, ctx: SagaStepContext)` and `this` bound to the provider; its
 * compensation (a method name or a function) with `(input, ctx: SagaCompensationContext)`.
 *
 * ```ts
 * @Injectable()
 * export class InventorySteps {
 *   @SagaStep({ saga: 'order', order: 1, compensate: 'release', timeoutMs: 5000 })
 *   reserve(input: OrderInput) { return this.inventory.send('inventory.reserve', input); }
 *
 *   release(input: OrderInput, ctx: SagaCompensationContext<OrderInput, Reservation>) {
 *     return this.inventory.send('inventory.release', ctx.result);
 *   }
 * }
 * ```
 *
 * The method itself is not wrapped: calling it directly behaves as before, and other decorators
 * (`@Traced`, `@MessagePattern`) keep working. One method may be a step of several sagas.
 * Options are checked here, when the class is defined; wrong ones throw a `SagaDefinitionError`.
 *
 * @publicApi
 */
export function SagaStep(options: SagaStepOptions): MethodDecorator {
  return (target: object, propertyKey: string | symbol, descriptor: PropertyDescriptor) => {
    const className = typeof target === 'function' ? target.name : target.constructor.name;
    const where = `${className}.${String(propertyKey)}`;
    if (typeof target === 'function' || typeof descriptor?.value !== 'function') {
      throw new SagaDefinitionError(sagaStepOnNonMethod(where));
    }
    const problem = sagaProblem(`@SagaStep() on ${where}`, SAGA_EXAMPLES.decorator);
    if (options === null || typeof options !== 'object') {
      problem('options', 'an object { saga, order, compensate? }', options);
    }
    validateSagaName(options.saga);
    if (typeof options.order !== 'number' || !Number.isFinite(options.order)) {
      problem('order', 'a finite number (steps run in ascending order)', options.order);
    }
    if (options.step !== undefined && (typeof options.step !== 'string' || options.step.trim() === '')) {
      problem('step', 'a non-empty string (default: the method name)', options.step);
    }
    const compensate = options.compensate;
    if (compensate !== undefined && !(typeof compensate === 'function' || (typeof compensate === 'string' && compensate !== ''))) {
      problem('compensate', 'the name of a method of the provider, or a function', compensate);
    }
    validateStepOptions(options, problem);

    const method = descriptor.value as object;
    const existing = (Reflect.getOwnMetadata(SAGA_STEP_METADATA, method) as SagaStepOptions[] | undefined) ?? [];
    if (existing.some((other) => other.saga === options.saga)) {
      problem('saga', `a saga ${where} is not already a step of`, options.saga);
    }
    Reflect.defineMetadata(SAGA_STEP_METADATA, [...existing, { ...options }], method);
    return descriptor;
  };
}

/** The `@SagaStep()` options on a method (one per saga), or an empty array. */
export function getSagaStepOptions(method: unknown): readonly SagaStepOptions[] {
  if (typeof method !== 'function') {
    return [];
  }
  return (Reflect.getMetadata(SAGA_STEP_METADATA, method) as SagaStepOptions[] | undefined) ?? [];
}
