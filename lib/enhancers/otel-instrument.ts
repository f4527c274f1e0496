import { decorateEnhancer } from './enhancer-proxy.js';
import type { EnhancerConfigSource } from './enhancer-spans.config.js';

/** Nest's `instrument` application option (`NestApplicationContextOptions['instrument']`). */
export interface NestInstrumentOption {
  instanceDecorator: (instance: unknown) => unknown;
}

/** Options of {@link otelInstrument}. */
export interface OtelInstrumentOptions {
  /**
   * Your own instance decorator, composed with otel-nest's: it runs first, and otel-nest's wraps
   * what it returns. Default none.
   */
  instanceDecorator?: (instance: unknown) => unknown;
}

/**
 * The `instrument` option for `NestFactory.create` / `createMicroservice` that gives guards,
 * pipes, interceptors and exception filters their spans when `enhancerSpans` is on:
 *
 * ```ts
 * const app = await NestFactory.create(AppModule, { instrument: otelInstrument() });
 * ```
 *
 * Nest (11.1.4 and later) hands every instance its injector creates to `instanceDecorator`
 * (providers, controllers and the enhancers of `@UseGuards(AuthGuard)`, `APP_GUARD`, ...), and,
 * from 11.1.12 on, the instances given to `app.useGlobalGuards()` / `useGlobalPipes()` /
 * `useGlobalInterceptors()` / `useGlobalFilters()`. Instances that have one of the enhancer
 * methods are returned as a Proxy that times that method (see `decorateEnhancer`); every other
 * instance is returned unchanged. Whether a call gets a span follows the `enhancerSpans` option
 * of this application's `OtelModule`, read per call, so the option may come from `forRootAsync`.
 * One call per application: the returned decorator learns its application's options.
 */
export function otelInstrument(options: OtelInstrumentOptions = {}): NestInstrumentOption {
  const source: EnhancerConfigSource = { linked: false, config: undefined };
  const own = options.instanceDecorator;
  return {
    instanceDecorator: own
      ? (instance: unknown) => decorateEnhancer(own(instance), source)
      : (instance: unknown) => decorateEnhancer(instance, source),
  };
}

/**
 * `enhancer` wrapped as `otelInstrument()` wraps the instances Nest creates, for the enhancers Nest
 * does not hand to it: instances given to the decorators (`@UsePipes(new ValidationPipe())`,
 * `@Body(new ParseIntPipe())`, `@UseGuards(new ApiKeyGuard(key))`), to `app.useGlobal*()` on Nest
 * before 11.1.12, and everything a `Test.createTestingModule()` creates. Follows the `enhancerSpans`
 * option of the last `OtelModule` started in the process. Returns `enhancer` itself when it has no
 * enhancer method.
 */
export function withEnhancerSpans<T extends object>(enhancer: T): T {
  return decorateEnhancer(enhancer, undefined);
}
