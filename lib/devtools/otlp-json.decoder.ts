import type { ViewerAttributes, ViewerEvent, ViewerLink, ViewerSpan, ViewerValue } from './devtools.interfaces.js';

/**
 * Decodes an OTLP/JSON `ExportTraceServiceRequest` (what @opentelemetry/exporter-trace-otlp-http
 * sends: resourceSpans → scopeSpans → spans) into flat {@link ViewerSpan}s.
 *
 * Follows the OTLP/JSON rules: ids are hex (base64, the plain proto3 JSON form, is accepted too),
 * int64 fields come as numbers or decimal strings, enums as numbers (or `SPAN_KIND_SERVER`-style
 * names), and both lowerCamelCase and snake_case field names are read. Anything that cannot be a
 * trace request throws {@link OtlpDecodeError}; the whole request is then refused, as a collector does.
 */

/** The request is not a valid OTLP/JSON trace request; the message says what is wrong. */
export class OtlpDecodeError extends Error {
  override readonly name = 'OtlpDecodeError';
}

/** Nested arrays and kvlists deeper than this are refused (they would only come from a broken sender). */
const MAX_VALUE_DEPTH = 32;

const UNKNOWN_SERVICE = 'unknown_service';

type Json = Record<string, unknown>;

function camelToSnake(key: string): string {
  return key.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
}

function isObject(value: unknown): value is Json {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** Proto3 JSON parsers accept the lowerCamelCase name and the original snake_case name. */
function field(message: unknown, key: string): unknown {
  if (!isObject(message)) {
    return undefined;
  }
  const value = Object.hasOwn(message, key) ? message[key] : message[camelToSnake(key)];
  return value ?? undefined;
}

function has(message: Json, key: string): boolean {
  return Object.hasOwn(message, key) || Object.hasOwn(message, camelToSnake(key));
}

function list(message: unknown, key: string, where: string): unknown[] {
  const value = field(message, key);
  if (value === undefined) {
    return [];
  }
  if (!Array.isArray(value)) {
    throw new OtlpDecodeError(`${where}.${key} must be an array.`);
  }
  return value;
}

function message(value: unknown, where: string): Json {
  if (!isObject(value)) {
    throw new OtlpDecodeError(`${where} must be an object.`);
  }
  return value;
}

function text(value: unknown, key: string, where: string): string | undefined {
  const raw = field(value, key);
  if (raw === undefined) {
    return undefined;
  }
  if (typeof raw !== 'string') {
    throw new OtlpDecodeError(`${where}.${key} must be a string.`);
  }
  return raw;
}

/** Hex (OTLP/JSON) or base64 (plain proto3 JSON); `''` and all zeros mean "absent". */
function id(value: unknown, key: string, bytes: 8 | 16, where: string): string | undefined {
  const raw = text(value, key, where);
  if (!raw) {
    return undefined;
  }
  let hex: string | undefined;
  if (raw.length === bytes * 2 && /^[0-9a-f]+$/i.test(raw)) {
    hex = raw.toLowerCase();
  } else if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(raw)) {
    const decoded = Buffer.from(raw, 'base64');
    if (decoded.length === bytes) {
      hex = decoded.toString('hex');
    }
  }
  if (hex === undefined) {
    throw new OtlpDecodeError(`${where}.${key} is not ${bytes === 8 ? 'an' : 'a'} ${bytes}-byte id in hex: ${JSON.stringify(raw.slice(0, 80))}.`);
  }
  return /^0+$/.test(hex) ? undefined : hex;
}

function requiredId(value: unknown, key: string, bytes: 8 | 16, where: string): string {
  const result = id(value, key, bytes, where);
  if (result === undefined) {
    throw new OtlpDecodeError(`${where}.${key} is missing (or all zeros).`);
  }
  return result;
}

/** A fixed64 timestamp: a JSON number or a decimal string; kept as a decimal string. */
function nanos(value: unknown, key: string, where: string): string {
  const raw = field(value, key);
  if (raw === undefined) {
    return '0';
  }
  if (typeof raw === 'number' && Number.isInteger(raw) && raw >= 0) {
    return BigInt(raw).toString();
  }
  if (typeof raw === 'string' && /^\d{1,20}$/.test(raw)) {
    return BigInt(raw).toString();
  }
  throw new OtlpDecodeError(`${where}.${key} must be an unsigned integer (nanoseconds): ${JSON.stringify(raw)}.`);
}

/** OTLP `flags` (fixed32): a number in JSON. */
function flags(value: unknown, where: string): number {
  const raw = field(value, 'flags');
  if (raw === undefined) {
    return 0;
  }
  if (typeof raw === 'number' && Number.isInteger(raw) && raw >= 0 && raw <= 0xffffffff) {
    return raw;
  }
  throw new OtlpDecodeError(`${where}.flags must be an unsigned 32-bit integer: ${JSON.stringify(raw)}.`);
}

/** Enums arrive as numbers, or (plain proto3 JSON) as names like `SPAN_KIND_SERVER`. */
function enumValue(value: unknown, key: string, names: readonly string[], prefix: string, where: string): number {
  const raw = field(value, key);
  if (raw === undefined) {
    return 0;
  }
  if (typeof raw === 'number' && Number.isInteger(raw) && raw >= 0) {
    return raw;
  }
  if (typeof raw === 'string') {
    if (/^\d+$/.test(raw)) {
      return Number(raw);
    }
    const index = names.indexOf(raw.startsWith(prefix) ? raw.slice(prefix.length) : raw);
    if (index !== -1) {
      return index;
    }
  }
  throw new OtlpDecodeError(`${where}.${key} is not a known value: ${JSON.stringify(raw)}.`);
}

function anyValue(value: unknown, where: string, depth: number): ViewerValue {
  if (depth > MAX_VALUE_DEPTH) {
    throw new OtlpDecodeError(`${where} nests arrays or kvlists more than ${MAX_VALUE_DEPTH} levels deep.`);
  }
  if (value === undefined || value === null) {
    return null;
  }
  const record = message(value, where);
  if (has(record, 'stringValue')) {
    const raw = field(record, 'stringValue');
    return raw === undefined ? '' : String(raw);
  }
  if (has(record, 'boolValue')) {
    return field(record, 'boolValue') === true;
  }
  if (has(record, 'intValue')) {
    const raw = field(record, 'intValue');
    const parsed = Number(raw ?? 0);
    if (typeof raw === 'string' && !/^-?\d+$/.test(raw)) {
      throw new OtlpDecodeError(`${where}.intValue must be an integer: ${JSON.stringify(raw)}.`);
    }
    return Number.isSafeInteger(parsed) ? parsed : String(raw);
  }
  if (has(record, 'doubleValue')) {
    // Proto3 JSON writes NaN and the infinities as strings; JSON cannot carry them back, so they stay strings.
    const parsed = Number(field(record, 'doubleValue') ?? 0);
    return Number.isFinite(parsed) ? parsed : String(field(record, 'doubleValue'));
  }
  if (has(record, 'arrayValue')) {
    return list(field(record, 'arrayValue'), 'values', `${where}.arrayValue`).map((item, index) =>
      anyValue(item, `${where}.arrayValue.values[${index}]`, depth + 1),
    );
  }
  if (has(record, 'kvlistValue')) {
    return keyValues(field(record, 'kvlistValue'), 'values', `${where}.kvlistValue`, depth + 1);
  }
  if (has(record, 'bytesValue')) {
    return String(field(record, 'bytesValue') ?? '');
  }
  return null;
}

function keyValues(value: unknown, key: string, where: string, depth = 0): ViewerAttributes {
  // A null-prototype object: a key named "__proto__" from the network stays an ordinary key.
  const result: ViewerAttributes = Object.create(null) as ViewerAttributes;
  list(value, key, where).forEach((keyValue, index) => {
    const at = `${where}.${key}[${index}]`;
    const name = text(message(keyValue, at), 'key', at);
    if (name === undefined) {
      throw new OtlpDecodeError(`${at} has no "key".`);
    }
    result[name] = anyValue(field(keyValue, 'value'), `${at}.value`, depth);
  });
  return result;
}

function decodeLink(link: unknown, where: string): ViewerLink {
  message(link, where);
  const decoded: ViewerLink = {
    traceId: requiredId(link, 'traceId', 16, where),
    spanId: requiredId(link, 'spanId', 8, where),
    attributes: keyValues(link, 'attributes', where),
  };
  const traceState = text(link, 'traceState', where);
  if (traceState) {
    decoded.traceState = traceState;
  }
  return decoded;
}

function decodeEvent(event: unknown, where: string): ViewerEvent {
  message(event, where);
  return {
    name: text(event, 'name', where) ?? '',
    timeUnixNano: nanos(event, 'timeUnixNano', where),
    attributes: keyValues(event, 'attributes', where),
  };
}

/** Flattens an ExportTraceServiceRequest into one {@link ViewerSpan} per span. Throws {@link OtlpDecodeError}. */
export function decodeOtlpTraceRequest(request: unknown): ViewerSpan[] {
  message(request, 'The request');
  const spans: ViewerSpan[] = [];
  list(request, 'resourceSpans', 'request').forEach((resourceSpans, r) => {
    const rWhere = `resourceSpans[${r}]`;
    message(resourceSpans, rWhere);
    const resourceMessage = field(resourceSpans, 'resource');
    const resource = resourceMessage === undefined ? {} : keyValues(message(resourceMessage, `${rWhere}.resource`), 'attributes', `${rWhere}.resource`);
    const serviceName = resource['service.name'];
    const service = typeof serviceName === 'string' && serviceName !== '' ? serviceName : UNKNOWN_SERVICE;
    list(resourceSpans, 'scopeSpans', rWhere).forEach((scopeSpans, s) => {
      const sWhere = `${rWhere}.scopeSpans[${s}]`;
      message(scopeSpans, sWhere);
      const scopeMessage = field(scopeSpans, 'scope');
      const scope: ViewerSpan['scope'] = { name: text(scopeMessage, 'name', `${sWhere}.scope`) ?? '' };
      const version = text(scopeMessage, 'version', `${sWhere}.scope`);
      if (version) {
        scope.version = version;
      }
      list(scopeSpans, 'spans', sWhere).forEach((span, index) => {
        const where = `${sWhere}.spans[${index}]`;
        message(span, where);
        const status = field(span, 'status');
        const decoded: ViewerSpan = {
          traceId: requiredId(span, 'traceId', 16, where),
          spanId: requiredId(span, 'spanId', 8, where),
          flags: flags(span, where),
          name: text(span, 'name', where) ?? '',
          kind: enumValue(span, 'kind', ['UNSPECIFIED', 'INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER'], 'SPAN_KIND_', where),
          startTimeUnixNano: nanos(span, 'startTimeUnixNano', where),
          endTimeUnixNano: nanos(span, 'endTimeUnixNano', where),
          attributes: keyValues(span, 'attributes', where),
          status: {
            code: enumValue(status, 'code', ['UNSET', 'OK', 'ERROR'], 'STATUS_CODE_', `${where}.status`),
            message: text(status, 'message', `${where}.status`) ?? '',
          },
          events: list(span, 'events', where).map((event, e) => decodeEvent(event, `${where}.events[${e}]`)),
          links: list(span, 'links', where).map((link, l) => decodeLink(link, `${where}.links[${l}]`)),
          resource,
          service,
          scope,
        };
        const parentSpanId = id(span, 'parentSpanId', 8, where);
        if (parentSpanId !== undefined) {
          decoded.parentSpanId = parentSpanId;
        }
        const traceState = text(span, 'traceState', where);
        if (traceState) {
          decoded.traceState = traceState;
        }
        spans.push(decoded);
      });
    });
  });
  return spans;
}
