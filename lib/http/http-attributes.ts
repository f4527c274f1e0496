import type { Attributes } from '@opentelemetry/api';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import {
  ATTR_CLIENT_ADDRESS,
  ATTR_HTTP_REQUEST_HEADER_PREFIX,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_REQUEST_METHOD_ORIGINAL,
  ATTR_NETWORK_PEER_ADDRESS,
  ATTR_NETWORK_PEER_PORT,
  ATTR_NETWORK_PROTOCOL_VERSION,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_URL_PATH,
  ATTR_URL_QUERY,
  ATTR_URL_SCHEME,
  ATTR_USER_AGENT_ORIGINAL,
} from '../semconv.js';

/** The methods the HTTP semantic conventions know; anything else is reported as `_OTHER`. */
const KNOWN_METHODS = new Set(['CONNECT', 'DELETE', 'GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST', 'PUT', 'TRACE', 'QUERY']);

/** Query keys whose values the semantic conventions ask to replace with `REDACTED`. */
const SENSITIVE_QUERY_KEYS = new Set([
  'AWSAccessKeyId',
  'Signature',
  'sig',
  'X-Amz-Credential',
  'X-Amz-Security-Token',
  'X-Amz-Signature',
  'X-Goog-Signature',
]);

/** `{ method, original }`: the semconv method (`_OTHER` for unknown ones) and the raw one if different. */
/** `http.request.method` of a raw method: itself when it is a known method as sent (the common case, no allocation). */
export function httpMethod(raw: string | undefined): string {
  return raw !== undefined && KNOWN_METHODS.has(raw) ? raw : normalizeMethod(raw).method;
}

export function normalizeMethod(raw: string | undefined): { method: string; original?: string } {
  const upper = (raw ?? '').toUpperCase();
  if (KNOWN_METHODS.has(upper)) {
    return upper === raw ? { method: upper } : { method: upper, original: raw };
  }
  return { method: '_OTHER', original: raw ?? '' };
}

/** The span name of an HTTP server or client operation: `GET /orders/:id`, `GET`, or `HTTP` for `_OTHER`. */
export function httpSpanName(method: string, route?: string): string {
  const verb = method === '_OTHER' ? 'HTTP' : method;
  return route ? `${verb} ${route}` : verb;
}

/** Replaces the values of signature-like query keys with `REDACTED`; keeps everything else as sent. */
export function redactQuery(query: string): string {
  if (!query) {
    return query;
  }
  return query
    .split('&')
    .map(pair => {
      const eq = pair.indexOf('=');
      if (eq < 0) {
        return pair;
      }
      let key = pair.slice(0, eq);
      try {
        key = decodeURIComponent(key);
      } catch {
        // A malformed escape is not a sensitive key we know; keep the pair as sent.
      }
      return SENSITIVE_QUERY_KEYS.has(key) ? `${pair.slice(0, eq)}=REDACTED` : pair;
    })
    .join('&');
}

/** Removes `user:password@` from a URL, as the conventions require for `url.full`. */
export function redactUrl(url: URL): string {
  const copy = new URL(url.href);
  if (copy.username || copy.password) {
    copy.username = 'REDACTED';
    copy.password = 'REDACTED';
  }
  if (copy.search) {
    copy.search = redactQuery(copy.search.slice(1));
  }
  return copy.href;
}

function firstHeader(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** Splits a Host header (`example.com:8080`, `[::1]:3000`) into address and port. */
export function parseHost(host: string | undefined): { address?: string; port?: number } {
  if (!host) {
    return {};
  }
  const match = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(host.trim());
  if (!match) {
    return {};
  }
  const address = match[1]!.startsWith('[') ? match[1]!.slice(1, -1) : match[1];
  const port = match[2] === undefined ? undefined : Number(match[2]);
  return { address, port: port !== undefined && port > 0 && port < 65536 ? port : undefined };
}

/** The original client behind proxies (`Forwarded: for=`, then `X-Forwarded-For`), else undefined. */
function forwardedClient(headers: IncomingHttpHeaders): string | undefined {
  const forwarded = firstHeader(headers, 'forwarded');
  if (forwarded) {
    const match = /for="?\[?([^\]";,]+)/i.exec(forwarded);
    if (match) {
      return match[1];
    }
  }
  const xff = firstHeader(headers, 'x-forwarded-for');
  return xff ? xff.split(',')[0]!.trim() || undefined : undefined;
}

/** Whether a request carries a body (the conventions of RFC 9112 §6.3: a length or a transfer coding). */
export function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** The attributes the conventions require at span start, for samplers: method, path, scheme. */
export function samplingAttributes(req: IncomingMessage, method: string = httpMethod(req.method)): Attributes {
  const rawUrl = req.url ?? '/';
  const queryAt = rawUrl.indexOf('?');
  const encrypted = (req.socket as { encrypted?: boolean } | undefined)?.encrypted === true;
  return {
    [ATTR_HTTP_REQUEST_METHOD]: method,
    [ATTR_URL_PATH]: (queryAt < 0 ? rawUrl : rawUrl.slice(0, queryAt)) || '/',
    [ATTR_URL_SCHEME]: encrypted ? 'https' : 'http',
  };
}

/**
 * The attributes of an HTTP SERVER span known when the request arrives, but for those
 * {@link samplingAttributes} gave at start: only worth computing for a span that records.
 */
export function requestDetailAttributes(req: IncomingMessage, captureHeaders: readonly string[]): Attributes {
  const rawUrl = req.url ?? '/';
  const queryAt = rawUrl.indexOf('?');
  const query = queryAt < 0 ? '' : rawUrl.slice(queryAt + 1);
  const host = parseHost(firstHeader(req.headers, 'host'));
  const peerAddress = req.socket?.remoteAddress;

  const attributes: Attributes = {};
  if (req.method === undefined || !KNOWN_METHODS.has(req.method)) {
    attributes[ATTR_HTTP_REQUEST_METHOD_ORIGINAL] = req.method ?? '';
  }
  if (query) {
    attributes[ATTR_URL_QUERY] = redactQuery(query);
  }
  if (host.address) {
    attributes[ATTR_SERVER_ADDRESS] = host.address;
  }
  const serverPort = host.port ?? req.socket?.localPort;
  if (serverPort) {
    attributes[ATTR_SERVER_PORT] = serverPort;
  }
  const client = forwardedClient(req.headers) ?? peerAddress;
  if (client) {
    attributes[ATTR_CLIENT_ADDRESS] = client;
  }
  if (peerAddress) {
    attributes[ATTR_NETWORK_PEER_ADDRESS] = peerAddress;
  }
  if (req.socket?.remotePort) {
    attributes[ATTR_NETWORK_PEER_PORT] = req.socket.remotePort;
  }
  if (req.httpVersion) {
    attributes[ATTR_NETWORK_PROTOCOL_VERSION] = req.httpVersion;
  }
  const userAgent = firstHeader(req.headers, 'user-agent');
  if (userAgent) {
    attributes[ATTR_USER_AGENT_ORIGINAL] = userAgent;
  }
  return capturedRequestHeaders(req, captureHeaders, attributes);
}

/** `http.request.header.<name>` of the request headers asked for (lower-case names), added to `attributes`. */
export function capturedRequestHeaders(req: IncomingMessage, captureHeaders: readonly string[], attributes: Attributes = {}): Attributes {
  for (const name of captureHeaders) {
    const value = req.headers[name];
    if (value !== undefined) {
      attributes[ATTR_HTTP_REQUEST_HEADER_PREFIX + name] = Array.isArray(value) ? value : [value];
    }
  }
  return attributes;
}
