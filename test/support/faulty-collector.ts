import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { decodeJsonTraceRequest, type ReceivedSpan } from './otlp-receiver.js';

/**
 * An OTLP/HTTP collector for fault tests: a real `node:http` server on 127.0.0.1 whose behaviour
 * can be switched while an application exports to it.
 */
export type CollectorMode =
  /** Decodes the OTLP/JSON request, keeps its spans, answers `200 {}`. */
  | { kind: 'ok' }
  /** Nothing listens on the port: connections are refused (ECONNREFUSED). */
  | { kind: 'refuse' }
  /** Accepts the connection and reads the request, never answers. */
  | { kind: 'hang' }
  /** Answers like `ok`, after `delayMs`. */
  | { kind: 'slow'; delayMs: number }
  /**
   * Answers `status` (with `Retry-After` when given), for the next `times` requests (default:
   * all), then behaves like `ok`.
   */
  | { kind: 'status'; status: number; retryAfter?: string; times?: number }
  /** Sends 200 headers, then one byte of body every `intervalMs`, never ending the response. */
  | { kind: 'trickle'; intervalMs: number };

export interface CollectorRequest {
  /** `Date.now()` when the request arrived. */
  at: number;
  /** The mode it was handled in. */
  mode: CollectorMode['kind'];
  /** The status answered; undefined while unanswered (hang, trickle, slow before its delay). */
  status?: number;
  /** Spans accepted from this request (answered 200 on a live socket). */
  accepted: number;
}

export interface FaultyCollector {
  /** `http://127.0.0.1:<port>/v1/traces`. */
  readonly url: string;
  /** `http://127.0.0.1:<port>`, for `OTEL_EXPORTER_OTLP_ENDPOINT`. */
  readonly endpoint: string;
  readonly port: number;
  /** Spans accepted so far (live array). */
  readonly spans: ReceivedSpan[];
  /** Requests so far, refused and unanswered ones included (live array). */
  readonly requests: CollectorRequest[];
  mode(): CollectorMode;
  /** Switches the behaviour. `refuse` closes the listening socket; leaving it listens again on the same port. */
  setMode(mode: CollectorMode): Promise<void>;
  /** Resolves once `predicate` holds for the accepted spans (checked on every accepted request). */
  waitFor(predicate: (spans: readonly ReceivedSpan[]) => boolean, timeoutMs?: number): Promise<void>;
  reset(): void;
  close(): Promise<void>;
}

const TRACES_PATH = '/v1/traces';

export async function startFaultyCollector(): Promise<FaultyCollector> {
  const spans: ReceivedSpan[] = [];
  const requests: CollectorRequest[] = [];
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const waiters = new Set<() => void>();
  let current: CollectorMode = { kind: 'ok' };
  let statusAnswers = 0;
  let listening = false;

  const later = (ms: number, fn: () => void): void => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timers.add(timer);
  };

  const accept = (record: CollectorRequest, body: Buffer, response: ServerResponse): void => {
    if (response.destroyed || response.socket?.destroyed !== false) {
      // The exporter gave up (timeout) before the answer: nothing was delivered.
      return;
    }
    let received: ReceivedSpan[];
    try {
      received = decodeJsonTraceRequest(JSON.parse(body.toString('utf8')));
    } catch (error) {
      record.status = 400;
      response.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ code: 3, message: String(error) }));
      return;
    }
    record.status = 200;
    record.accepted = received.length;
    spans.push(...received);
    response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    waiters.forEach((check) => check());
  };

  const handle = (request: IncomingMessage, response: ServerResponse): void => {
    const mode = current;
    const record: CollectorRequest = { at: Date.now(), mode: mode.kind, accepted: 0 };
    requests.push(record);
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('error', () => undefined);
    request.on('end', () => {
      const body = Buffer.concat(chunks);
      if ((request.url ?? '').split('?')[0] !== TRACES_PATH || request.method !== 'POST') {
        record.status = 404;
        response.writeHead(404).end();
        return;
      }
      switch (mode.kind) {
        case 'ok':
        case 'refuse':
          return accept(record, body, response);
        case 'hang':
          return;
        case 'slow':
          return later(mode.delayMs, () => accept(record, body, response));
        case 'status': {
          if (mode.times !== undefined && statusAnswers >= mode.times) {
            return accept(record, body, response);
          }
          statusAnswers++;
          record.status = mode.status;
          const headers: Record<string, string> = { 'content-type': 'application/json' };
          if (mode.retryAfter !== undefined) {
            headers['retry-after'] = mode.retryAfter;
          }
          response.writeHead(mode.status, headers).end(JSON.stringify({ code: 14, message: `test collector answers ${mode.status}` }));
          return;
        }
        case 'trickle': {
          response.writeHead(200, { 'content-type': 'application/json' });
          const drip = (): void => {
            if (!response.destroyed && current.kind === 'trickle') {
              response.write(' ');
              later(mode.intervalMs, drip);
            }
          };
          drip();
          return;
        }
      }
    });
  };

  const server = createServer(handle);
  server.keepAliveTimeout = 60_000;
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  const listen = (port: number): Promise<void> =>
    new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        listening = true;
        resolve();
      });
    });
  const stopListening = (): Promise<void> =>
    new Promise((resolve) => {
      listening = false;
      server.close(() => resolve());
      // Open (keep-alive or hanging) connections would keep it from closing, and keep the
      // exporter talking to a "down" collector.
      sockets.forEach((socket) => socket.destroy());
    });
  const dropOpenConnections = (): void => {
    timers.forEach((timer) => clearTimeout(timer));
    timers.clear();
    sockets.forEach((socket) => socket.destroy());
  };

  await listen(0);
  const { port } = server.address() as AddressInfo;
  const endpoint = `http://127.0.0.1:${port}`;

  return {
    url: `${endpoint}${TRACES_PATH}`,
    endpoint,
    port,
    spans,
    requests,
    mode: () => current,
    async setMode(mode) {
      const previous = current;
      current = mode;
      statusAnswers = 0;
      if (previous.kind === 'hang' || previous.kind === 'trickle') {
        // What was held open stays unanswered: the exporter sees a reset connection, as when a
        // stuck collector is restarted. (A slow collector still answers what it was sent.)
        dropOpenConnections();
      }
      if (mode.kind === 'refuse' && listening) {
        await stopListening();
      } else if (mode.kind !== 'refuse' && !listening) {
        await listen(port);
      }
    },
    waitFor(predicate, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (predicate(spans)) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve();
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`Timed out after ${timeoutMs} ms; ${spans.length} span(s) accepted in ${requests.length} request(s).`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    reset() {
      spans.length = 0;
      requests.length = 0;
    },
    async close() {
      dropOpenConnections();
      if (listening) {
        await stopListening();
      }
    },
  };
}
