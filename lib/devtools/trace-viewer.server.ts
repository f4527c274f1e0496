import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { gunzip, inflate } from 'node:zlib';
import { diag } from '@opentelemetry/api';
import { decodeOtlpTraceRequest, OtlpDecodeError } from './otlp-json.decoder.js';
import { TraceStore, DEFAULT_MAX_SPANS_PER_TRACE, DEFAULT_MAX_TRACES } from './trace.store.js';
import { viewerPage } from './viewer.page.js';
import { viewerRequestFailed } from '../otel.messages.js';

const gunzipAsync = promisify(gunzip);
const inflateAsync = promisify(inflate);

export interface TraceViewerOptions {
  /** TCP port; `0` picks a free one. Default 16686 (Jaeger UI's, which this replaces in development). */
  port?: number;
  /**
   * Interface to listen on. Default `'127.0.0.1'`: only this machine can send spans or read them.
   * Use `'0.0.0.0'` to receive from containers; traces are then readable by anyone who can reach the port.
   */
  host?: string;
  /** Traces kept in memory; past it, the trace that received a span least recently is dropped whole. Default 200. */
  maxTraces?: number;
  /** Spans kept per trace; later spans of that trace are refused (reported as OTLP partial success). Default 2000. */
  maxSpansPerTrace?: number;
  /** Largest OTLP request body accepted, in bytes, before and after decompression. Default 16 MiB. */
  maxBodyBytes?: number;
}

export interface TraceViewer {
  /** The web page, e.g. `http://127.0.0.1:16686/`. */
  readonly url: string;
  /** Where exporters send spans (the exporter's `url`), e.g. `http://127.0.0.1:16686/v1/traces`. */
  readonly otlpUrl: string;
  /** The base URL, for `OTEL_EXPORTER_OTLP_ENDPOINT` (which appends `/v1/traces`). */
  readonly endpoint: string;
  readonly port: number;
  readonly host: string;
  /** The received traces (read them in tests; the page and the JSON API read the same store). */
  readonly store: TraceStore;
  /** Stops listening and drops open connections. Idempotent. */
  close(): Promise<void>;
}

export const DEFAULT_VIEWER_PORT = 16686;
export const DEFAULT_VIEWER_HOST = '127.0.0.1';
const DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024;
const TRACES_PATH = '/v1/traces';
const TRACE_ID_PATH = /^\/api\/traces\/([0-9a-fA-F]{32})$/;

/** gRPC status codes, which OTLP/HTTP uses in its `google.rpc.Status` error bodies. */
const RPC_INVALID_ARGUMENT = 3;
const RPC_RESOURCE_EXHAUSTED = 8;
const RPC_UNIMPLEMENTED = 12;
const RPC_INTERNAL = 13;

class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

function positiveInteger(value: number | undefined, fallback: number, name: string, allowZero = false): number {
  if (value === undefined) {
    return fallback;
  }
  if (!Number.isSafeInteger(value) || value < (allowZero ? 0 : 1)) {
    throw new RangeError(`startTraceViewer: ${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got ${String(value)}.`);
  }
  return value;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * A page bound to loopback only answers requests addressed to a loopback name, so a web site
 * cannot read the traces through DNS rebinding (a name of its own that resolves to 127.0.0.1).
 */
function hostAllowed(hostHeader: string | undefined, boundHost: string): boolean {
  if (!isLoopback(boundHost)) {
    return true;
  }
  if (!hostHeader) {
    return false;
  }
  const name = hostHeader.startsWith('[') ? hostHeader.slice(1, hostHeader.indexOf(']')) : hostHeader.replace(/:\d+$/, '');
  return isLoopback(name) || name.endsWith('.localhost') || name === boundHost;
}

function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '') {
    return '127.0.0.1';
  }
  if (host === '::') {
    return '[::1]';
  }
  return host.includes(':') ? `[${host}]` : host;
}

function readBody(request: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        // Keep reading (and discarding) so the answer reaches the client, which is still sending.
        tooLarge = true;
        chunks.length = 0;
        return;
      }
      chunks.push(chunk);
    });
    request.on('end', () =>
      tooLarge ? reject(new HttpError(413, `The request body is larger than ${limit} bytes.`)) : resolve(Buffer.concat(chunks)),
    );
    request.on('error', reject);
  });
}

async function decompress(body: Buffer, encoding: string | undefined, limit: number): Promise<Buffer> {
  try {
    switch (encoding) {
      case undefined:
      case '':
      case 'identity':
        return body;
      case 'gzip':
      case 'x-gzip':
        return await gunzipAsync(body, { maxOutputLength: limit });
      case 'deflate':
        return await inflateAsync(body, { maxOutputLength: limit });
      default:
        throw new HttpError(415, `Unsupported content-encoding ${JSON.stringify(encoding)}: send gzip, deflate or none.`);
    }
  } catch (error) {
    if (error instanceof HttpError) {
      throw error;
    }
    if ((error as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
      throw new HttpError(413, `The decompressed request body is larger than ${limit} bytes.`);
    }
    throw new HttpError(400, `The ${encoding} body cannot be decompressed: ${(error as Error).message}`);
  }
}

/**
 * Starts the trace viewer: one HTTP server that receives OTLP/HTTP JSON at `POST /v1/traces`,
 * keeps the last `maxTraces` traces in memory, and serves the page at `/` and its JSON API at
 * `/api/traces` and `/api/traces/:traceId`.
 */
export async function startTraceViewer(options: TraceViewerOptions = {}): Promise<TraceViewer> {
  const port = positiveInteger(options.port, DEFAULT_VIEWER_PORT, 'port', true);
  if (port > 65535) {
    throw new RangeError(`startTraceViewer: port must be at most 65535, got ${port}.`);
  }
  const host = options.host ?? DEFAULT_VIEWER_HOST;
  const maxBodyBytes = positiveInteger(options.maxBodyBytes, DEFAULT_MAX_BODY_BYTES, 'maxBodyBytes');
  const store = new TraceStore({
    maxTraces: positiveInteger(options.maxTraces, DEFAULT_MAX_TRACES, 'maxTraces'),
    maxSpansPerTrace: positiveInteger(options.maxSpansPerTrace, DEFAULT_MAX_SPANS_PER_TRACE, 'maxSpansPerTrace'),
  });
  const page = viewerPage();

  const send = (response: ServerResponse, statusCode: number, body: string, contentType: string, headers: Record<string, string> = {}): void => {
    response.writeHead(statusCode, {
      'content-type': contentType,
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      ...headers,
    });
    response.end(response.req.method === 'HEAD' ? undefined : body);
  };
  const json = (response: ServerResponse, statusCode: number, body: unknown): void =>
    send(response, statusCode, JSON.stringify(body), 'application/json; charset=utf-8');
  /** OTLP/HTTP answers a refused request with a `google.rpc.Status`. */
  const rpcError = (statusCode: number, message: string): { code: number; message: string } => ({
    code:
      statusCode === 413 ? RPC_RESOURCE_EXHAUSTED : statusCode === 415 || statusCode === 405 ? RPC_UNIMPLEMENTED : statusCode >= 500 ? RPC_INTERNAL : RPC_INVALID_ARGUMENT,
    message,
  });

  const receive = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    if (request.method !== 'POST') {
      throw new HttpError(405, `${TRACES_PATH} accepts POST only.`);
    }
    const contentType = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (contentType === 'application/x-protobuf') {
      throw new HttpError(
        415,
        'This trace viewer reads OTLP/HTTP JSON only: use @opentelemetry/exporter-trace-otlp-http (JSON by default) or set OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json.',
      );
    }
    if (contentType !== 'application/json') {
      throw new HttpError(415, `Unsupported content-type ${JSON.stringify(contentType)}: send application/json (OTLP/HTTP JSON).`);
    }
    const raw = await readBody(request, maxBodyBytes);
    const body = await decompress(raw, request.headers['content-encoding']?.trim().toLowerCase(), maxBodyBytes);
    let spans;
    try {
      spans = decodeOtlpTraceRequest(JSON.parse(body.toString('utf8')));
    } catch (error) {
      if (error instanceof SyntaxError || error instanceof OtlpDecodeError) {
        throw new HttpError(400, `Malformed OTLP/JSON trace request: ${error.message}`);
      }
      throw error;
    }
    const result = store.add(spans);
    // An empty ExportTraceServiceResponse means "all accepted"; spans over the per-trace cap are a partial success.
    json(
      response,
      200,
      result.rejected === 0
        ? {}
        : {
            partialSuccess: {
              rejectedSpans: result.rejected,
              errorMessage: `${result.rejected} span(s) refused: a trace holds at most ${store.maxSpansPerTrace} spans in this viewer.`,
            },
          },
    );
  };

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const path = new URL(request.url ?? '/', 'http://viewer').pathname;
    if (!hostAllowed(request.headers.host, host)) {
      request.resume();
      throw new HttpError(403, `This trace viewer listens on ${host} and only answers requests addressed to localhost or ${host}.`);
    }
    if (path === TRACES_PATH) {
      return receive(request, response);
    }
    request.resume();
    const method = request.method ?? 'GET';
    const reading = method === 'GET' || method === 'HEAD';
    if (path === '/' || path === '/index.html' || path.startsWith('/trace/')) {
      if (!reading) {
        throw new HttpError(405, `${path} accepts GET only.`);
      }
      return send(response, 200, page.html, 'text/html; charset=utf-8', {
        'content-security-policy': page.contentSecurityPolicy,
        'referrer-policy': 'no-referrer',
        'x-frame-options': 'DENY',
      });
    }
    if (path === '/api/traces') {
      if (method === 'DELETE') {
        store.clear();
        response.writeHead(204, { 'cache-control': 'no-store' }).end();
        return;
      }
      if (!reading) {
        throw new HttpError(405, '/api/traces accepts GET and DELETE only.');
      }
      return json(response, 200, store.list());
    }
    const match = TRACE_ID_PATH.exec(path);
    if (match) {
      if (!reading) {
        throw new HttpError(405, `${path} accepts GET only.`);
      }
      const detail = store.get(match[1]!.toLowerCase());
      if (!detail) {
        throw new HttpError(404, `Trace ${match[1]} is not (or no longer) in this viewer.`);
      }
      return json(response, 200, detail);
    }
    if (path === '/favicon.ico') {
      response.writeHead(204).end();
      return;
    }
    throw new HttpError(404, `Nothing at ${path}: the page is at /, spans go to POST ${TRACES_PATH}.`);
  };

  const server: Server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      // Nothing a client sends may stop the viewer: every failure becomes an answer.
      const statusCode = error instanceof HttpError ? error.statusCode : 500;
      if (statusCode === 500) {
        diag.error(viewerRequestFailed(), error);
      }
      if (response.headersSent) {
        response.destroy();
        return;
      }
      const message = error instanceof Error ? error.message : String(error);
      const headers = statusCode === 405 ? { allow: new URL(request.url ?? '/', 'http://viewer').pathname === TRACES_PATH ? 'POST' : 'GET, HEAD' } : undefined;
      send(response, statusCode, JSON.stringify(rpcError(statusCode, message)), 'application/json; charset=utf-8', headers);
    });
  });
  // A malformed request line or header must not reach the process's error handler.
  server.on('clientError', (_error, socket) => {
    if (socket.writable) {
      socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    } else {
      socket.destroy();
    }
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException): void => {
      reject(
        error.code === 'EADDRINUSE'
          ? new Error(
              `The trace viewer cannot listen on ${host}:${port}: the port is in use (by Jaeger, or another viewer?). Choose another port (port: 0 picks a free one).`,
            )
          : error,
      );
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const actualPort = (server.address() as AddressInfo).port;
  const endpoint = `http://${urlHost(host)}:${actualPort}`;
  let closing: Promise<void> | undefined;

  return {
    url: `${endpoint}/`,
    otlpUrl: `${endpoint}${TRACES_PATH}`,
    endpoint,
    port: actualPort,
    host,
    store,
    close: () => {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        // Exporters and browsers keep connections alive; without this close() waits for their timeouts.
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
