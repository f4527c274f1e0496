import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync, inflateSync } from 'node:zlib';
import { SPAN_KIND_NAMES, STATUS_CODE_NAMES, type ViewerSpan as ReceivedSpan, type ViewerValue as ReceivedValue } from '../../lib/devtools/devtools.interfaces.js';
import { decodeOtlpTraceRequest, OtlpDecodeError } from '../../lib/devtools/otlp-json.decoder.js';
import { decodeJsonMetricsRequest, describeMetricPoints, type ReceivedMetricPoint } from './otlp-metrics.js';

/**
 * A minimal OTLP/HTTP trace collector for end-to-end tests: a real HTTP server that decodes what
 * real exporters send and keeps it as flat spans.
 *
 * Accepts `POST /v1/traces` with `application/json` (the default of exporter-trace-otlp-http),
 * optionally gzip/deflate encoded, and answers `200 {}` like a collector. `application/x-protobuf`
 * is answered with 415: @opentelemetry/otlp-transformer only exposes encoders for requests (its
 * protobuf reader is internal and only decodes responses), and protobufjs is not installed.
 */

// The spans are decoded by the library's own OTLP/JSON decoder (the trace viewer's), so this
// receiver and `otel-nest/devtools` read what exporters send the same way.
export type {
  ViewerAttributes as ReceivedAttributes,
  ViewerEvent as ReceivedEvent,
  ViewerLink as ReceivedLink,
  ViewerSpan as ReceivedSpan,
  ViewerValue as ReceivedValue,
} from '../../lib/devtools/devtools.interfaces.js';

export interface ReceivedRequest {
  method: string;
  /** Path and query as sent. */
  path: string;
  headers: IncomingHttpHeaders;
  /** `content-type` without parameters, lower case; `''` when absent. */
  contentType: string;
  contentEncoding?: string;
  /** The body after decompression. */
  body: Buffer;
  /** The status code this receiver answered with. */
  statusCode: number;
  /** Spans decoded from this request. */
  spanCount: number;
  /** Why the request was refused, when it was. */
  error?: string;
}

export type ReceivedSpanPredicate = (span: ReceivedSpan) => boolean;

export interface OtlpReceiver {
  /** The traces URL: `http://127.0.0.1:<port>/v1/traces` (the exporter's `url`). */
  url: string;
  /** The base URL, for `OTEL_EXPORTER_OTLP_ENDPOINT` (which appends `/v1/traces`). */
  endpoint: string;
  port: number;
  /** Every span received so far, in arrival order (live array). */
  spans: ReceivedSpan[];
  /** Every request received so far, refused ones included (live array). */
  requests: ReceivedRequest[];
  /**
   * With a count: resolves with a copy of all received spans once there are at least `count`.
   * With a predicate (called per span): resolves with the matching spans, in arrival order, once
   * at least one matches; a predicate that throws counts as "no match yet". Rejects after
   * `timeoutMs` (default 5000) with the received spans as a tree.
   */
  waitForSpans(condition: number | ReceivedSpanPredicate, timeoutMs?: number): Promise<ReceivedSpan[]>;
  /** Metrics URL: `http://127.0.0.1:<port>/v1/metrics` (OTLP/JSON, `POST`). */
  metricsUrl: string;
  /** Every metric data point received at /v1/metrics, in arrival order (live array; see otlp-metrics.ts). */
  metricPoints: ReceivedMetricPoint[];
  /**
   * Resolves with the matching points once at least one matches (a throwing predicate counts as no
   * match); rejects after `timeoutMs` (default 5000) listing the latest point of every series.
   */
  waitForMetrics(predicate: (point: ReceivedMetricPoint) => boolean, timeoutMs?: number): Promise<ReceivedMetricPoint[]>;
  /** Forgets the received spans, metric points and requests. */
  reset(): void;
  close(): Promise<void>;
}

const TRACES_PATH = '/v1/traces';
const METRICS_PATH = '/v1/metrics';
const KIND_NAMES = SPAN_KIND_NAMES;
const STATUS_NAMES = STATUS_CODE_NAMES;

/** Decodes an OTLP/JSON `ExportTraceServiceRequest` into flat spans; throws on malformed input. */
export function decodeJsonTraceRequest(request: unknown): ReceivedSpan[] {
  return decodeOtlpTraceRequest(request);
}

function shortValue(value: ReceivedValue): string {
  const rendered = value instanceof Uint8Array ? `<${value.length} bytes>` : JSON.stringify(value);
  return rendered.length > 40 ? `${rendered.slice(0, 39)}…` : rendered;
}

/** The received spans as an indented tree per trace: `name [KIND] STATUS {attributes}`. */
export function receivedSpanTree(spans: readonly ReceivedSpan[]): string {
  if (spans.length === 0) {
    return '(no spans)';
  }
  const ordered = [...spans].sort((a, b) =>
    BigInt(a.startTimeUnixNano) < BigInt(b.startTimeUnixNano) ? -1 : BigInt(a.startTimeUnixNano) > BigInt(b.startTimeUnixNano) ? 1 : 0,
  );
  const lines: string[] = [];
  const traceIds = [...new Set(ordered.map((span) => span.traceId))];
  for (const traceId of traceIds) {
    lines.push(`trace ${traceId}`);
    const inTrace = ordered.filter((span) => span.traceId === traceId);
    const ids = new Set(inTrace.map((span) => span.spanId));
    const printed = new Set<ReceivedSpan>();
    const visit = (span: ReceivedSpan, depth: number): void => {
      if (printed.has(span)) {
        return;
      }
      printed.add(span);
      const kind = KIND_NAMES[span.kind] ?? `kind ${span.kind}`;
      const status = `${STATUS_NAMES[span.status.code] ?? span.status.code}${span.status.message ? ` ${JSON.stringify(span.status.message)}` : ''}`;
      const attrs = Object.entries(span.attributes).map(([key, value]) => `${key}=${shortValue(value)}`);
      let line = `${'  '.repeat(depth + 1)}${span.name} [${kind}] ${status}`;
      if (attrs.length > 0) {
        line += ` {${attrs.join(', ')}}`;
      }
      if (depth === 0 && span.parentSpanId) {
        line += ` (parent ${span.parentSpanId}, not received)`;
      }
      lines.push(line);
      for (const child of inTrace.filter((candidate) => candidate.parentSpanId === span.spanId)) {
        visit(child, depth + 1);
      }
    };
    for (const top of inTrace.filter((span) => !span.parentSpanId || !ids.has(span.parentSpanId))) {
      visit(top, 0);
    }
  }
  return lines.join('\n');
}

function readBody(request: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => resolve(Buffer.concat(chunks)));
    request.on('error', reject);
  });
}

function decompress(body: Buffer, encoding: string | undefined): Buffer {
  switch (encoding) {
    case undefined:
    case '':
    case 'identity':
      return body;
    case 'gzip':
      return gunzipSync(body);
    case 'deflate':
      return inflateSync(body);
    default:
      throw new OtlpDecodeError(`Unsupported content-encoding ${JSON.stringify(encoding)}.`);
  }
}

interface Waiter {
  check: () => void;
  cancel: (reason: Error) => void;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const metricPoints: ReceivedMetricPoint[] = [];
  const requests: ReceivedRequest[] = [];
  const waiters = new Set<Waiter>();

  const notify = (): void => {
    for (const waiter of waiters) {
      waiter.check();
    }
  };

  const answer = (response: ServerResponse, statusCode: number, body: unknown): void => {
    const payload = JSON.stringify(body);
    response.writeHead(statusCode, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(payload),
    });
    response.end(payload);
  };

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const raw = await readBody(request);
    const contentType = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    const contentEncoding = request.headers['content-encoding']?.trim().toLowerCase();
    const record: ReceivedRequest = {
      method: request.method ?? '',
      path: request.url ?? '',
      headers: request.headers,
      contentType,
      body: raw,
      statusCode: 200,
      spanCount: 0,
    };
    if (contentEncoding) {
      record.contentEncoding = contentEncoding;
    }
    requests.push(record);

    const refuse = (statusCode: number, message: string): void => {
      record.statusCode = statusCode;
      record.error = message;
      // A collector answers a refused OTLP/JSON request with a google.rpc.Status.
      answer(response, statusCode, { code: statusCode === 415 ? 12 : 3, message });
    };

    if (record.path.split('?')[0] === METRICS_PATH && record.method === 'POST' && contentType === 'application/json') {
      try {
        record.body = decompress(raw, contentEncoding);
        metricPoints.push(...decodeJsonMetricsRequest(JSON.parse(record.body.toString('utf8'))));
      } catch (error) {
        return refuse(400, `Malformed OTLP/JSON metrics request: ${error instanceof Error ? error.message : String(error)}`);
      }
      answer(response, 200, {});
      notify();
      return;
    }
    if (record.path.split('?')[0] !== TRACES_PATH) {
      return refuse(404, `Only ${TRACES_PATH} is served by this test receiver.`);
    }
    if (record.method !== 'POST') {
      response.setHeader('allow', 'POST');
      return refuse(405, `${TRACES_PATH} accepts POST only.`);
    }
    if (contentType === 'application/x-protobuf') {
      return refuse(
        415,
        'OTLP/protobuf is not decoded by this test receiver (@opentelemetry/otlp-transformer exposes no request decoder); send OTLP/JSON.',
      );
    }
    if (contentType !== 'application/json') {
      return refuse(415, `Unsupported content-type ${JSON.stringify(contentType)}; send application/json.`);
    }
    try {
      record.body = decompress(raw, contentEncoding);
      const received = decodeJsonTraceRequest(JSON.parse(record.body.toString('utf8')));
      record.spanCount = received.length;
      spans.push(...received);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      return refuse(400, `Malformed OTLP/JSON trace request: ${message}`);
    }
    // An empty ExportTraceServiceResponse: everything accepted, no partial success.
    answer(response, 200, {});
    notify();
  };

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      if (!response.headersSent) {
        answer(response, 500, { code: 13, message: String(error) });
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const endpoint = `http://127.0.0.1:${port}`;

  const waitForSpans = (condition: number | ReceivedSpanPredicate, timeoutMs = 5000): Promise<ReceivedSpan[]> => {
    // Undefined means "not yet"; otherwise the spans to resolve with.
    const select: (received: ReceivedSpan[]) => ReceivedSpan[] | undefined =
      typeof condition === 'number'
        ? (received) => (received.length >= condition ? [...received] : undefined)
        : (received) => {
            const matching = received.filter(condition);
            return matching.length > 0 ? matching : undefined;
          };
    const description =
      typeof condition === 'number' ? `at least ${condition} span(s)` : 'a span matching the predicate';
    return new Promise((resolve, reject) => {
      let lastError: unknown;
      const waiter: Waiter = {
        check: () => {
          try {
            const selected = select(spans);
            if (selected) {
              waiters.delete(waiter);
              clearTimeout(timer);
              resolve(selected);
            }
          } catch (error) {
            lastError = error;
          }
        },
        cancel: (reason) => {
          waiters.delete(waiter);
          clearTimeout(timer);
          reject(reason);
        },
      };
      const timer = setTimeout(() => {
        waiters.delete(waiter);
        let message =
          `Timed out after ${timeoutMs} ms waiting for ${description} at the OTLP receiver; ` +
          `${spans.length} span(s) received in ${requests.length} request(s):\n${receivedSpanTree(spans)}`;
        if (lastError !== undefined) {
          message += `\n\nLast check failed with: ${lastError instanceof Error ? lastError.message : String(lastError)}`;
        }
        reject(new Error(message));
      }, timeoutMs);
      waiters.add(waiter);
      waiter.check();
    });
  };

  const waitForMetrics = (predicate: (point: ReceivedMetricPoint) => boolean, timeoutMs = 5000): Promise<ReceivedMetricPoint[]> =>
    new Promise((resolve, reject) => {
      const waiter: Waiter = {
        check: () => {
          let matching: ReceivedMetricPoint[] = [];
          try {
            matching = metricPoints.filter(predicate);
          } catch {
            // Not yet.
          }
          if (matching.length > 0) {
            waiters.delete(waiter);
            clearTimeout(timer);
            resolve(matching);
          }
        },
        cancel: (reason) => {
          waiters.delete(waiter);
          clearTimeout(timer);
          reject(reason);
        },
      };
      const timer = setTimeout(() => {
        waiters.delete(waiter);
        reject(new Error(`Timed out after ${timeoutMs} ms waiting for a matching metric point; received:\n${describeMetricPoints(metricPoints)}`));
      }, timeoutMs);
      waiters.add(waiter);
      waiter.check();
    });

  return {
    url: `${endpoint}${TRACES_PATH}`,
    metricsUrl: `${endpoint}${METRICS_PATH}`,
    metricPoints,
    waitForMetrics,
    endpoint,
    port,
    spans,
    requests,
    waitForSpans,
    reset: () => {
      spans.length = 0;
      metricPoints.length = 0;
      requests.length = 0;
    },
    close: async () => {
      for (const waiter of waiters) {
        waiter.cancel(new Error('The OTLP receiver was closed while spans were awaited.'));
      }
      // Exporters keep connections alive; without this, close() would wait for them to time out.
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
    },
  };
}
