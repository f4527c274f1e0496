import type { Attributes } from '@opentelemetry/api';
import { ATTR_SERVER_ADDRESS, ATTR_SERVER_PORT } from '../../semconv.js';
import type { MessageDestination } from '../shared/messaging-tracing.js';

/**
 * `messaging.system` of Redis pub/sub. The messaging conventions list no Redis value and allow a
 * custom one for a system they do not list; `redis` is the name the database conventions register
 * for the same server (`db.system.name`).
 */
export const REDIS_MESSAGING_SYSTEM = 'redis';

/** Nest's defaults (`REDIS_DEFAULT_HOST`, `REDIS_DEFAULT_PORT`) when the options give none. */
const DEFAULT_REDIS_HOST = 'localhost';
const DEFAULT_REDIS_PORT = 6379;

/**
 * `server.address` / `server.port` of the Redis server from Nest's Redis options (ioredis's `host`,
 * `port`, or `path` for a Unix socket, which has no port), with Nest's defaults. Never throws.
 */
export function redisServerAttributes(options: unknown): Attributes {
  try {
    const { host, port, path } = (options ?? {}) as { host?: unknown; port?: unknown; path?: unknown };
    if (typeof path === 'string' && path) {
      return { [ATTR_SERVER_ADDRESS]: path };
    }
    const numericPort = typeof port === 'number' ? port : typeof port === 'string' && /^\d+$/.test(port) ? Number(port) : DEFAULT_REDIS_PORT;
    return {
      [ATTR_SERVER_ADDRESS]: typeof host === 'string' && host ? host : DEFAULT_REDIS_HOST,
      [ATTR_SERVER_PORT]: numericPort,
    };
  } catch {
    return {};
  }
}

/**
 * Whether a `PSUBSCRIBE` pattern matches more than one channel: it has an unescaped `*`, `?` or
 * `[` (Redis glob syntax; `\` escapes the next character).
 */
export function isRedisGlob(pattern: string): boolean {
  for (let i = 0; i < pattern.length; i++) {
    const char = pattern[i];
    if (char === '\\') {
      i++;
    } else if (char === '*' || char === '?' || char === '[') {
      return true;
    }
  }
  return false;
}

/**
 * The destination of a message on `channel`: with Nest's `wildcards: true` (`PSUBSCRIBE`), the
 * glob `subscription` a handler is registered under is the template, so `orders.1.get` and
 * `orders.2.get` are both `process orders.*.get`.
 */
export function redisDestination(channel: string, subscription?: string): MessageDestination {
  const destination: MessageDestination = { destination: channel };
  if (subscription !== undefined && subscription !== channel && isRedisGlob(subscription)) {
    destination.template = subscription;
  }
  return destination;
}
