import type { Context, TextMapGetter, TextMapSetter } from '@opentelemetry/api';
import { injectContext } from '../../propagation/carrier.js';
import { contextFields, MAX_RECORD_FIELDS, recordFieldGetter, recordFieldSetter, removeContextFields } from '../../propagation/record-carrier.js';
import { isMetadataObject, tcpMetadataGetter } from '../tcp/tcp.carrier.js';

/**
 * MQTT 5 user properties as the mqtt driver hands them over and takes them: a value per name, or
 * an array of values for a name sent more than once.
 */
export type MqttUserProperties = Record<string, string | string[]>;

/**
 * Reads trace context from MQTT 5 user properties (`traceparent`, `tracestate`, `baggage`, as the
 * W3C Trace Context MQTT draft names them), behind the validating layer. Names match
 * case-insensitively; a name repeated on the wire (an array) or present under several spellings is
 * a repeated field, invalid for `traceparent` and combined for `tracestate` / `baggage` (see
 * {@link recordFieldGetter}). Never throws.
 */
export const mqttUserPropertiesGetter: TextMapGetter<unknown> = recordFieldGetter(true);

/** Writes one context field as a user property, removing differently-cased copies of it. */
export const mqttUserPropertiesSetter: TextMapSetter<MqttUserProperties> = recordFieldSetter;

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
    removeContextFields(properties);
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
    if (names.length > MAX_RECORD_FIELDS) {
      return true;
    }
    const wanted = field.toLowerCase();
    return names.some((name) => name.toLowerCase() === wanted);
  } catch {
    return false;
  }
}
