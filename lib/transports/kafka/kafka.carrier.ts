import type { TextMapGetter, TextMapSetter } from '@opentelemetry/api';

/**
 * Kafka record headers as kafkajs delivers them (`Buffer`, or an array of them for a key that
 * occurs more than once) or as Nest's `KafkaParser` hands them to handlers (strings), and as
 * producers write them (string or Buffer).
 */
export type KafkaHeaderCarrier = Record<string, unknown>;

/** One header value as text: a string, a Buffer or byte array (UTF-8), anything else ignored. */
function headerText(value: unknown): string | undefined {
  if (typeof value === 'string') {
    return value;
  }
  if (value instanceof Uint8Array) {
    return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('utf8');
  }
  return undefined;
}

/**
 * Reads trace context from Kafka record headers. Null-safe; never throws. Header names are
 * matched exactly first, then case-insensitively (Kafka header keys are case-sensitive, but
 * propagators ask in lower case and some producers write `Traceparent`).
 *
 * A key repeated in one record (kafkajs gives an array) is read as its values joined with `,`,
 * the way HTTP combines a repeated field: `tracestate` and `baggage` keep all their members,
 * and two `traceparent` values no longer form a valid one, so the W3C propagator starts a new
 * trace, as the trace-context spec asks for a duplicated `traceparent`.
 */
export const kafkaHeaderGetter: TextMapGetter<KafkaHeaderCarrier | null | undefined> = {
  get(carrier, key) {
    if (!carrier || typeof carrier !== 'object') {
      return undefined;
    }
    try {
      let value = Object.hasOwn(carrier, key) ? carrier[key] : undefined;
      if (value === undefined) {
        const lower = key.toLowerCase();
        const match = Object.keys(carrier).find((name) => name.toLowerCase() === lower);
        value = match === undefined ? undefined : carrier[match];
      }
      if (Array.isArray(value)) {
        const texts = value.map(headerText).filter((text): text is string => text !== undefined);
        return texts.length > 0 ? texts.join(',') : undefined;
      }
      return headerText(value);
    } catch {
      // A carrier with throwing getters (a Proxy, a hostile object) reads as "no header".
      return undefined;
    }
  },
  keys(carrier) {
    try {
      return carrier && typeof carrier === 'object' ? Object.keys(carrier) : [];
    } catch {
      return [];
    }
  },
};

/** Writes trace context into Kafka record headers (string values, as kafkajs accepts them). */
export const kafkaHeaderSetter: TextMapSetter<KafkaHeaderCarrier> = {
  set(carrier, key, value) {
    if (carrier && typeof carrier === 'object') {
      carrier[key] = value;
    }
  },
};
