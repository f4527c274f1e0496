import type { Attributes } from '@opentelemetry/api';
import {
  ATTR_NESTJS_HANDLER_TYPE,
  ATTR_NESTJS_PATTERN,
  ATTR_NETWORK_PEER_ADDRESS,
  ATTR_NETWORK_PEER_PORT,
  ATTR_RPC_METHOD,
  ATTR_RPC_SYSTEM_NAME,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
} from '../../semconv.js';

/**
 * `rpc.system.name` of the CLIENT/SERVER spans of `send()`, and `messaging.system` of the
 * PRODUCER/CONSUMER spans of `emit()`: Nest's own protocol over TCP is neither a registered RPC
 * system nor a registered messaging system, and both conventions allow a custom value for an
 * unlisted one. Namespaced, so that it cannot be mistaken for a future registered value.
 */
export const TCP_SYSTEM = 'nestjs_tcp';

/** Nest's defaults when the options name no host or port (`TCP_DEFAULT_HOST`, `TCP_DEFAULT_PORT`). */
export const TCP_DEFAULT_HOST = 'localhost';
export const TCP_DEFAULT_PORT = 3000;

/**
 * The attributes of the span of one request (`send()`): the RPC method is the Nest pattern
 * (`orders.get`, or for an object pattern Nest's JSON form, `{"cmd":"sum"}`), and so is the span name.
 */
export function tcpRpcAttributes(pattern: string): Attributes {
  const attributes: Attributes = {};
  attributes[ATTR_RPC_SYSTEM_NAME] = TCP_SYSTEM;
  attributes[ATTR_RPC_METHOD] = pattern;
  attributes[ATTR_NESTJS_PATTERN] = pattern;
  attributes[ATTR_NESTJS_HANDLER_TYPE] = 'message';
  return attributes;
}

/** The low-cardinality attributes of `rpc.server.call.duration` / `rpc.client.call.duration` for a TCP request. */
export function tcpRpcMetricAttributes(pattern: string, target: Attributes = {}): Attributes {
  target[ATTR_RPC_SYSTEM_NAME] = TCP_SYSTEM;
  target[ATTR_RPC_METHOD] = pattern;
  return target;
}

/** `server.address` / `server.port` of a client's target, Nest's defaults for what is not given. */
export function tcpServerAttributes(host: unknown, port: unknown, target: Attributes = {}): Attributes {
  target[ATTR_SERVER_ADDRESS] = typeof host === 'string' && host ? host : TCP_DEFAULT_HOST;
  const number = typeof port === 'number' ? port : typeof port === 'string' && /^\d{1,5}$/.test(port) ? Number(port) : undefined;
  target[ATTR_SERVER_PORT] = number !== undefined && Number.isInteger(number) && number >= 0 && number <= 65535 ? number : TCP_DEFAULT_PORT;
  return target;
}

/** `network.peer.address` / `network.peer.port` of a connected `net.Socket`, when it has them. Never throws. */
export function tcpPeerAttributes(socket: unknown, target: Attributes = {}): Attributes {
  try {
    const { remoteAddress, remotePort } = (socket ?? {}) as { remoteAddress?: unknown; remotePort?: unknown };
    if (typeof remoteAddress === 'string' && remoteAddress) {
      target[ATTR_NETWORK_PEER_ADDRESS] = remoteAddress;
      if (typeof remotePort === 'number') {
        target[ATTR_NETWORK_PEER_PORT] = remotePort;
      }
    }
  } catch {
    // No peer attributes, then.
  }
  return target;
}
