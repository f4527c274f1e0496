import { CONTROLLER_WATERMARK } from '@nestjs/common/constants.js';
import { context } from '@opentelemetry/api';
import { finalize, tap, type Observable } from 'rxjs';
import { enhancerNotWrapped, enhancerSpanFailed } from '../otel.messages.js';
import {
  ATTR_NESTJS_FILTER_EXCEPTION_TYPE,
  ATTR_NESTJS_GUARD_RESULT,
  ATTR_NESTJS_PIPE_ARGUMENT_NAME,
  ATTR_NESTJS_PIPE_ARGUMENT_TYPE,
} from '../semconv.js';
import { diagLimited } from '../utils/diag-limited.js';
import { processGlobal } from '../utils/process-global.js';
import { errorTypeOf } from '../utils/record-error.js';
import { startEnhancerCall, type EnhancerCall, type HandlerDescription } from './enhancer-call.js';
import {
  currentConfig,
  ENHANCER_METHODS,
  isEnhancerRegistration,
  OTEL_INTERNAL_ENHANCER,
  type EnhancerConfigSource,
  type EnhancerType,
} from './enhancer-spans.config.js';

/** Every proxy made here (all copies of the package), so that nothing is wrapped twice. */
const proxies = processGlobal('enhancer-spans.proxies', () => new WeakSet<object>());

const TYPES = Object.keys(ENHANCER_METHODS) as EnhancerType[];
const PIPE_ARGUMENT_TYPES = new Set(['body', 'query', 'param', 'custom']);

type AnyFunction = (this: unknown, ...args: unknown[]) => unknown;

/** Which enhancer methods `instance` has; none for what must never be wrapped. */
function enhancerTypesOf(instance: object): EnhancerType[] {
  // Promises and thenables have `catch`; controllers may name a route `transform`.
  if (typeof (instance as { then?: unknown }).then === 'function') {
    return [];
  }
  const type = (instance as { constructor?: unknown }).constructor;
  if (typeof type === 'function') {
    if ((type as unknown as Record<symbol, unknown>)[OTEL_INTERNAL_ENHANCER] === true) {
      return [];
    }
    if (typeof Reflect.getMetadata === 'function' && Reflect.getMetadata(CONTROLLER_WATERMARK, type) === true) {
      return [];
    }
  }
  const record = instance as Record<string, unknown>;
  return TYPES.filter((t) => typeof record[ENHANCER_METHODS[t]] === 'function');
}

/**
 * `instance` itself, or a Proxy of it whose guard, pipe, interceptor and filter methods
 * (`canActivate`, `transform`, `intercept`, `catch`) record a span per call. Nothing of the
 * instance or its class changes: the Proxy forwards every other property to the instance
 * (getters and setters run on it), `instanceof`, `constructor` and the class's reflect-metadata
 * are the instance's, and its methods run with the instance as `this` (so `#private` members
 * work). Whether a call gets a span is decided per call, from `source` and the active context.
 * Never throws: an instance that cannot be inspected is returned as is.
 */
export function decorateEnhancer<T>(instance: T, source: EnhancerConfigSource | undefined): T {
  try {
    if (instance === null || typeof instance !== 'object' || proxies.has(instance)) {
      return instance;
    }
    if (isEnhancerRegistration(instance)) {
      if (source) {
        source.linked = true;
        source.config = instance.config;
      }
      instance.seen = true;
      return instance;
    }
    const types = enhancerTypesOf(instance);
    if (types.length === 0) {
      return instance;
    }
    const proxy = enhancerProxy(instance, types, source);
    proxies.add(proxy);
    return proxy as T;
  } catch (err) {
    diagLimited('warn', enhancerNotWrapped(), err);
    return instance;
  }
}

function enhancerProxy(target: object, types: readonly EnhancerType[], source: EnhancerConfigSource | undefined): object {
  const methods = new Map<PropertyKey, EnhancerType>(types.map((type) => [ENHANCER_METHODS[type], type]));
  // Per original function, so that each property read returns the same function.
  const traced = new Map<AnyFunction, AnyFunction>();
  const rebound = new Map<AnyFunction, AnyFunction>();
  const name = enhancerName(target);
  let proxy: object;
  const handler: ProxyHandler<object> = {
    get(object, property) {
      const value = Reflect.get(object, property, object) as unknown;
      if (typeof value !== 'function' || property === 'constructor') {
        return value;
      }
      const fn = value as AnyFunction;
      const type = methods.get(property);
      if (type !== undefined) {
        let wrapped = traced.get(fn);
        if (!wrapped) {
          wrapped = tracedMethod(type, fn, object, name, source);
          traced.set(fn, wrapped);
        }
        return wrapped;
      }
      // Own function properties (arrow functions, bound methods) already have their `this`.
      if (Object.prototype.hasOwnProperty.call(object, property)) {
        return value;
      }
      let bound = rebound.get(fn);
      if (!bound) {
        bound = function (this: unknown, ...args: unknown[]) {
          return Reflect.apply(fn, this === proxy ? object : this, args);
        };
        rebound.set(fn, bound);
      }
      return bound;
    },
    set(object, property, value) {
      return Reflect.set(object, property, value, object);
    },
  };
  proxy = new Proxy(target, handler);
  return proxy;
}

function enhancerName(instance: object): string {
  const name = (instance as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof name === 'string' && name && name !== 'Object' ? name : 'anonymous';
}

function tracedMethod(
  type: EnhancerType,
  original: AnyFunction,
  target: object,
  name: string,
  source: EnhancerConfigSource | undefined,
): AnyFunction {
  const call = (args: unknown[]): unknown => Reflect.apply(original, target, args);
  switch (type) {
    case 'guard':
      return function canActivate(...args: unknown[]) {
        const config = currentConfig(source);
        const executionContext = args[0];
        if (!config?.guard || !isExecutionContext(executionContext)) {
          return call(args);
        }
        const span = startEnhancerCall(config, 'guard', name, executionContext, undefined);
        return span ? traceGuard(span, () => call(args)) : call(args);
      };
    case 'interceptor':
      return function intercept(...args: unknown[]) {
        const config = currentConfig(source);
        const [executionContext, next] = args;
        if (!config?.interceptor || !isExecutionContext(executionContext) || !isCallHandler(next)) {
          return call(args);
        }
        const span = startEnhancerCall(config, 'interceptor', name, executionContext, undefined);
        return span ? traceInterceptor(span, next, (handler) => call([executionContext, handler, ...args.slice(2)])) : call(args);
      };
    case 'pipe':
      return function transform(...args: unknown[]) {
        const config = currentConfig(source);
        const metadata = args[1];
        if (!config?.pipe || !isArgumentMetadata(metadata)) {
          return call(args);
        }
        const span = startEnhancerCall(config, 'pipe', name, undefined, pipeAttributes(metadata));
        return span ? traceSettling(span, () => call(args)) : call(args);
      };
    case 'filter':
      return function catchException(...args: unknown[]) {
        const config = currentConfig(source);
        const [exception, host] = args;
        if (!config?.filter || !isArgumentsHost(host)) {
          return call(args);
        }
        const span = startEnhancerCall(config, 'filter', name, host, {
          [ATTR_NESTJS_FILTER_EXCEPTION_TYPE]: errorTypeOf(exception),
        });
        return span ? traceSettling(span, () => call(args)) : call(args);
      };
  }
}

function isExecutionContext(value: unknown): value is HandlerDescription {
  const candidate = value as Record<string, unknown> | null | undefined;
  return typeof candidate?.getHandler === 'function' && typeof candidate.getClass === 'function' && typeof candidate.getType === 'function';
}

function isCallHandler(value: unknown): value is { handle(): Observable<unknown> } {
  return typeof (value as { handle?: unknown } | null | undefined)?.handle === 'function';
}

function isArgumentMetadata(value: unknown): value is { type: string; data?: unknown } {
  return PIPE_ARGUMENT_TYPES.has((value as { type?: unknown } | null | undefined)?.type as string);
}

function isArgumentsHost(value: unknown): value is HandlerDescription {
  const candidate = value as Record<string, unknown> | null | undefined;
  return typeof candidate?.switchToHttp === 'function' && typeof candidate.getType === 'function';
}

function pipeAttributes(metadata: { type: string; data?: unknown }): Record<string, string> {
  const attributes: Record<string, string> = { [ATTR_NESTJS_PIPE_ARGUMENT_TYPE]: metadata.type };
  if (typeof metadata.data === 'string' && metadata.data) {
    attributes[ATTR_NESTJS_PIPE_ARGUMENT_NAME] = metadata.data;
  }
  return attributes;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as { then?: unknown } | null | undefined)?.then === 'function';
}

function isObservable(value: unknown): value is Observable<unknown> {
  const candidate = value as Record<string, unknown> | null | undefined;
  return typeof candidate?.subscribe === 'function' && typeof candidate.pipe === 'function';
}

/** Runs `invoke` under the call's span; a synchronous throw fails the span and is rethrown as is. */
function runIn<T>(span: EnhancerCall, invoke: () => T): T {
  try {
    return context.with(span.context, invoke);
  } catch (err) {
    span.fail(err);
    throw err;
  }
}

/** A guard: its answer, sync, Promise or Observable (Nest takes the last value), as `nestjs.guard.result`. */
function traceGuard(span: EnhancerCall, invoke: () => unknown): unknown {
  const result = runIn(span, invoke);
  const answer = (value: unknown): void => {
    if (typeof value === 'boolean') {
      span.setAttribute(ATTR_NESTJS_GUARD_RESULT, value);
    }
  };
  try {
    if (typeof result === 'boolean') {
      answer(result);
      span.finish();
      return result;
    }
    if (isObservable(result)) {
      let last: unknown;
      // `pipe` keeps the guard's own Observable class: Nest tests `instanceof Observable` on it.
      return result.pipe(
        tap({
          next: (value) => {
            last = value;
          },
          error: (err: unknown) => span.fail(err),
          complete: () => answer(last),
        }),
        finalize(() => span.finish()),
      );
    }
    if (isThenable(result)) {
      return result.then(
        (value) => {
          answer(value);
          span.finish();
          return value;
        },
        (err: unknown) => {
          span.fail(err);
          throw err;
        },
      );
    }
  } catch (err) {
    diagLimited('error', enhancerSpanFailed(), err);
  }
  span.finish();
  return result;
}

/**
 * A pipe or filter: until the Promise it returns settles (Nest awaits a pipe's). Any other result
 * ends the span at return: an Observable from a pipe is the argument's value (Nest passes it to the
 * handler as is), one from a filter is an RPC error reply the transport consumes.
 */
function traceSettling(span: EnhancerCall, invoke: () => unknown): unknown {
  const result = runIn(span, invoke);
  try {
    if (isThenable(result)) {
      return result.then(
        (value) => {
          span.finish();
          return value;
        },
        (err: unknown) => {
          span.fail(err);
          throw err;
        },
      );
    }
  } catch (err) {
    diagLimited('error', enhancerSpanFailed(), err);
  }
  span.finish();
  return result;
}

/**
 * An interceptor: from the call of `intercept` until the Observable it returns settles, so the
 * span covers the interceptor and everything it wraps. The interceptor's own code runs under its
 * span; what `next.handle()` runs (later interceptors, pipes, the handler) runs in the context the
 * interceptor was called in, so the handler's spans stay children of the request span whether
 * interceptor spans are on or not. An error that only passes through from `next.handle()` is the
 * handler's (its own span or the request's records it), not the interceptor's.
 */
function traceInterceptor(
  span: EnhancerCall,
  next: { handle(): Observable<unknown> },
  invoke: (handler: { handle(): Observable<unknown> }) => unknown,
): unknown {
  const outer = context.active();
  const passedThrough = new WeakSet<object>();
  let passedThroughValue: unknown;
  const handler = {
    handle: (): Observable<unknown> =>
      context.with(outer, () => next.handle()).pipe(
        tap({
          error: (err: unknown) => {
            if (err !== null && typeof err === 'object') {
              passedThrough.add(err);
            } else {
              passedThroughValue = err;
            }
          },
        }),
      ),
  };
  const isPassedThrough = (err: unknown): boolean =>
    err !== null && typeof err === 'object' ? passedThrough.has(err) : err === passedThroughValue && err !== undefined;
  const result = runIn(span, () => invoke(handler));
  try {
    if (isObservable(result)) {
      return settleObservable(span, result, isPassedThrough);
    }
    if (isThenable(result)) {
      return result.then(
        (inner) => {
          if (isObservable(inner)) {
            return settleObservable(span, inner, isPassedThrough);
          }
          span.finish();
          return inner;
        },
        (err: unknown) => {
          span.fail(err);
          throw err;
        },
      );
    }
  } catch (err) {
    diagLimited('error', enhancerSpanFailed(), err);
  }
  span.finish();
  return result;
}

function settleObservable(
  span: EnhancerCall,
  observable: Observable<unknown>,
  isPassedThrough: ((err: unknown) => boolean) | undefined,
): Observable<unknown> {
  return observable.pipe(
    tap({
      error: (err: unknown) => {
        if (isPassedThrough?.(err)) {
          span.finish();
        } else {
          span.fail(err);
        }
      },
    }),
    // Completion and unsubscription (a client that went away) end it too.
    finalize(() => span.finish()),
  );
}
