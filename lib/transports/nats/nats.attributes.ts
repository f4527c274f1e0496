import type { Attributes } from '@opentelemetry/api';
import { ATTR_SERVER_ADDRESS, ATTR_SERVER_PORT } from '../../semconv.js';
import type { MessageDestination } from '../shared/messaging-tracing.js';

/** `messaging.system` of NATS (the semantic conventions define no well-known value for it). */
export const NATS_MESSAGING_SYSTEM = 'nats';

const DEFAULT_NATS_PORT = 4222;
/** Nest's default when no `servers` option is given (`NATS_DEFAULT_URL`). */
const DEFAULT_NATS_SERVER = 'nats://localhost:4222';

/** Attributes per server string: the server rarely changes, parsing its URL on every message is waste. */
const byServer = new Map<string, Readonly<Attributes>>();
const MAX_SERVERS = 64;

/**
 * `server.address` / `server.port` of the NATS server: the one the connection is on when known
 * (`NatsConnection.getServer()`), else the first of the `servers` option, else Nest's default.
 * Never throws; an unparsable value gives no attributes. The object is shared (frozen): copy it
 * to add to it.
 */
export function natsServerAttributes(servers: unknown, connected?: unknown): Readonly<Attributes> {
  const configured = Array.isArray(servers) ? servers[0] : servers;
  const server =
    typeof connected === 'string' && connected
      ? connected
      : typeof configured === 'string' && configured
        ? configured
        : DEFAULT_NATS_SERVER;
  let attributes = byServer.get(server);
  if (attributes === undefined) {
    attributes = Object.freeze(parseServer(server));
    if (byServer.size >= MAX_SERVERS) {
      byServer.clear();
    }
    byServer.set(server, attributes);
  }
  return attributes;
}

function parseServer(server: string): Attributes {
  try {
    const url = new URL(server.includes('://') ? server : `nats://${server}`);
    const address = url.hostname.replace(/^\[(.*)\]$/, '$1');
    if (!address) {
      return {};
    }
    return { [ATTR_SERVER_ADDRESS]: address, [ATTR_SERVER_PORT]: url.port ? Number(url.port) : DEFAULT_NATS_PORT };
  } catch {
    return {};
  }
}

/** The server a NATS connection is on (`host:port`), or `undefined`. Never throws. */
export function connectedNatsServer(connection: unknown): string | undefined {
  try {
    const server = (connection as { getServer?: () => unknown } | null | undefined)?.getServer?.();
    return typeof server === 'string' ? server : undefined;
  } catch {
    return undefined;
  }
}

/** The drivers' default prefix of reply subjects (`_INBOX.<nuid>`); the `inboxPrefix` option changes it. */
const DEFAULT_INBOX_PREFIX = '_INBOX';

/** A subject with a wildcard token: `*` (one token) or `>` (the rest). */
export function isNatsWildcard(subject: string): boolean {
  return subject.split('.').some((token) => token === '*' || token === '>');
}

/**
 * The destination of a NATS message on `subject`:
 * - `pattern` (the subscription a server handler is registered under) is the template when it is
 *   a wildcard, so `probe.1.get` and `probe.2.get` are both `process probe.*.get`;
 * - a reply subject (`_INBOX.…`, or the `inboxPrefix` given) is temporary and anonymous: a fresh
 *   name per request, left out of the span name.
 */
export function natsDestination(subject: string, pattern?: string, inboxPrefix?: unknown): MessageDestination {
  const destination: MessageDestination = { destination: subject };
  if (pattern !== undefined && pattern !== subject && isNatsWildcard(pattern)) {
    destination.template = pattern;
  }
  const prefix = typeof inboxPrefix === 'string' && inboxPrefix ? inboxPrefix : DEFAULT_INBOX_PREFIX;
  if (subject.startsWith(`${prefix}.`)) {
    destination.temporary = true;
    destination.anonymous = true;
  }
  return destination;
}
