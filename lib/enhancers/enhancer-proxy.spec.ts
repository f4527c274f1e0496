import 'reflect-metadata';
import {
  Controller,
  Injectable,
  SetMetadata,
  type ArgumentMetadata,
  type ArgumentsHost,
  type CallHandler,
  type ExecutionContext,
} from '@nestjs/common';
import { context, SpanKind, SpanStatusCode, trace, type Context } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { lastValueFrom, Observable, of, Subject, throwError } from 'rxjs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { OtelTracingInterceptor } from '../interceptors/otel-tracing.interceptor.js';
import { startTestingSdk, type TestingSdk } from '../testing/testing-sdk.js';
import { withConsumerState, type ConsumerState } from '../transports/shared/messaging-tracing.js';
import { getOtelNestTracer } from '../utils/tracer.js';
import { decorateEnhancer } from './enhancer-proxy.js';
import {
  addRegistration,
  ENHANCER_REGISTRATION,
  removeRegistration,
  resolveEnhancerSpans,
  type EnhancerConfigSource,
  type EnhancerSpansRegistrationLike,
  type ResolvedEnhancerSpans,
} from './enhancer-spans.config.js';
import { withEnhancerSpans } from './otel-instrument.js';

const ON = resolveEnhancerSpans({ collapseAbove: false })!;
const linked = (config: ResolvedEnhancerSpans | undefined = ON): EnhancerConfigSource => ({ linked: true, config });

const ROLES = 'roles';

@Injectable()
@SetMetadata(ROLES, ['admin'])
class RolesGuard {
  #checks = 0;
  initialized = false;
  get checks(): number {
    return this.#checks;
  }
  onModuleInit(): void {
    // A lifecycle hook Nest calls on the (decorated) instance: `#private` must still work.
    this.#checks = 0;
    this.initialized = true;
  }
  canActivate(executionContext: ExecutionContext): boolean {
    this.#checks++;
    return executionContext.getHandler().name !== 'forbidden';
  }
}

function fakeExecutionContext(handler: () => void = function findOne() {}): ExecutionContext {
  class OrdersController {}
  return {
    getType: () => 'rpc',
    getClass: () => OrdersController,
    getHandler: () => handler,
    switchToHttp: () => ({}),
  } as unknown as ExecutionContext;
}

describe('decorateEnhancer', () => {
  let sdk: TestingSdk;
  beforeAll(() => {
    sdk = startTestingSdk();
  });
  afterEach(() => sdk.reset());
  afterAll(() => sdk.shutdown());

  /** A recording CONSUMER span in the context, as the traced transports set it. */
  function inMessage<T>(fn: (ctx: Context, state: ConsumerState) => T): T {
    const span = getOtelNestTracer().startSpan('process orders', { kind: SpanKind.CONSUMER });
    const state: ConsumerState = { span, isEvent: false, ended: false };
    const ctx = withConsumerState(trace.setSpan(context.active(), span), state);
    return context.with(ctx, () => fn(ctx, state));
  }

  const enhancerSpans = (): ReadableSpan[] => sdk.getFinishedSpans().filter((span) => span.attributes['nestjs.type'] !== undefined);

  describe('what is wrapped, and what the wrapper keeps', () => {
    it('returns non-enhancers, promises, functions, controllers and otel-nest enhancers unchanged', () => {
      class OrdersService {
        find(): void {}
      }
      @Controller()
      class TransformController {
        transform(): void {}
      }
      const service = new OrdersService();
      const promise = Promise.resolve(1);
      const fn = () => 1;
      const controller = new TransformController();
      const internal = new OtelTracingInterceptor();
      for (const instance of [service, promise, fn, controller, internal, null, undefined, 42]) {
        expect(decorateEnhancer(instance, linked())).toBe(instance);
      }
    });

    it('keeps instanceof, constructor, class metadata, getters, setters, #private members and lifecycle hooks', () => {
      const guard = new RolesGuard();
      const wrapped = decorateEnhancer(guard, linked());
      expect(wrapped).not.toBe(guard);
      expect(wrapped).toBeInstanceOf(RolesGuard);
      expect(wrapped.constructor).toBe(RolesGuard);
      expect(Reflect.getMetadata(ROLES, wrapped.constructor)).toEqual(['admin']);
      expect(Reflect.getMetadata(ROLES, Object.getPrototypeOf(wrapped).constructor)).toEqual(['admin']);
      wrapped.onModuleInit();
      expect(wrapped.initialized).toBe(true);
      expect(guard.initialized).toBe(true);
      expect(wrapped.canActivate(fakeExecutionContext())).toBe(true);
      expect(wrapped.checks).toBe(1);
      wrapped.initialized = false;
      expect(guard.initialized).toBe(false);
      // The same function on every read, and the class itself is untouched.
      expect(wrapped.canActivate).toBe(wrapped.canActivate);
      expect(wrapped.onModuleInit).toBe(wrapped.onModuleInit);
      expect(Object.getOwnPropertyNames(RolesGuard.prototype).sort()).toEqual(['canActivate', 'checks', 'constructor', 'onModuleInit']);
      expect(RolesGuard.prototype.canActivate.name).toBe('canActivate');
    });

    it('never wraps twice', () => {
      const wrapped = decorateEnhancer(new RolesGuard(), linked());
      expect(decorateEnhancer(wrapped, linked())).toBe(wrapped);
    });

    it('links a decorator to the configuration of the registration it sees', () => {
      const source: EnhancerConfigSource = { linked: false, config: undefined };
      const registration = { [ENHANCER_REGISTRATION]: true, config: ON, seen: false };
      expect(decorateEnhancer(registration, source)).toBe(registration);
      expect(registration.seen).toBe(true);
      expect(source).toEqual({ linked: true, config: ON });
    });
  });

  describe('when a call gets a span', () => {
    it('none outside a request or message, none when off or when its kind is off, none under an unsampled span', () => {
      const guard = decorateEnhancer(new RolesGuard(), linked());
      expect(guard.canActivate(fakeExecutionContext())).toBe(true);
      inMessage(() => {
        expect(decorateEnhancer(new RolesGuard(), { linked: true, config: undefined }).canActivate(fakeExecutionContext())).toBe(true);
        expect(
          decorateEnhancer(new RolesGuard(), linked(resolveEnhancerSpans({ guards: false }))).canActivate(fakeExecutionContext()),
        ).toBe(true);
      });
      const unsampled = trace.wrapSpanContext({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 0 });
      const state: ConsumerState = { span: unsampled, isEvent: false, ended: false };
      context.with(withConsumerState(context.active(), state), () => guard.canActivate(fakeExecutionContext()));
      expect(enhancerSpans()).toEqual([]);
      expect(sdk.getFinishedSpans()).toHaveLength(0);
    });

    it('one span per call, child of the message span even when another span is active', () => {
      const guard = decorateEnhancer(new RolesGuard(), linked());
      const consumer = inMessage((ctx, state) => {
        const other = getOtelNestTracer().startSpan('other', {}, ctx);
        context.with(trace.setSpan(ctx, other), () => guard.canActivate(fakeExecutionContext()));
        other.end();
        guard.canActivate(fakeExecutionContext(function forbidden() {}));
        state.span.end();
        return state.span;
      });
      const spans = enhancerSpans();
      expect(spans.map((span) => [span.name, span.attributes['nestjs.handler'], span.attributes['nestjs.guard.result']])).toEqual([
        ['guard RolesGuard', 'findOne', true],
        ['guard RolesGuard', 'forbidden', false],
      ]);
      for (const span of spans) {
        expect(span.kind).toBe(SpanKind.INTERNAL);
        expect(span.parentSpanContext?.spanId).toBe(consumer.spanContext().spanId);
        expect(span.attributes).toMatchObject({ 'nestjs.type': 'guard', 'nestjs.enhancer.name': 'RolesGuard', 'nestjs.controller': 'OrdersController' });
        expect(span.status.code).toBe(SpanStatusCode.UNSET);
      }
    });

    it('a call whose arguments are not those Nest passes gets no span (a service method named transform)', () => {
      class Mapper {
        transform(value: number): number {
          return value * 2;
        }
      }
      const mapper = decorateEnhancer(new Mapper(), linked());
      inMessage(() => expect(mapper.transform(2)).toBe(4));
      expect(enhancerSpans()).toEqual([]);
    });

    it('withEnhancerSpans() follows the last registration alive', () => {
      const guard = withEnhancerSpans(new RolesGuard());
      const registration: EnhancerSpansRegistrationLike = { config: ON, seen: false };
      inMessage(() => guard.canActivate(fakeExecutionContext()));
      expect(enhancerSpans()).toHaveLength(0);
      addRegistration(registration);
      try {
        inMessage(() => guard.canActivate(fakeExecutionContext()));
      } finally {
        removeRegistration(registration);
      }
      expect(enhancerSpans().map((span) => span.name)).toEqual(['guard RolesGuard']);
    });
  });

  describe('guards', () => {
    class AsyncGuard {
      constructor(private readonly answer: () => Promise<boolean> | Observable<boolean>) {}
      canActivate(_context: ExecutionContext): Promise<boolean> | Observable<boolean> {
        return this.answer();
      }
    }

    it("the guard's own work runs under its span", () => {
      class LookupGuard {
        canActivate(_context: ExecutionContext): boolean {
          getOtelNestTracer().startSpan('lookup session').end();
          return true;
        }
      }
      const guard = decorateEnhancer(new LookupGuard(), linked());
      inMessage(() => guard.canActivate(fakeExecutionContext()));
      const lookup = sdk.getFinishedSpans().find((span) => span.name === 'lookup session')!;
      const [span] = enhancerSpans();
      expect(lookup.parentSpanContext?.spanId).toBe(span!.spanContext().spanId);
    });

    it('records a thrown error as the guard span error, rethrown unchanged', () => {
      const error = new Error('token expired');
      class ThrowingGuard {
        canActivate(_context: ExecutionContext): boolean {
          throw error;
        }
      }
      const guard = decorateEnhancer(new ThrowingGuard(), linked());
      inMessage(() => expect(() => guard.canActivate(fakeExecutionContext())).toThrow(error));
      const [span] = enhancerSpans();
      expect(span!.status.code).toBe(SpanStatusCode.ERROR);
      expect(span!.attributes['error.type']).toBe('Error');
      expect(span!.attributes['nestjs.guard.result']).toBeUndefined();
      expect(span!.events.map((event) => event.name)).toEqual(['exception']);
    });

    it('a Promise: the span ends when it settles, with the answer or the rejection', async () => {
      const deny = decorateEnhancer(new AsyncGuard(async () => false), linked());
      const reject = decorateEnhancer(new AsyncGuard(() => Promise.reject(new TypeError('no'))), linked());
      await inMessage(async () => {
        await expect(deny.canActivate(fakeExecutionContext())).resolves.toBe(false);
        await expect(reject.canActivate(fakeExecutionContext())).rejects.toThrow(TypeError);
      });
      const [denied, rejected] = enhancerSpans();
      expect(denied!.attributes['nestjs.guard.result']).toBe(false);
      expect(denied!.status.code).toBe(SpanStatusCode.UNSET);
      expect(rejected!.status.code).toBe(SpanStatusCode.ERROR);
      expect(rejected!.attributes['error.type']).toBe('TypeError');
    });

    it('an Observable: still an Observable of the same class (Nest tests instanceof), the last value is the answer', async () => {
      const answers = new Subject<boolean>();
      const guard = decorateEnhancer(new AsyncGuard(() => answers), linked());
      const result = inMessage(() => guard.canActivate(fakeExecutionContext()) as Observable<boolean>);
      expect(result).toBeInstanceOf(Observable);
      const last = lastValueFrom(result);
      answers.next(false);
      expect(enhancerSpans()).toEqual([]);
      answers.next(true);
      answers.complete();
      await expect(last).resolves.toBe(true);
      expect(enhancerSpans().map((span) => span.attributes['nestjs.guard.result'])).toEqual([true]);
    });
  });

  describe('pipes', () => {
    class TrimPipe {
      transform(value: string, _metadata: ArgumentMetadata): string {
        return value.trim();
      }
    }
    class LookupPipe {
      async transform(value: string, _metadata: ArgumentMetadata): Promise<{ id: string }> {
        await new Promise((resolve) => setImmediate(resolve));
        if (value === 'missing') {
          throw new RangeError('not found');
        }
        return { id: value };
      }
    }

    it('one span per transformed argument, with its type and name', async () => {
      const trim = decorateEnhancer(new TrimPipe(), linked());
      const lookup = decorateEnhancer(new LookupPipe(), linked());
      await inMessage(async () => {
        expect(trim.transform(' a ', { type: 'param', data: 'id' } as never)).toBe('a');
        expect(trim.transform(' b ', { type: 'body' } as never)).toBe('b');
        await expect(lookup.transform('7', { type: 'query', data: 'order' } as never)).resolves.toEqual({ id: '7' });
        await expect(lookup.transform('missing', { type: 'query', data: 'order' } as never)).rejects.toThrow(RangeError);
      });
      expect(enhancerSpans().map((span) => [span.name, span.attributes['nestjs.pipe.argument.type'], span.attributes['nestjs.pipe.argument.name'], span.status.code])).toEqual([
        ['pipe TrimPipe', 'param', 'id', SpanStatusCode.UNSET],
        ['pipe TrimPipe', 'body', undefined, SpanStatusCode.UNSET],
        ['pipe LookupPipe', 'query', 'order', SpanStatusCode.UNSET],
        ['pipe LookupPipe', 'query', 'order', SpanStatusCode.ERROR],
      ]);
    });
    it('a pipe that returns an Observable passes that very Observable on (a value, not awaited) and its span ends at return', () => {
      const stream = of(1, 2);
      class StreamPipe {
        transform(_value: unknown, _metadata: ArgumentMetadata): Observable<number> {
          return stream;
        }
      }
      const pipe = decorateEnhancer(new StreamPipe(), linked());
      inMessage(() => expect(pipe.transform('x', { type: 'body' } as never)).toBe(stream));
      expect(enhancerSpans().map((span) => span.name)).toEqual(['pipe StreamPipe']);
    });
  });

  describe('interceptors', () => {
    class CacheInterceptor {
      active?: string;
      intercept(_context: ExecutionContext, next: CallHandler): Observable<unknown> {
        this.active = trace.getActiveSpan() && (trace.getActiveSpan() as unknown as { name: string }).name;
        return next.handle();
      }
    }

    it('the span lasts until the returned Observable settles; what next.handle() runs stays in the caller context', async () => {
      const interceptor = decorateEnhancer(new CacheInterceptor(), linked());
      const values = new Subject<number>();
      let downstreamParent: string | undefined;
      const result = inMessage(() =>
        interceptor.intercept(fakeExecutionContext(), {
          handle: () => {
            downstreamParent = trace.getSpan(context.active())?.spanContext().spanId;
            return values;
          },
        }),
      );
      // The interceptor's own code runs under its span.
      expect(interceptor.active).toBe('interceptor CacheInterceptor');
      const done = lastValueFrom(result);
      values.next(1);
      expect(enhancerSpans()).toEqual([]);
      values.complete();
      await expect(done).resolves.toBe(1);
      const [span] = enhancerSpans();
      expect(span!.name).toBe('interceptor CacheInterceptor');
      expect(downstreamParent).toBe(span!.parentSpanContext?.spanId);
    });

    it('an error from downstream passes through unrecorded; an error of its own is recorded', async () => {
      class FailingInterceptor {
        intercept(_context: ExecutionContext, next: CallHandler): Observable<unknown> {
          return next.handle();
        }
      }
      class MappingInterceptor {
        intercept(): Observable<unknown> {
          return throwError(() => new SyntaxError('mapped'));
        }
      }
      const handlerError = new Error('handler failed');
      const passing = decorateEnhancer(new FailingInterceptor(), linked());
      const own = decorateEnhancer(new MappingInterceptor(), linked());
      await inMessage(async () => {
        await expect(lastValueFrom(passing.intercept(fakeExecutionContext(), { handle: () => throwError(() => handlerError) }))).rejects.toBe(handlerError);
        await expect(
          lastValueFrom((own.intercept as (c: ExecutionContext, n: CallHandler) => Observable<unknown>)(fakeExecutionContext(), { handle: () => of(1) })),
        ).rejects.toThrow(SyntaxError);
      });
      const [passed, failed] = enhancerSpans();
      expect(passed!.status.code).toBe(SpanStatusCode.UNSET);
      expect(failed!.status.code).toBe(SpanStatusCode.ERROR);
      expect(failed!.attributes['error.type']).toBe('SyntaxError');
    });

    it('ends the span when the subscriber goes away before completion', () => {
      const interceptor = decorateEnhancer(new CacheInterceptor(), linked());
      const values = new Subject<number>();
      const result = inMessage(() => interceptor.intercept(fakeExecutionContext(), { handle: () => values }));
      const subscription = result.subscribe();
      expect(enhancerSpans()).toHaveLength(0);
      subscription.unsubscribe();
      expect(enhancerSpans()).toHaveLength(1);
    });
  });

  describe('filters', () => {
    class PaymentFilter {
      catch(exception: unknown, _host: ArgumentsHost): Observable<never> {
        return throwError(() => exception);
      }
    }

    it('a span for catch with the exception type; a returned Observable (an RPC error reply) does not make it fail', () => {
      const filter = decorateEnhancer(new PaymentFilter(), linked());
      class PaymentDeclinedError extends Error {}
      const host = { getType: () => 'rpc', switchToHttp: () => ({}), getClass: () => undefined, getHandler: () => undefined };
      inMessage(() => filter.catch(new PaymentDeclinedError('declined'), host as never));
      const [span] = enhancerSpans();
      expect(span!.name).toBe('filter PaymentFilter');
      expect(span!.attributes['nestjs.filter.exception.type']).toBe('PaymentDeclinedError');
      expect(span!.attributes['nestjs.controller']).toBeUndefined();
      expect(span!.status.code).toBe(SpanStatusCode.UNSET);
    });
  });
});
