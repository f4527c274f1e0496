import type { TextMapGetter, TextMapSetter } from '@opentelemetry/api';
import { findHeader, validatingGetter } from '../../propagation/carrier.js';

/**
 * Kafka record headers as kafkajs delivers them (`Buffer`, or an array of them for a key that
 * occurs more than once) or as Nest's `KafkaParser` hands them to handlers (strings), and as
 * producers write them (string or Buffer).
 */
export type KafkaHeaderCarrier = Record<string, unknown>;

/**
 * Finds trace context in Kafka record headers, by name case-insensitively (Kafka header keys are
 * case-sensitive, but propagators ask in lower case and some producers write `Traceparent`). Values
 * are handed over raw: a Buffer (what kafkajs delivers), a string (what Nest's `KafkaParser` hands
 * to handlers), or an array for a key repeated in one record or spelled twice. The validating layer
 * in propagation/carrier.ts decodes them and combines a repeated list header with `,` (two
 * `traceparent` values are invalid, so the propagator starts a new trace, as the trace-context spec
 * asks). Null-safe; never throws.
 */
const rawKafkaHeaderGetter: TextMapGetter<KafkaHeaderCarrier | null | undefined> = {
  get(carrier, key) {
    return findHeader(carrier, key) as string | string[] | undefined;
  },
  keys(carrier) {
    try {
      return carrier && typeof carrier === 'object' ? Object.keys(carrier) : [];
    } catch {
      return [];
    }
  },
};

/** {@link rawKafkaHeaderGetter} behind the validating layer: what a propagator may read (text, or absent). */
export const kafkaHeaderGetter = validatingGetter(rawKafkaHeaderGetter);

/** Writes trace context into Kafka record headers (string values, as kafkajs accepts them). */
export const kafkaHeaderSetter: TextMapSetter<KafkaHeaderCarrier> = {
  set(carrier, key, value) {
    if (carrier && typeof carrier === 'object') {
      carrier[key] = value;
    }
  },
};
