import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync, inflateSync } from 'node:zlib';

/**
 * A minimal OTLP/HTTP trace collector for end-to-end tests: a real HTTP server that decodes what
 * real exporters send and keeps it as flat spans.
 *
 * Accepts `POST /v1/traces` with `application/json` (the default of exporter-trace-otlp-http),
 * optionally gzip/deflate encoded, and answers `200 {}` like a collector. `application/x-protobuf`
 * is answered with 415: @opentelemetry/otlp-transformer only exposes encoders for requests (its
 * protobuf reader is internal and only decodes responses), and protobufjs is not installed.
 */

/** An OTLP AnyValue, decoded: kvlist becomes an object, bytes a Uint8Array, an empty value `null`. */
export type ReceivedValue =
  | string
  | number
  | boolean
  | null
  | Uint8Array
  | ReceivedValue[]
  | { [key: string]: ReceivedValue };

export type ReceivedAttributes = Record<string, ReceivedValue>;

export interface ReceivedLink {
  traceId: string;
  spanId: string;
  traceState?: string;
  attributes: ReceivedAttributes;
}

export interface ReceivedEvent {
  name: string;
  /** Nanoseconds since the epoch, as a decimal string. */
  timeUnixNano: string;
  attributes: ReceivedAttributes;
}

export interface ReceivedSpan {
  /** 32 lower-case hex digits. */
  traceId: string;
  /** 16 lower-case hex digits. */
  spanId: string;
  /** Undefined for a root span. */
  parentSpanId?: string;
  traceState?: string;
  name: string;
  /** As in OTLP: 0 UNSPECIFIED, 1 INTERNAL, 2 SERVER, 3 CLIENT, 4 PRODUCER, 5 CONSUMER (API `SpanKind` + 1). */
  kind: number;
  /** Nanoseconds since the epoch, as a decimal string. */
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: ReceivedAttributes;
  /** Code as in OTLP and the API: 0 UNSET, 1 OK, 2 ERROR; message `''` when none. */
  status: { code: number; message: string };
  links: ReceivedLink[];
  events: ReceivedEvent[];
  resource: ReceivedAttributes;
  scope: { name: string; version?: string };
}

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
  /** Forgets the received spans and requests. */
  reset(): void;
  close(): Promise<void>;
}

const TRACES_PATH = '/v1/traces';
const KIND_NAMES = ['UNSPECIFIED', 'INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER'];
const STATUS_NAMES = ['UNSET', 'OK', 'ERROR'];

type Json = Record<string, unknown>;

class BadRequest extends Error {}

function camelToSnake(key: string): string {
  return key.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
}

/** Proto3 JSON parsers accept the lowerCamelCase name and the original snake_case field name. */
function field(message: unknown, key: string): unknown {
  if (message === null || typeof message !== 'object') {
    return undefined;
  }
  const record = message as Json;
  return record[key] ?? record[camelToSnake(key)];
}

function list(message: unknown, key: string): unknown[] {
  const value = field(message, key);
  if (value === undefined || value === null) {
    return [];
  }
  if (!Array.isArray(value)) {
    throw new BadRequest(`"${key}" must be an array.`);
  }
  return value;
}

function text(message: unknown, key: string): string | undefined {
  const value = field(message, key);
  return value === undefined || value === null ? undefined : String(value);
}

/** OTLP/JSON ids are hex; base64 (plain proto3 JSON) is accepted too. Empty means absent. */
function id(message: unknown, key: string, bytes: 8 | 16): string | undefined {
  const value = text(message, key);
  if (!value) {
    return undefined;
  }
  if (value.length === bytes * 2 && /^[0-9a-f]+$/i.test(value)) {
    return value.toLowerCase();
  }
  const decoded = Buffer.from(value, 'base64');
  if (decoded.length === bytes) {
    return decoded.toString('hex');
  }
  throw new BadRequest(`"${key}" is not a ${bytes}-byte id: ${JSON.stringify(value)}.`);
}

/** int64 arrives as a JSON number or a decimal string; kept a number unless it would lose precision. */
function int64(value: unknown): number | string {
  const parsed = Number(value);
  return Number.isSafeInteger(parsed) ? parsed : String(value);
}

/** Enums arrive as numbers, or (plain proto3 JSON) as names like `SPAN_KIND_SERVER`. */
function enumValue(value: unknown, names: string[], prefix: string): number {
  if (value === undefined || value === null) {
    return 0;
  }
  if (typeof value === 'string' && Number.isNaN(Number(value))) {
    const index = names.indexOf(value.replace(prefix, ''));
    if (index === -1) {
      throw new BadRequest(`Unknown enum value ${JSON.stringify(value)}.`);
    }
    return index;
  }
  return Number(value);
}

function anyValue(value: unknown): ReceivedValue {
  if (value === null || typeof value !== 'object') {
    return null;
  }
  const record = value as Json;
  if ('stringValue' in record || 'string_value' in record) {
    return String(field(record, 'stringValue'));
  }
  if ('boolValue' in record || 'bool_value' in record) {
    return Boolean(field(record, 'boolValue'));
  }
  if ('intValue' in record || 'int_value' in record) {
    return int64(field(record, 'intValue'));
  }
  if ('doubleValue' in record || 'double_value' in record) {
    // Proto3 JSON writes NaN and the infinities as strings; Number() reads both forms.
    return Number(field(record, 'doubleValue'));
  }
  if ('arrayValue' in record || 'array_value' in record) {
    return list(field(record, 'arrayValue'), 'values').map(anyValue);
  }
  if ('kvlistValue' in record || 'kvlist_value' in record) {
    return attributes(field(record, 'kvlistValue'), 'values');
  }
  if ('bytesValue' in record || 'bytes_value' in record) {
    return new Uint8Array(Buffer.from(String(field(record, 'bytesValue')), 'base64'));
  }
  return null;
}

function attributes(message: unknown, key = 'attributes'): ReceivedAttributes {
  const result: ReceivedAttributes = {};
  for (const keyValue of list(message, key)) {
    const name = text(keyValue, 'key');
    if (name === undefined) {
      throw new BadRequest('A KeyValue has no "key".');
    }
    result[name] = anyValue(field(keyValue, 'value'));
  }
  return result;
}

function nanos(message: unknown, key: string): string {
  return text(message, key) ?? '0';
}

function required<T>(value: T | undefined, what: string): T {
  if (value === undefined) {
    throw new BadRequest(`A span has no ${what}.`);
  }
  return value;
}

/** Flattens an ExportTraceServiceRequest (OTLP/JSON) into one entry per span. */
export function decodeJsonTraceRequest(request: unknown): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  for (const resourceSpans of list(request, 'resourceSpans')) {
    const resource = attributes(field(resourceSpans, 'resource'));
    for (const scopeSpans of list(resourceSpans, 'scopeSpans')) {
      const scopeMessage = field(scopeSpans, 'scope');
      const scope: ReceivedSpan['scope'] = { name: text(scopeMessage, 'name') ?? '' };
      const version = text(scopeMessage, 'version');
      if (version !== undefined) {
        scope.version = version;
      }
      for (const span of list(scopeSpans, 'spans')) {
        const received: ReceivedSpan = {
          traceId: required(id(span, 'traceId', 16), 'traceId'),
          spanId: required(id(span, 'spanId', 8), 'spanId'),
          name: text(span, 'name') ?? '',
          kind: enumValue(field(span, 'kind'), KIND_NAMES, 'SPAN_KIND_'),
          startTimeUnixNano: nanos(span, 'startTimeUnixNano'),
          endTimeUnixNano: nanos(span, 'endTimeUnixNano'),
          attributes: attributes(span),
          status: {
            code: enumValue(field(field(span, 'status'), 'code'), STATUS_NAMES, 'STATUS_CODE_'),
            message: text(field(span, 'status'), 'message') ?? '',
          },
          links: list(span, 'links').map((link) => {
            const receivedLink: ReceivedLink = {
              traceId: required(id(link, 'traceId', 16), 'link traceId'),
              spanId: required(id(link, 'spanId', 8), 'link spanId'),
              attributes: attributes(link),
            };
            const traceState = text(link, 'traceState');
            if (traceState) {
              receivedLink.traceState = traceState;
            }
            return receivedLink;
          }),
          events: list(span, 'events').map((event) => ({
            name: text(event, 'name') ?? '',
            timeUnixNano: nanos(event, 'timeUnixNano'),
            attributes: attributes(event),
          })),
          resource,
          scope,
        };
        const parentSpanId = id(span, 'parentSpanId', 8);
        if (parentSpanId !== undefined) {
          received.parentSpanId = parentSpanId;
        }
        const traceState = text(span, 'traceState');
        if (traceState) {
          received.traceState = traceState;
        }
        spans.push(received);
      }
    }
  }
  return spans;
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
      throw new BadRequest(`Unsupported content-encoding ${JSON.stringify(encoding)}.`);
  }
}

interface Waiter {
  check: () => void;
  cancel: (reason: Error) => void;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
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

  return {
    url: `${endpoint}${TRACES_PATH}`,
    endpoint,
    port,
    spans,
    requests,
    waitForSpans,
    reset: () => {
      spans.length = 0;
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
