import type { Attributes } from '@opentelemetry/api';
import { ATTR_SERVER_ADDRESS, ATTR_SERVER_PORT } from '../../semconv.js';

/** `messaging.system` of both RabbitMQ classes. */
export const RABBITMQ_SYSTEM = 'rabbitmq';

/** The connection URL shapes Nest's `urls` option accepts (amqplib's string or `Options.Connect`). */
type RmqUrlLike = string | { protocol?: string; hostname?: string; port?: number };

const DEFAULT_PORTS: Record<string, number> = { amqp: 5672, amqps: 5671 };

/**
 * `server.address` / `server.port` of the first configured URL (the one the connection manager
 * tries first; which one it ends up on is not exposed without reaching into the driver). Empty when
 * the option is missing or unreadable; Nest then uses its own default URL, `amqp://localhost`.
 */
export function serverAttributes(urls: unknown): Attributes {
  const first: unknown = Array.isArray(urls) && urls.length > 0 ? urls[0] : 'amqp://localhost';
  try {
    if (typeof first === 'string') {
      const url = new URL(first);
      const scheme = url.protocol.replace(/:$/, '');
      return address(url.hostname.replace(/^\[(.*)\]$/, '$1'), url.port ? Number(url.port) : DEFAULT_PORTS[scheme]);
    }
    if (first !== null && typeof first === 'object') {
      const url = first as Exclude<RmqUrlLike, string>;
      const scheme = (url.protocol ?? 'amqp').replace(/:$/, '');
      return address(url.hostname ?? 'localhost', url.port ?? DEFAULT_PORTS[scheme]);
    }
  } catch {
    // An unparsable URL fails in the driver, with its own message; the span just goes without it.
  }
  return {};
}

function address(host: string, port: number | undefined): Attributes {
  const attributes: Attributes = {};
  if (host) {
    attributes[ATTR_SERVER_ADDRESS] = host;
  }
  if (port !== undefined && Number.isInteger(port)) {
    attributes[ATTR_SERVER_PORT] = port;
  }
  return attributes;
}

/**
 * `messaging.destination.name` of a publish: `{exchange}:{routing key}`, omitting an empty part;
 * `amq.default` when both are empty (RabbitMQ semantic conventions).
 */
export function publishDestination(exchange: string, routingKey: string): string {
  return [exchange, routingKey].filter(Boolean).join(':') || 'amq.default';
}

/**
 * `messaging.destination.name` of a delivery: `{exchange}:{routing key}:{queue}`, omitting empty
 * parts, with the routing key left out when it equals the queue name. A message Nest sent through
 * the default exchange to queue `orders` is therefore just `orders`.
 */
export function consumeDestination(exchange: string, routingKey: string, queue: string): string {
  const key = routingKey === queue ? '' : routingKey;
  return [exchange, key, queue].filter(Boolean).join(':');
}

/** RabbitMQ's direct reply-to pseudo-queue (Nest's default `replyQueue`); replies go to `amq.rabbitmq.reply-to.<id>`. */
export const DIRECT_REPLY_TO = 'amq.rabbitmq.reply-to';

/** A topic-exchange binding key with a wildcard word: `*` (one word) or `#` (zero or more). */
export function isTopicWildcard(bindingKey: string): boolean {
  return bindingKey.split('.').some((word) => word === '*' || word === '#');
}

/**
 * `messaging.destination.temporary` / `.anonymous` of a queue (a routing key of the default
 * exchange is a queue name): direct reply-to is both; a server-named queue (`''`, `amq.gen-…`) is
 * anonymous; an exclusive queue (deleted with the connection that declared it) is temporary. An
 * `autoDelete` queue with a name of its own is neither: it is usually a shared work queue.
 */
export function queueFlags(queue: string, exclusive?: unknown): { temporary?: true; anonymous?: true } {
  if (queue.startsWith(DIRECT_REPLY_TO)) {
    return { temporary: true, anonymous: true };
  }
  const flags: { temporary?: true; anonymous?: true } = {};
  if (queue === '' || queue.startsWith('amq.gen-')) {
    flags.anonymous = true;
  }
  if (exclusive === true) {
    flags.temporary = true;
  }
  return flags;
}
