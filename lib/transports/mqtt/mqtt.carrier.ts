import { propagation, type Context, type TextMapGetter, type TextMapSetter } from '@opentelemetry/api';
import { injectContext, validatingGetter } from '../../propagation/carrier.js';
import { CONTEXT_FIELDS, maxFieldLength } from '../../propagation/header-values.js';
import { isMetadataObject, tcpMetadataGetter } from '../tcp/tcp.carrier.js';

/**
 * MQTT 5 user properties as the mqtt driver hands them over and takes them: a value per name, or
 * an array of values for a name sent more than once.
 */
export type MqttUserProperties = Record<string, string | string[]>;

/** User property sets with more names than this are not searched (read as "no context"). */
const MAX_USER_PROPERTIES = 256;

/**
 * Reads trace context from MQTT 5 user properties (`traceparent`, `tracestate`, `baggage`, as the
 * W3C Trace Context MQTT draft names them). Names match case-insensitively; a name repeated on the
 * wire (an array) or present under several spellings is handed over as a repeated field, which the
 * validating layer in propagation/carrier.ts reads as invalid for `traceparent` and combines for
 * `tracestate` / `baggage`. Only strings count: any other value makes the field absent, as does a
 * property set that is not an object, or that has too many names. Collecting stops early once the
 * values are longer than the validating layer accepts. Never throws.
 */
const rawMqttUserPropertiesGetter: TextMapGetter<unknown> = {
  keys(carrier) {
    try {
      return isMetadataObject(carrier) ? Object.keys(carrier) : [];
    } catch {
      return [];
    }
  },
  get(carrier, key) {
    if (!isMetadataObject(carrier)) {
      return undefined;
    }
    try {
      const names = Object.keys(carrier);
      if (names.length > MAX_USER_PROPERTIES) {
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
        for (const one of Array.isArray(value) ? value : [value]) {
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

/** {@link rawMqttUserPropertiesGetter} behind the validating layer: what a propagator may read (text, or absent). */
export const mqttUserPropertiesGetter: TextMapGetter<unknown> = validatingGetter(rawMqttUserPropertiesGetter);

/** Writes one context field as a user property, removing differently-cased copies of it. */
export const mqttUserPropertiesSetter: TextMapSetter<MqttUserProperties> = {
  set(carrier, key, value) {
    removeField(carrier, key);
    carrier[key] = value;
  },
};

function removeField(properties: Record<string, unknown>, field: string): void {
  const wanted = field.toLowerCase();
  for (const name of Object.keys(properties)) {
    if (name.toLowerCase() === wanted) {
      delete properties[name];
    }
  }
}

/** The context fields: the global propagator's, and the W3C ones in any case. */
function contextFields(): string[] {
  let fields: string[] = [];
  try {
    fields = propagation.fields();
  } catch {
    // The W3C fields, then.
  }
  return fields.length === 0 ? [...CONTEXT_FIELDS] : [...new Set([...fields, ...CONTEXT_FIELDS])];
}

/**
 * New user properties: the application's own (from an `MqttRecord`, or the client's
 * `userProperties` option) kept, every context field of the application's removed (a stale or
 * forwarded `traceparent` would contradict ours), and the context of `ctx` written by the global
 * propagator. `undefined` when there is nothing to send (no user properties of the application's
 * and no context): Nest's publish options then stay as they are, since the broker drops a message
 * with an empty user property set (nestjs/nest#14079). The application's object is never changed.
 */
export function userPropertiesWithContext(own: unknown, ctx: Context): MqttUserProperties | undefined {
  const properties: MqttUserProperties = {};
  const hasOwn = isMetadataObject(own);
  if (hasOwn) {
    Object.assign(properties, own);
    for (const field of contextFields()) {
      removeField(properties, field);
    }
  }
  injectContext(ctx, properties, mqttUserPropertiesSetter);
  return Object.keys(properties).length === 0 ? undefined : properties;
}

/**
 * Where the producer's context of an incoming message is: its MQTT 5 user properties when any of
 * them is a context field, else the `metadata` of Nest's JSON packet (what `OtelClientMqtt` sends
 * on MQTT 3.1.1, which has no user properties, and what a Nest 12 `setOnDispatchHook` writes).
 * One source per message: fields of the two are never mixed.
 */
export function mqttIncomingCarrier(userProperties: unknown, metadata: unknown): { carrier: unknown; getter: TextMapGetter<unknown> } {
  if (isMetadataObject(userProperties)) {
    for (const field of contextFields()) {
      if (hasField(userProperties, field)) {
        return { carrier: userProperties, getter: mqttUserPropertiesGetter };
      }
    }
  }
  return { carrier: metadata, getter: tcpMetadataGetter };
}

/**
 * Whether any name of `record` spells `field`, whatever its value: user properties with a hostile
 * `traceparent` are still the source (a fresh root), never a reason to look at the packet instead.
 * An oversized set counts as one (it is then read as "no context").
 */
function hasField(record: Record<string, unknown>, field: string): boolean {
  try {
    const names = Object.keys(record);
    if (names.length > MAX_USER_PROPERTIES) {
      return true;
    }
    const wanted = field.toLowerCase();
    return names.some((name) => name.toLowerCase() === wanted);
  } catch {
    return false;
  }
}
