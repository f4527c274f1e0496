import type { Attributes } from '@opentelemetry/api';
import {
  ATTR_MESSAGING_CLIENT_ID,
  ATTR_NESTJS_MQTT_QOS,
  ATTR_NESTJS_MQTT_RETAIN,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
} from '../../semconv.js';
import type { MessageDestination } from '../shared/messaging-tracing.js';

/**
 * `messaging.system` of MQTT. The messaging conventions list no MQTT value and allow a custom one
 * for a system they do not list ("a custom value MAY be used"): the protocol's name, lower case.
 */
export const MQTT_MESSAGING_SYSTEM = 'mqtt';

/** Nest's default when no `url` option is given (`MQTT_DEFAULT_URL`). */
const DEFAULT_MQTT_URL = 'mqtt://localhost:1883';
/** The mqtt driver's default port per URL scheme. */
const DEFAULT_PORTS: Readonly<Record<string, number>> = {
  'mqtt:': 1883,
  'tcp:': 1883,
  'mqtts:': 8883,
  'ssl:': 8883,
  'tls:': 8883,
  'ws:': 80,
  'wss:': 443,
};

/** Attributes per URL: the URL does not change, parsing it on every message is waste. */
const byUrl = new Map<string, Readonly<Attributes>>();
const MAX_URLS = 64;

/**
 * `server.address` / `server.port` of the broker, from Nest's `url` option (Nest's default when
 * none is given). Never throws; an unparsable URL gives no attributes. The object is shared
 * (frozen): copy it to add to it.
 */
export function mqttServerAttributes(url: unknown): Readonly<Attributes> {
  const server = typeof url === 'string' && url ? url : DEFAULT_MQTT_URL;
  let attributes = byUrl.get(server);
  if (attributes === undefined) {
    attributes = Object.freeze(parseUrl(server));
    if (byUrl.size >= MAX_URLS) {
      byUrl.clear();
    }
    byUrl.set(server, attributes);
  }
  return attributes;
}

function parseUrl(server: string): Attributes {
  try {
    const url = new URL(server.includes('://') ? server : `mqtt://${server}`);
    const address = url.hostname.replace(/^\[(.*)\]$/, '$1');
    if (!address) {
      return {};
    }
    const port = url.port ? Number(url.port) : DEFAULT_PORTS[url.protocol];
    return port === undefined ? { [ATTR_SERVER_ADDRESS]: address } : { [ATTR_SERVER_ADDRESS]: address, [ATTR_SERVER_PORT]: port };
  } catch {
    return {};
  }
}

/** A topic filter with a wildcard level: `+` (one level) or `#` (the rest). */
export function isMqttWildcard(filter: string): boolean {
  return filter.split('/').some((level) => level === '+' || level === '#');
}

/** A shared subscription `$share/{group}/{filter}`, split; `undefined` for any other filter. */
export function mqttSharedSubscription(filter: string): { group: string; filter: string } | undefined {
  if (!filter.startsWith('$share/')) {
    return undefined;
  }
  const rest = filter.slice('$share/'.length);
  const slash = rest.indexOf('/');
  return slash > 0 ? { group: rest.slice(0, slash), filter: rest.slice(slash + 1) } : undefined;
}

/**
 * The destination of an MQTT message on `topic`. `subscription` (the filter the server handler is
 * registered under, a shared subscription's prefix removed) is the template when it has a wildcard,
 * so `orders/1/get` and `orders/2/get` are both `process orders/+/get`.
 */
export function mqttDestination(topic: string, subscription?: string): MessageDestination {
  const destination: MessageDestination = { destination: topic };
  if (subscription !== undefined && subscription !== topic && isMqttWildcard(subscription)) {
    destination.template = subscription;
  }
  return destination;
}

/**
 * QoS and retain flag of a message, as `nestjs.mqtt.qos` / `nestjs.mqtt.retain`: the messaging
 * conventions define no MQTT attributes, so they live in the library's namespace. Values that are
 * not a QoS level (0, 1, 2) or a boolean are left out.
 */
export function addMqttDeliveryAttributes(attributes: Attributes, qos: unknown, retain: unknown): Attributes {
  if (qos === 0 || qos === 1 || qos === 2) {
    attributes[ATTR_NESTJS_MQTT_QOS] = qos;
  }
  if (typeof retain === 'boolean') {
    attributes[ATTR_NESTJS_MQTT_RETAIN] = retain;
  }
  return attributes;
}

/** The parts of the mqtt driver's client read here. */
interface MqttClientLike {
  options?: { clientId?: unknown; protocolVersion?: unknown };
}

/**
 * The MQTT protocol version a driver client talks (`3`, `4` for 3.1.1, `5`), else the option
 * given, else the driver's default (4). Never throws.
 */
export function mqttProtocolVersion(client: unknown, configured: unknown): number {
  try {
    const live = (client as MqttClientLike | null | undefined)?.options?.protocolVersion;
    if (typeof live === 'number') {
      return live;
    }
  } catch {
    // The option, then.
  }
  return typeof configured === 'number' ? configured : 4;
}

/** `messaging.client.id`: the MQTT client identifier of the connection (the driver generates one when none is given). */
export function addMqttClientId(attributes: Attributes, client: unknown): Attributes {
  try {
    const clientId = (client as MqttClientLike | null | undefined)?.options?.clientId;
    if (typeof clientId === 'string' && clientId) {
      attributes[ATTR_MESSAGING_CLIENT_ID] = clientId;
    }
  } catch {
    // An attribute is never worth failing a message.
  }
  return attributes;
}
