import { SpanKind, type Attributes, type Link, type Span } from '@opentelemetry/api';
import { ATTR_CODE_FUNCTION_NAME } from '../semconv.js';
import { OTEL_CONSUME_EXTRA } from '../transports/shared/messaging-tracing.js';
import { processGlobal } from '../utils/process-global.js';
import { runInSpan } from '../utils/run-in-context.js';
import { getOtelNestTracer } from '../utils/tracer.js';
import { diagLimited } from '../utils/diag-limited.js';
import { tracedNotAMethod, tracedOptionThrew, tracedSpanStartFailed } from '../otel.messages.js';

/** `PATTERN_EXTRAS_METADATA` of @nestjs/microservices (a string, so this file does not load the package). */
const PATTERN_EXTRAS_METADATA = 'microservices:pattern_extras';

// `consume` takes the transports' ConsumePolicy (exported from the root), named here as before.
import type { ConsumePolicy as TracedConsume } from '../transports/shared/messaging-tracing.js';

/** Options of {@link Traced}. */
export interface TracedOptions {
  /** Span kind. Default `SpanKind.INTERNAL`. */
  kind?: SpanKind;
  /**
   * Extra span attributes, or a function of the method's arguments that returns them. A function
   * that throws is logged through `diag` and the span starts without them. Default: none.
   */
  attributes?: Attributes | ((...args: any[]) => Attributes);
  /** Start a new trace instead of a child of the active span (baggage is kept). Default `false`. */
  root?: boolean;
  /**
   * Span links, or a function of the method's arguments that returns them (e.g. the context of the
   * message being handled). A function that throws is logged and ignored. Default: none.
   */
  links?: Link[] | ((...args: any[]) => Link[]);
  /**
   * Whether a thrown or rejected value fails the span (status ERROR, `error.type`). The value is
   * rethrown unchanged either way. Default: everything except a Nest `HttpException` with status
   * below 500, which is an expected client outcome and leaves the status unset.
   */
  isError?: (error: unknown) => boolean;
  /**
   * For microservice handlers: whether the producer's context becomes the parent of the handler's
   * span (`'parent'`), a link of a new trace (`'link'`), or both (`'parent+link'`). Default: parent
   * for `@MessagePattern` (request-reply), link for `@EventPattern`.
   */
  consume?: TracedConsume;
  /** On a class: names of methods left untraced. Ignored on a method. Default: none. */
  exclude?: string[];
}

type AnyMethod = (this: unknown, ...args: unknown[]) => unknown;

// Wrappers made here. A method already wrapped keeps its first (innermost) @Traced: applying it
// twice, or on the method and on its class, never nests two spans for one call.
const wrappers = processGlobal('traced-wrappers', () => new WeakSet<AnyMethod>());

/**
 * Traces a method, or every own method of a class, with a span named `Class.method` (or the given
 * name) that is active while the method runs. Sync, Promise and Observable results are supported:
 * the span ends when the value is returned, the Promise settles, or the Observable finalizes (an
 * Observable that is never subscribed never runs, and its span is never ended).
 * Errors are recorded on the span and rethrown unchanged.
 *
 * On a class, `name` replaces the class part of each span name, getters and setters are skipped,
 * and a method with its own `@Traced` keeps its own options. `this`, the function's name and
 * length and all reflect-metadata (`@Get`, `@MessagePattern`, `@UseGuards`, `SetMetadata`,
 * Swagger) are kept, whether those decorators are written above or below `@Traced`.
 *
 * @publicApi
 */
export function Traced(options?: TracedOptions): ClassDecorator & MethodDecorator;
export function Traced(name: string, options?: TracedOptions): ClassDecorator & MethodDecorator;
export function Traced(
  nameOrOptions?: string | TracedOptions,
  maybeOptions?: TracedOptions,
): ClassDecorator & MethodDecorator {
  const name = typeof nameOrOptions === 'string' ? nameOrOptions : undefined;
  const options = (typeof nameOrOptions === 'string' ? maybeOptions : nameOrOptions) ?? {};

  const decorator = (target: object, propertyKey?: string | symbol, descriptor?: PropertyDescriptor) => {
    if (propertyKey === undefined || descriptor === undefined) {
      traceClass(target as abstract new (...args: never[]) => unknown, name, options);
      return;
    }
    // A static method's target is the class itself, an instance method's is the prototype.
    const className = typeof target === 'function' ? target.name : target.constructor.name;
    const qualifiedName = `${className}.${String(propertyKey)}`;
    if (typeof descriptor.value !== 'function') {
      throw new TypeError(tracedNotAMethod(qualifiedName));
    }
    descriptor.value = wrapMethod(descriptor.value as AnyMethod, name ?? qualifiedName, qualifiedName, options);
    return descriptor;
  };
  return decorator as ClassDecorator & MethodDecorator;
}

function traceClass(
  target: abstract new (...args: never[]) => unknown,
  className: string | undefined,
  options: TracedOptions,
): void {
  const prototype = target.prototype as object;
  const exclude = new Set(options.exclude ?? []);
  for (const key of Object.getOwnPropertyNames(prototype)) {
    const descriptor = Object.getOwnPropertyDescriptor(prototype, key);
    if (
      key === 'constructor' ||
      exclude.has(key) ||
      !descriptor ||
      descriptor.get ||
      descriptor.set ||
      typeof descriptor.value !== 'function' ||
      wrappers.has(descriptor.value as AnyMethod)
    ) {
      continue;
    }
    const qualifiedName = `${target.name}.${key}`;
    const spanName = `${className ?? target.name}.${key}`;
    Object.defineProperty(prototype, key, {
      ...descriptor,
      value: wrapMethod(descriptor.value as AnyMethod, spanName, qualifiedName, options),
    });
  }
}

function wrapMethod(
  original: AnyMethod,
  spanName: string,
  qualifiedName: string,
  options: TracedOptions,
): AnyMethod {
  if (wrappers.has(original)) {
    return original;
  }
  const runOptions = { isError: options.isError };
  const wrapper = function (this: unknown, ...args: unknown[]): unknown {
    const span = startSpan(spanName, qualifiedName, options, args);
    if (!span) {
      return original.apply(this, args);
    }
    return runInSpan(span, () => original.apply(this, args), runOptions);
  };
  wrappers.add(wrapper);

  // Frameworks read the handler's name and arity (e.g. for logs and argument resolution).
  Object.defineProperty(wrapper, 'name', { value: original.name, configurable: true });
  Object.defineProperty(wrapper, 'length', { value: original.length, configurable: true });
  // Decorators written below @Traced stored their metadata on the original; those above it will
  // store theirs on the wrapper, next to these copies.
  for (const key of Reflect.getOwnMetadataKeys(original)) {
    Reflect.defineMetadata(key, Reflect.getOwnMetadata(key, original), wrapper);
  }
  if (options.consume) {
    // Nest hands a handler's pattern extras to the transport server, where the traced servers read
    // the policy. @MessagePattern/@EventPattern merge their extras into these, in either order.
    Reflect.defineMetadata(
      PATTERN_EXTRAS_METADATA,
      { ...Reflect.getMetadata(PATTERN_EXTRAS_METADATA, wrapper), [OTEL_CONSUME_EXTRA]: options.consume },
      wrapper,
    );
  }
  return wrapper;
}

// Returns undefined when our own code fails, so the method still runs, untraced.
function startSpan(
  spanName: string,
  qualifiedName: string,
  options: TracedOptions,
  args: unknown[],
): Span | undefined {
  try {
    const attributes: Attributes = {
      ...evaluate('attributes', options.attributes, args, qualifiedName),
      [ATTR_CODE_FUNCTION_NAME]: qualifiedName,
    };
    return getOtelNestTracer().startSpan(spanName, {
      kind: options.kind ?? SpanKind.INTERNAL,
      attributes,
      links: evaluate('links', options.links, args, qualifiedName),
      root: options.root ?? false,
    });
  } catch (error) {
    diagLimited('warn', tracedSpanStartFailed(qualifiedName), error);
    return undefined;
  }
}

function evaluate<V extends object>(
  what: string,
  option: V | ((...args: any[]) => V) | undefined,
  args: unknown[],
  qualifiedName: string,
): V | undefined {
  if (typeof option !== 'function') {
    return option;
  }
  try {
    return option(...args);
  } catch (error) {
    diagLimited('warn', tracedOptionThrew(what, qualifiedName), error);
    return undefined;
  }
}
