import { createParamDecorator, type PipeTransform, type Type } from '@nestjs/common';
import { context, propagation, trace } from '@opentelemetry/api';

/**
 * Injects the span active while the handler runs (the handler span of HTTP and microservice
 * requests), or `undefined` when there is none.
 *
 * @publicApi
 */
export const CurrentSpan = createParamDecorator(() => trace.getActiveSpan());

// Typed here rather than inferred: the inferred type names `ParameterDecoratorOptions`, which only
// Nest 12's @nestjs/common exports, so the published declarations would not check against Nest 11.
/**
 * Injects baggage of the active context: `@Baggage('tenant.id')` gives that entry's value (or
 * `undefined`), `@Baggage()` gives every entry as `{ key: value }`.
 *
 * @publicApi
 */
export const Baggage: (key?: string, ...pipes: Array<PipeTransform | Type<PipeTransform>>) => ParameterDecorator = createParamDecorator(
  (key: string | undefined) => {
    const baggage = propagation.getBaggage(context.active());
    if (key !== undefined) {
      return baggage?.getEntry(key)?.value;
    }
    return Object.fromEntries((baggage?.getAllEntries() ?? []).map(([name, entry]) => [name, entry.value]));
  },
);
