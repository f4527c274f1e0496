import {
  propagation,
  ROOT_CONTEXT,
  defaultTextMapGetter,
  defaultTextMapSetter,
  type Context,
  type TextMapGetter,
  type TextMapPropagator,
  type TextMapSetter,
} from '@opentelemetry/api';
import { diagLimited } from '../utils/diag-limited.js';
import { contextFieldValue, isSendableFieldValue } from './header-values.js';
import { applyInboundBaggagePolicy } from './baggage-policy.js';
import { headerValueNotSendable, headerWriteFailed, propagatorExtractFailed, propagatorInjectFailed } from '../otel.messages.js';

/**
 * The one inbound and outbound path of trace context for every channel. A channel supplies a
 * getter that finds raw header values by name (case-insensitively, with every value of a
 * repeated header) and a setter that writes one; this layer makes sure propagators only ever see
 * text that passed {@link contextFieldValue}, and that only values passing
 * {@link isSendableFieldValue} are written. Neither direction throws into the caller.
 */

const validatingGetters = new WeakMap<TextMapGetter<any>, TextMapGetter<any>>();
const validatingSetters = new WeakMap<TextMapSetter<any>, TextMapSetter<any>>();
/** Getters and setters made here: wrapping them again would only check twice. */
const validating = new WeakSet<object>();

/** `getter`, returning only validated values (see {@link contextFieldValue}). Memoized per getter. */
export function validatingGetter<C>(getter: TextMapGetter<C>): TextMapGetter<C> {
  if (validating.has(getter)) {
    return getter;
  }
  let wrapped = validatingGetters.get(getter);
  if (!wrapped) {
    wrapped = {
      keys(carrier: C): string[] {
        try {
          const keys = getter.keys(carrier);
          return Array.isArray(keys) ? keys.filter((key) => typeof key === 'string') : [];
        } catch {
          return [];
        }
      },
      get(carrier: C, key: string): string | undefined {
        try {
          return contextFieldValue(key.toLowerCase(), getter.get(carrier, key));
        } catch {
          return undefined;
        }
      },
    };
    validatingGetters.set(getter, wrapped);
    validating.add(wrapped);
  }
  return wrapped;
}

/** `setter`, writing only sendable values and never throwing. Memoized per setter. */
export function validatingSetter<C>(setter: TextMapSetter<C>): TextMapSetter<C> {
  if (validating.has(setter)) {
    return setter;
  }
  let wrapped = validatingSetters.get(setter);
  if (!wrapped) {
    wrapped = {
      set(carrier: C, key: string, value: string): void {
        if (!isSendableFieldValue(key.toLowerCase(), value)) {
          if (value !== '') {
            diagLimited('warn', headerValueNotSendable(key));
          }
          return;
        }
        try {
          setter.set(carrier, key, value);
        } catch (error) {
          diagLimited('warn', headerWriteFailed(key), error);
        }
      },
    };
    validatingSetters.set(setter, wrapped);
    validating.add(wrapped);
  }
  return wrapped;
}

/**
 * `inner` behind the validating layer: every extract and inject through it, by otel-nest, by other
 * instrumentations (undici, instrumentation-http) or by application code, sees only validated
 * values and writes only sendable ones, and never throws. otel-nest registers its propagators
 * wrapped in this.
 */
export class ValidatingPropagator implements TextMapPropagator {
  constructor(readonly inner: TextMapPropagator) {}

  inject(ctx: Context, carrier: unknown, setter: TextMapSetter): void {
    try {
      this.inner.inject(ctx, carrier, validatingSetter(setter));
    } catch (error) {
      diagLimited('warn', propagatorInjectFailed('request'), error);
    }
  }

  extract(ctx: Context, carrier: unknown, getter: TextMapGetter): Context {
    try {
      const extracted = this.inner.extract(ctx, carrier, validatingGetter(getter));
      // otel-nest's own extracts apply the policy of their channel (see extractContext); another
      // instrumentation's (instrumentation-http's, application code's) gets the default rule.
      return ownExtractDepth > 0 || extracted === ctx ? extracted : applyInboundBaggagePolicy(extracted);
    } catch (error) {
      diagLimited('warn', propagatorExtractFailed(), error);
      return ctx;
    }
  }

  fields(): string[] {
    return this.inner.fields();
  }
}

/** > 0 while extractContext runs (synchronously): the propagator then leaves the baggage policy to it. */
let ownExtractDepth = 0;

/**
 * The context carried by `carrier` on top of `base` (default: a fresh root, so nothing of the
 * current request leaks into the next one), read through the validating layer, with its baggage
 * trimmed to what the inbound baggage policy lets in through `channel` (see `baggage` in
 * `OtelModule.forRoot()`). A carrier with no valid context gives `base` unchanged: a fresh root
 * trace. Never throws.
 */
export function extractContext<C>(
  carrier: C,
  getter: TextMapGetter<C> = defaultTextMapGetter as TextMapGetter<C>,
  base: Context = ROOT_CONTEXT,
  channel?: string,
): Context {
  ownExtractDepth++;
  try {
    const extracted = propagation.extract(base, carrier, validatingGetter(getter));
    return extracted === base ? base : applyInboundBaggagePolicy(extracted, channel);
  } catch (error) {
    diagLimited('warn', propagatorExtractFailed(), error);
    return base;
  } finally {
    ownExtractDepth--;
  }
}

/** Writes the context of `ctx` into `carrier` through the validating layer. Never throws. */
export function injectContext<C>(
  ctx: Context,
  carrier: C,
  setter: TextMapSetter<C> = defaultTextMapSetter as TextMapSetter<C>,
): void {
  try {
    propagation.inject(ctx, carrier, validatingSetter(setter));
  } catch (error) {
    diagLimited('warn', propagatorInjectFailed('message'), error);
  }
}

/**
 * Finds every value of header `name` in a plain header record, case-insensitively: the exact key
 * first, then any key that differs only in case (`Traceparent` from a peer that canonicalizes
 * names). Several matching keys give an array, so a `traceparent` sent twice under two spellings
 * is seen as repeated (and so invalid). For channel getters over plain objects; never throws.
 */
export function findHeader(record: unknown, name: string): unknown {
  if (record === null || typeof record !== 'object') {
    return undefined;
  }
  try {
    const wanted = name.toLowerCase();
    const found: unknown[] = [];
    for (const key of Object.keys(record)) {
      if (key.toLowerCase() === wanted) {
        const value = (record as Record<string, unknown>)[key];
        if (Array.isArray(value)) {
          found.push(...value);
        } else if (value !== undefined) {
          found.push(value);
        }
      }
    }
    // One match that is itself an array (an AMQP array nested in an array) stays wrapped: a list
    // of lists is no header value, where unwrapping it would read the inner list as a repeated header.
    return found.length === 0 ? undefined : found.length === 1 && !Array.isArray(found[0]) ? found[0] : found;
  } catch {
    return undefined;
  }
}
