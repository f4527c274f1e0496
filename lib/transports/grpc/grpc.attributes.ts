import type { Attributes } from '@opentelemetry/api';
import {
  ATTR_NETWORK_PEER_ADDRESS,
  ATTR_NETWORK_PEER_PORT,
  ATTR_RPC_METHOD,
  ATTR_RPC_METHOD_ORIGINAL,
  ATTR_RPC_SERVICE,
  ATTR_RPC_SYSTEM,
  ATTR_RPC_SYSTEM_NAME,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
} from '../../semconv.js';

/** `rpc.system.name` (and the legacy `rpc.system`) of every gRPC span. */
export const GRPC_RPC_SYSTEM = 'grpc';

/** `rpc.method` of a method the instrumentation does not know. */
export const RPC_METHOD_OTHER = '_OTHER';

/** The gRPC status codes by number, as `rpc.status_code` spells them (the names of grpc-js's `status` enum). */
const STATUS_NAMES: readonly string[] = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
];

export const GRPC_STATUS_OK = 0;
export const GRPC_STATUS_CANCELLED = 1;
export const GRPC_STATUS_DEADLINE_EXCEEDED = 4;
export const GRPC_STATUS_UNIMPLEMENTED = 12;

/** `error.type` of a SERVER span whose call was dropped by the server's shutdown (no status was sent). */
export const GRPC_SERVER_SHUTDOWN = 'server_shutdown';

/** The name of a gRPC status code; a number outside the table (a peer's own code) is `UNKNOWN`, as gRPC treats it. */
export function grpcStatusName(code: unknown): string {
  return typeof code === 'number' && Number.isInteger(code) && code >= 0 && code < STATUS_NAMES.length
    ? STATUS_NAMES[code]!
    : 'UNKNOWN';
}

/** The codes that fail a SERVER span (RPC semantic conventions, gRPC): the server's own faults. */
const SERVER_ERROR_CODES: ReadonlySet<string> = new Set([
  'UNKNOWN',
  'DEADLINE_EXCEEDED',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
]);

/** Whether a status fails the span: on the client every code but OK, on the server only {@link SERVER_ERROR_CODES}. */
export function isGrpcError(statusName: string, side: 'client' | 'server'): boolean {
  return side === 'client' ? statusName !== 'OK' : SERVER_ERROR_CODES.has(statusName);
}

/** `package.Service/Method` from a gRPC path (`/package.Service/Method`), or undefined when the path is not of that form. */
export function grpcMethodOf(path: unknown): string | undefined {
  if (typeof path !== 'string') {
    return undefined;
  }
  const match = /^\/([^/\s]+)\/([^/\s]+)$/.exec(path);
  return match ? `${match[1]}/${match[2]}` : undefined;
}

/**
 * The span name and method attributes of a call to `path`: `package.Service/Method`, or for a
 * method that is not `known` (or a malformed path) the name `grpc` with `rpc.method=_OTHER` and
 * `rpc.method_original`. `legacy` adds the pre-1.39 `rpc.system` and `rpc.service`.
 */
export function grpcMethodAttributes(path: unknown, known: boolean, legacy: boolean): { name: string; attributes: Attributes } {
  const attributes: Attributes = {};
  attributes[ATTR_RPC_SYSTEM_NAME] = GRPC_RPC_SYSTEM;
  const method = grpcMethodOf(path);
  let name: string;
  if (method !== undefined && known) {
    attributes[ATTR_RPC_METHOD] = method;
    name = method;
  } else {
    attributes[ATTR_RPC_METHOD] = RPC_METHOD_OTHER;
    attributes[ATTR_RPC_METHOD_ORIGINAL] = method ?? String(path).slice(0, 256);
    name = GRPC_RPC_SYSTEM;
  }
  if (legacy) {
    attributes[ATTR_RPC_SYSTEM] = GRPC_RPC_SYSTEM;
    if (method !== undefined) {
      attributes[ATTR_RPC_SERVICE] = method.slice(0, method.indexOf('/'));
    }
  }
  return { name, attributes };
}

/** Host and port of `host:port`, `[v6]:port`, `v6`, or `host`; the port only when it is a valid number. */
export function splitHostPort(value: string): { host: string; port?: number } | undefined {
  let host: string;
  let port: string | undefined;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(value);
  if (bracketed) {
    host = bracketed[1]!;
    port = bracketed[2];
  } else if (value.split(':').length > 2) {
    // An IPv6 address without brackets has no port.
    host = value;
  } else {
    const colon = value.lastIndexOf(':');
    host = colon === -1 ? value : value.slice(0, colon);
    port = colon === -1 ? undefined : value.slice(colon + 1);
  }
  if (!host) {
    return undefined;
  }
  const number = port !== undefined && /^\d{1,5}$/.test(port) ? Number(port) : undefined;
  return number !== undefined && number <= 65535 ? { host, port: number } : { host };
}

/**
 * `server.address` / `server.port` of a client's target, as Nest's `url` option gives it
 * (`localhost:5000`, `dns:///orders.internal:443`, `ipv4:10.0.0.1:50051`). A Unix socket target
 * gives its path as the address. The port defaults to 443, gRPC's default, when the target names none.
 */
export function grpcServerAttributes(target: string): Attributes {
  const attributes: Attributes = {};
  let rest = target.trim();
  const unix = /^unix:(?:\/\/)?(.+)$/.exec(rest);
  if (unix) {
    attributes[ATTR_SERVER_ADDRESS] = unix[1]!;
    return attributes;
  }
  // `dns:///host:port`, `dns://authority/host:port`, `ipv4:host:port`, `ipv6:[::1]:port`.
  const scheme = /^(dns|ipv4|ipv6):(?:\/\/[^/]*\/)?(.*)$/.exec(rest);
  if (scheme) {
    rest = scheme[2]!.split(',')[0]!;
  }
  const parsed = splitHostPort(rest);
  if (parsed) {
    attributes[ATTR_SERVER_ADDRESS] = parsed.host;
    attributes[ATTR_SERVER_PORT] = parsed.port ?? 443;
  }
  return attributes;
}

/** `network.peer.address` / `network.peer.port` from a grpc-js peer string (`127.0.0.1:50051`, `[::1]:50051`). */
export function grpcPeerAttributes(peer: unknown, target: Attributes): void {
  if (typeof peer !== 'string' || peer === '' || peer === 'unknown') {
    return;
  }
  const parsed = splitHostPort(peer);
  if (parsed) {
    target[ATTR_NETWORK_PEER_ADDRESS] = parsed.host;
    if (parsed.port !== undefined) {
      target[ATTR_NETWORK_PEER_PORT] = parsed.port;
    }
  }
}

/** The env variable and value that add the pre-1.39 RPC attribute names (`rpc/dup`, as the HTTP migration's `http/dup`). */
export const SEMCONV_STABILITY_OPT_IN = 'OTEL_SEMCONV_STABILITY_OPT_IN';

export function legacyRpcAttributesRequested(env: NodeJS.ProcessEnv = process.env): boolean {
  const raw = env[SEMCONV_STABILITY_OPT_IN];
  return typeof raw === 'string' && raw.split(',').some((value) => value.trim().toLowerCase() === 'rpc/dup');
}
