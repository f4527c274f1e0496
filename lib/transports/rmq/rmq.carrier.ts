import type { TextMapGetter, TextMapSetter } from '@opentelemetry/api';
import { findHeader, validatingGetter } from '../../propagation/carrier.js';

/**
 * AMQP `properties.headers` as amqplib hands them over: a field table whose values may be strings,
 * Buffers (byte arrays), numbers, booleans, arrays, nested tables or `null`. Declared here rather
 * than imported, so that no public type of this package depends on the driver's typings.
 */
export type RmqHeaders = Record<string, unknown>;

/**
 * Finds trace context headers in AMQP `properties.headers`, by name case-insensitively
 * (`Traceparent` from a non-Node publisher counts). Values are handed over raw (strings, Buffers
 * for AMQP byte arrays, or an array when two keys differ only in case); the validating layer in
 * propagation/carrier.ts turns them into text or "absent" (numbers, tables, control characters,
 * oversized values), so the propagator starts a new trace. Never throws.
 */
const rawRmqHeaderGetter: TextMapGetter<RmqHeaders | null | undefined> = {
  get(carrier, key) {
    return findHeader(carrier, key) as string | string[] | undefined;
  },
  keys(carrier) {
    if (carrier === null || typeof carrier !== 'object') {
      return [];
    }
    try {
      return Object.keys(carrier);
    } catch {
      return [];
    }
  },
};

/** {@link rawRmqHeaderGetter} behind the validating layer: what a propagator may read (text, or absent). */
export const rmqHeaderGetter = validatingGetter(rawRmqHeaderGetter);

/**
 * Writes trace context headers into AMQP `properties.headers` (string values), replacing any
 * differently-cased copy so the receiver never sees the field twice. Used through the validating
 * layer (`injectContext`), which writes only sendable values.
 */
export const rmqHeaderSetter: TextMapSetter<RmqHeaders> = {
  set(carrier, key, value) {
    const lower = key.toLowerCase();
    for (const name of Object.keys(carrier)) {
      if (name !== key && name.toLowerCase() === lower) {
        delete carrier[name];
      }
    }
    carrier[key] = value;
  },
};
