import { Inject, Injectable, Optional, type OnModuleInit } from '@nestjs/common';
import { DiscoveryService, MetadataScanner } from '@nestjs/core';
import { getSagaStepOptions } from './saga-step.decorator.js';
import { SagaDefinition } from './saga-definition.js';
import { SagaDefinitionError } from './saga.errors.js';
import type { SagaCompensationContext, SagaStepContext, SagaStepDefinition, SagaStepOptions } from './saga.interfaces.js';
import {
  sagaDefinedTwice,
  sagaDuplicateOrder,
  sagaDuplicateStep,
  sagaMissingCompensation,
  sagaOptionInvalid,
  sagaStepNotStatic,
  sagaUnknown,
} from './saga.messages.js';
import { OTEL_SAGA_MODULE_OPTIONS, type OtelSagaModuleOptions } from './saga.module-definition.js';

/** Nest's InstanceWrapper, named without importing a deep path of @nestjs/core. */
type InstanceWrapper = ReturnType<DiscoveryService['getProviders']>[number];

type AnyFunction = (this: unknown, ...args: unknown[]) => unknown;

/** A `@SagaStep()` method found on a provider instance. */
interface FoundStep {
  options: SagaStepOptions;
  instance: object;
  method: AnyFunction;
  methodName: string;
  /** `Class.method`, for messages. */
  where: string;
  /** Method names of the provider, for the "missing compensation" message. */
  methodNames: () => string[];
}

/**
 * Every saga of the application, by name: those made of `@SagaStep()` methods (found once, at
 * module init, with Nest's DiscoveryService) and those registered as definitions. A wrong
 * definition fails the bootstrap with a {@link SagaDefinitionError}.
 *
 * @publicApi
 */
@Injectable()
export class SagaRegistry implements OnModuleInit {
  private readonly registered = new Map<string, SagaDefinition<any, any>>();
  private discovered: Map<string, SagaDefinition<any, any>> | undefined;

  constructor(
    @Optional() private readonly discovery?: DiscoveryService,
    @Optional() private readonly scanner?: MetadataScanner,
    @Optional() @Inject(OTEL_SAGA_MODULE_OPTIONS) options?: OtelSagaModuleOptions,
  ) {
    for (const saga of options?.sagas ?? []) {
      this.register(saga);
    }
  }

  onModuleInit(): void {
    this.discover();
  }

  /** Adds a definition; its name must not be taken. */
  register(definition: SagaDefinition<any, any>): void {
    if (!(definition instanceof SagaDefinition)) {
      throw new SagaDefinitionError(
        sagaOptionInvalid('SagaRegistry.register()', 'definition', 'a SagaDefinition', definition, "registry.register(defineSaga('order').step(...).build())"),
      );
    }
    if (this.registered.has(definition.name) || this.discovered?.has(definition.name)) {
      throw new SagaDefinitionError(sagaDefinedTwice(definition.name));
    }
    this.registered.set(definition.name, definition);
  }

  /** The saga named `name`, or `undefined`. */
  get(name: string): SagaDefinition<any, any> | undefined {
    this.discover();
    return this.registered.get(name) ?? this.discovered?.get(name);
  }

  /** The saga named `name`; throws a {@link SagaDefinitionError} listing the known ones otherwise. */
  getOrThrow(name: string): SagaDefinition<any, any> {
    const found = this.get(name);
    if (!found) {
      throw new SagaDefinitionError(sagaUnknown(name, this.names()));
    }
    return found;
  }

  /** Names of all sagas, sorted. */
  names(): string[] {
    this.discover();
    return [...new Set([...this.registered.keys(), ...(this.discovered?.keys() ?? [])])].sort();
  }

  // Runs once: at module init, or at the first lookup if that comes first.
  private discover(): void {
    if (this.discovered || !this.discovery || !this.scanner) {
      return;
    }
    const found = buildSagas(collectSteps(this.discovery, this.scanner));
    for (const name of found.keys()) {
      if (this.registered.has(name)) {
        throw new SagaDefinitionError(sagaDefinedTwice(name));
      }
    }
    this.discovered = found;
  }
}

function collectSteps(discovery: DiscoveryService, scanner: MetadataScanner): Map<string, FoundStep[]> {
  const bySaga = new Map<string, FoundStep[]>();
  // The same instance can be reachable through several wrappers (useExisting, re-provided values).
  const seen = new Set<string>();
  const instanceIds = new Map<object, number>();
  const wrappers: InstanceWrapper[] = [...discovery.getProviders(), ...discovery.getControllers()];
  for (const wrapper of wrappers) {
    const instance = wrapper.instance as unknown;
    const prototype: object | null | undefined =
      instance !== null && typeof instance === 'object'
        ? Object.getPrototypeOf(instance)
        : typeof wrapper.metatype === 'function' && !wrapper.inject
          ? (wrapper.metatype.prototype as object)
          : undefined;
    if (!prototype) {
      continue;
    }
    const className = (prototype.constructor as { name?: string } | undefined)?.name ?? String(wrapper.name);
    for (const methodName of scanner.getAllMethodNames(prototype)) {
      const method = (prototype as Record<string, unknown>)[methodName];
      const stepOptions = getSagaStepOptions(method);
      if (stepOptions.length === 0) {
        continue;
      }
      const where = `${className}.${methodName}`;
      if (!isStatic(wrapper) || instance === null || typeof instance !== 'object') {
        throw new SagaDefinitionError(sagaStepNotStatic(stepOptions[0]!.saga, where));
      }
      let instanceId = instanceIds.get(instance);
      if (instanceId === undefined) {
        instanceId = instanceIds.size;
        instanceIds.set(instance, instanceId);
      }
      for (const options of stepOptions) {
        const key = `${instanceId}\u0000${methodName}\u0000${options.saga}`;
        if (seen.has(key)) {
          continue;
        }
        seen.add(key);
        const steps = bySaga.get(options.saga) ?? [];
        steps.push({
          options,
          instance,
          method: method as AnyFunction,
          methodName,
          where,
          methodNames: () => scanner.getAllMethodNames(prototype),
        });
        bySaga.set(options.saga, steps);
      }
    }
  }
  return bySaga;
}

function isStatic(wrapper: InstanceWrapper): boolean {
  try {
    return wrapper.isDependencyTreeStatic() && !wrapper.isTransient;
  } catch {
    return false;
  }
}

function buildSagas(bySaga: Map<string, FoundStep[]>): Map<string, SagaDefinition<any, any>> {
  const sagas = new Map<string, SagaDefinition<any, any>>();
  for (const [saga, found] of bySaga) {
    // Sorted by order, then by place of discovery, so the error for a shared order is stable.
    const sorted = [...found].sort((a, b) => a.options.order - b.options.order);
    const names = new Map<string, string>();
    sorted.forEach((step, index) => {
      const previous = sorted[index - 1];
      if (previous && previous.options.order === step.options.order) {
        throw new SagaDefinitionError(sagaDuplicateOrder(saga, step.options.order, previous.where, step.where));
      }
      const name = step.options.step ?? step.methodName;
      const first = names.get(name);
      if (first !== undefined) {
        throw new SagaDefinitionError(sagaDuplicateStep(saga, name, first, step.where));
      }
      names.set(name, step.where);
    });
    sagas.set(saga, new SagaDefinition(saga, sorted.map((step) => toDefinition(saga, step))));
  }
  return sagas;
}

function toDefinition(saga: string, found: FoundStep): SagaStepDefinition {
  const { options, instance, method } = found;
  const name = options.step ?? found.methodName;
  let compensate: AnyFunction | undefined;
  if (typeof options.compensate === 'string') {
    const candidate = (instance as Record<string, unknown>)[options.compensate];
    if (typeof candidate !== 'function') {
      throw new SagaDefinitionError(
        sagaMissingCompensation(saga, name, found.where, options.compensate, found.methodNames()),
      );
    }
    compensate = candidate as AnyFunction;
  } else if (typeof options.compensate === 'function') {
    compensate = options.compensate as AnyFunction;
  }
  return {
    name,
    run: (input: unknown, ctx: SagaStepContext) => method.call(instance, input, ctx),
    compensate: compensate
      ? (input: unknown, ctx: SagaCompensationContext) => compensate.call(instance, input, ctx)
      : undefined,
    timeoutMs: options.timeoutMs,
    retry: options.retry,
    compensation: options.compensation,
    compensateOnFailure: options.compensateOnFailure,
  } as SagaStepDefinition;
}
