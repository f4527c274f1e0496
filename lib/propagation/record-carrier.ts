import { propagation, type TextMapGetter, type TextMapSetter } from '@opentelemetry/api';
import { validatingGetter } from './carrier.js';
import { CONTEXT_FIELDS, maxFieldLength } from './header-values.js';

/**
 * Trace context in a plain JSON object that came over the network: the `metadata` of Nest's packet
 * envelope (TCP, Redis, MQTT 3.1.1) and MQTT 5 user properties. One reader and one writer for all
 * of them; each transport's carrier module adds what is its own (reply-context keys, sources).
 */

/** Records with more keys than this are not searched (read as "no context"). */
export const MAX_RECORD_FIELDS = 256;

/** A JSON object (not an array, not null): the only shape that can carry context. */
export function isPlainRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/**
 * A getter over such a record, behind the validating layer. Names match case-insensitively; a
 * field present under several spellings is handed over as repeated (invalid for `traceparent`).
 * Only strings are values; with `arrays`, an array of strings is the field sent more than once
 * (MQTT user properties), otherwise an array makes the field absent (a one-element array must not
 * pass for a string). Any other value, a record that is not an object, or one with more than
 * {@link MAX_RECORD_FIELDS} keys gives no field. Collecting stops once the values are longer than
 * the validating layer accepts. Never throws.
 */
export function recordFieldGetter(arrays: boolean): TextMapGetter<unknown> {
  const raw: TextMapGetter<unknown> = {
    keys(carrier) {
      try {
        return isPlainRecord(carrier) ? Object.keys(carrier) : [];
      } catch {
        return [];
      }
    },
    get(carrier, key) {
      if (!isPlainRecord(carrier)) {
        return undefined;
      }
      try {
        const names = Object.keys(carrier);
        if (names.length > MAX_RECORD_FIELDS) {
          return undefined;
        }
        const wanted = key.toLowerCase();
        const limit = maxFieldLength(wanted);
        const found: string[] = [];
        let length = 0;
        for (const name of names) {
          if (name.toLowerCase() !== wanted) {
            continue;
          }
          const value = carrier[name];
          for (const one of arrays && Array.isArray(value) ? value : [value]) {
            if (typeof one !== 'string') {
              return undefined;
            }
            length += one.length;
            if (length > limit) {
              return undefined;
            }
            found.push(one);
          }
        }
        return found.length === 0 ? undefined : found.length === 1 ? found[0] : found;
      } catch {
        return undefined;
      }
    },
  };
  return validatingGetter(raw);
}

/** Writes one field into a record of our own, removing differently-cased copies of it (they would make it look repeated). */
export const recordFieldSetter: TextMapSetter<Record<string, string | string[]>> = {
  set(carrier, key, value) {
    removeRecordField(carrier, key);
    carrier[key] = value;
  },
};

/** Deletes every spelling of `field` from `record`. */
export function removeRecordField(record: Record<string, unknown>, field: string): void {
  const wanted = field.toLowerCase();
  for (const name of Object.keys(record)) {
    if (name.toLowerCase() === wanted) {
      delete record[name];
    }
  }
}

/** The context fields: the global propagator's, and the W3C ones in any case. */
export function contextFields(): string[] {
  let fields: string[] = [];
  try {
    fields = propagation.fields();
  } catch {
    // The W3C fields, then.
  }
  return [...new Set([...fields, ...CONTEXT_FIELDS])];
}

/** Deletes every context field (any spelling) from `record`: an application's stale or forwarded context must not ride with ours. */
export function removeContextFields(record: Record<string, unknown>): void {
  for (const field of contextFields()) {
    removeRecordField(record, field);
  }
}
