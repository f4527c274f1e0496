import type { TextMapGetter, TextMapSetter } from '@opentelemetry/api';

/**
 * AMQP `properties.headers` as amqplib hands them over: a field table whose values may be strings,
 * Buffers (byte arrays), numbers, booleans, arrays, nested tables or `null`. Declared here rather
 * than imported, so that no public type of this package depends on the driver's typings.
 */
export type RmqHeaders = Record<string, unknown>;

/**
 * Reads trace context headers from AMQP `properties.headers`. A string value is returned as is,
 * a Buffer (an AMQP byte array, as some non-Node publishers send it) decoded as UTF-8; any other
 * value (number, array, table, `null`), and a missing or non-object carrier, reads as "absent", so
 * the propagator starts a new trace. Never throws.
 */
export const rmqHeaderGetter: TextMapGetter<RmqHeaders | null | undefined> = {
  get(carrier, key) {
    if (carrier === null || typeof carrier !== 'object') {
      return undefined;
    }
    try {
      const value = Object.hasOwn(carrier, key) ? carrier[key] : undefined;
      if (typeof value === 'string') {
        return value;
      }
      if (Buffer.isBuffer(value)) {
        return value.toString('utf8');
      }
    } catch {
      // A getter on a hostile object: treat the header as absent.
    }
    return undefined;
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

/** Writes trace context headers into AMQP `properties.headers` (string values). */
export const rmqHeaderSetter: TextMapSetter<RmqHeaders> = {
  set(carrier, key, value) {
    carrier[key] = value;
  },
};
