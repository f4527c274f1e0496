import type { Attributes, Span } from '@opentelemetry/api';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HttpBodyCaptureOptions, HttpServerTracingOptions } from '../interfaces/otel-module-options.interface.js';
import { captureFailed, invalidOptionValue, OtelConfigError } from '../otel.messages.js';
import { activeRedactor } from '../redaction/redaction.processor.js';
import {
  ATTR_HTTP_REQUEST_HEADER_PREFIX,
  ATTR_HTTP_RESPONSE_HEADER_PREFIX,
  ATTR_NESTJS_HTTP_REQUEST_BODY,
  ATTR_NESTJS_HTTP_REQUEST_BODY_TRUNCATED,
  ATTR_NESTJS_HTTP_RESPONSE_BODY,
  ATTR_NESTJS_HTTP_RESPONSE_BODY_TRUNCATED,
} from '../semconv.js';
import { diagLimited } from '../utils/diag-limited.js';
import {
  captureBodyText,
  compileContentTypes,
  compileHeaderAllowList,
  DEFAULT_BODY_CONTENT_TYPES,
  DEFAULT_BODY_MAX_BYTES,
  headerValue,
  isBinaryPayload,
  type ContentTypeMatcher,
  type HeaderAllowList,
} from '../capture/capture-rules.js';

/** `http.captureBody` resolved; undefined when off. */
export interface ResolvedHttpBodyCapture {
  readonly request: boolean;
  readonly response: boolean;
  readonly maxBytes: number;
  readonly contentTypes: ContentTypeMatcher;
}

/** Header allow-lists and body capture of the HTTP server, compiled once. */
export interface HttpCapture {
  readonly requestHeaders: HeaderAllowList;
  readonly responseHeaders: HeaderAllowList;
  readonly body: ResolvedHttpBodyCapture | undefined;
}

export function resolveHttpBodyCapture(option: boolean | HttpBodyCaptureOptions | undefined): ResolvedHttpBodyCapture | undefined {
  if (option === undefined || option === false) {
    return undefined;
  }
  const given: HttpBodyCaptureOptions = option === true ? { request: true, response: true } : option;
  if (given.request !== true && given.response !== true) {
    return undefined;
  }
  return {
    request: given.request === true,
    response: given.response === true,
    maxBytes: given.maxBytes ?? DEFAULT_BODY_MAX_BYTES,
    contentTypes: compileContentTypes(given.contentTypes ?? DEFAULT_BODY_CONTENT_TYPES),
  };
}

export function compileHttpCapture(options: HttpServerTracingOptions): HttpCapture {
  return {
    requestHeaders: compileHeaderAllowList(options.requestHeaders),
    responseHeaders: compileHeaderAllowList(options.responseHeaders),
    body: resolveHttpBodyCapture(options.captureBody),
  };
}

/** `http.request.header.<name>` of the allowed request headers, added to `attributes`. */
export function captureRequestHeaders(req: IncomingMessage, allow: HeaderAllowList, attributes: Attributes = {}): Attributes {
  if (allow.empty) {
    return attributes;
  }
  const headers = req.headers;
  const names = allow.exact ?? Object.keys(headers).filter((name) => allow.matches(name));
  for (const name of names) {
    const value = headerValue(headers[name]);
    if (value !== undefined) {
      attributes[ATTR_HTTP_REQUEST_HEADER_PREFIX + name] = value;
    }
  }
  return attributes;
}

/** The parts of a fastify reply read for headers. */
export interface ReplyHeaders {
  getHeader?(name: string): number | string | string[] | undefined;
  getHeaders?(): Record<string, unknown>;
}

/**
 * `http.response.header.<name>` of the allowed response headers. fastify hands its headers to
 * `writeHead()` when it sends, so its reply is asked too.
 */
export function captureResponseHeaders(span: Span, res: ServerResponse, reply: ReplyHeaders | undefined, allow: HeaderAllowList): void {
  if (allow.empty) {
    return;
  }
  let names = allow.exact;
  if (names === undefined) {
    const all = new Set(res.getHeaderNames());
    for (const name of Object.keys(reply?.getHeaders?.() ?? {})) {
      all.add(name.toLowerCase());
    }
    names = [...all].filter((name) => allow.matches(name));
  }
  for (const name of names) {
    const value = headerValue(res.getHeader(name) ?? reply?.getHeader?.(name));
    if (value !== undefined) {
      span.setAttribute(ATTR_HTTP_RESPONSE_HEADER_PREFIX + name, value);
    }
  }
}

/** What the response-end capture needs of a request; `responseBody` is set by the global interceptor. */
export interface BodyCaptureState {
  readonly span: Span;
  captureResponseBody?: boolean;
  responseBody?: unknown;
}

const FORM = 'application/x-www-form-urlencoded';

/**
 * Records the request body (as the body parser left it: express `req.body`, fastify
 * `request.body`; the stream is never read) and the handler's response value, when their content
 * types are allowed. Called once, when the response ends. Never throws.
 */
export function captureBodies(
  state: BodyCaptureState,
  capture: ResolvedHttpBodyCapture,
  req: IncomingMessage,
  res: ServerResponse,
  fastifyRequest: unknown,
  reply: ReplyHeaders | undefined,
): void {
  try {
    const redactor = activeRedactor();
    if (capture.request) {
      const contentType = headerText(req.headers['content-type']);
      if (capture.contentTypes.matches(contentType)) {
        const body = (fastifyRequest as { body?: unknown } | undefined)?.body ?? (req as { body?: unknown }).body;
        const captured = captureBodyText(body, capture.maxBytes, redactor, isForm(contentType));
        if (captured) {
          state.span.setAttribute(ATTR_NESTJS_HTTP_REQUEST_BODY, captured.text);
          if (captured.truncated) {
            state.span.setAttribute(ATTR_NESTJS_HTTP_REQUEST_BODY_TRUNCATED, true);
          }
        }
      }
    }
    if (capture.response && state.responseBody !== undefined && !isBinaryPayload(state.responseBody)) {
      const contentType = headerText(res.getHeader('content-type') ?? reply?.getHeader?.('content-type'));
      if (capture.contentTypes.matches(contentType)) {
        const captured = captureBodyText(state.responseBody, capture.maxBytes, redactor, isForm(contentType));
        if (captured) {
          state.span.setAttribute(ATTR_NESTJS_HTTP_RESPONSE_BODY, captured.text);
          if (captured.truncated) {
            state.span.setAttribute(ATTR_NESTJS_HTTP_RESPONSE_BODY_TRUNCATED, true);
          }
        }
      }
    }
  } catch (error) {
    diagLimited('warn', captureFailed('an HTTP body'), error);
  } finally {
    state.responseBody = undefined;
  }
}

function headerText(value: unknown): string | undefined {
  return Array.isArray(value) ? String(value[0]) : value === undefined ? undefined : String(value);
}

function isForm(contentType: string | undefined): boolean {
  return contentType !== undefined && contentType.toLowerCase().startsWith(FORM);
}

// ---------------------------------------------------------------------------------------------
// Validation (called from validate-options.ts for the `http` option)
// ---------------------------------------------------------------------------------------------

function fail(path: string, expected: string, example: string, got: unknown): never {
  throw new OtelConfigError(invalidOptionValue(path, expected, example, got));
}

/** Validates a header allow-list (`http.requestHeaders`, a transport's `captureHeaders`). */
export function validateHeaderAllowList(value: unknown, path: string, example: string): void {
  if (value === undefined) {
    return;
  }
  if (!Array.isArray(value)) {
    fail(path, 'an array of header names (wildcards `*` and `!` exclusions allowed)', example, value);
  }
  value.forEach((name: unknown, i) => {
    if (typeof name !== 'string' || name.trim() === '' || name.trim() === '!') {
      fail(`${path}[${i}]`, 'a non-empty header name', example, name);
    }
  });
  if (value.length > 0 && value.every((name: string) => name.trim().startsWith('!'))) {
    fail(path, 'a list with at least one name to include (exclusions only remove from what is included)', `['*', '!cookie']`, value);
  }
}

/** Validates a body capture option (`http.captureBody`, a transport's `captureBody`). */
export function validateBodyCapture(value: unknown, path: string, known: readonly string[], example: string): void {
  if (value === undefined || typeof value === 'boolean') {
    return;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    fail(path, 'a boolean or an options object', example, value);
  }
  const object = value as Record<string, unknown>;
  for (const key of Object.keys(object)) {
    if (!known.includes(key)) {
      fail(`${path}.${key}`, `one of the known options (${known.join(', ')})`, example, object[key]);
    }
  }
  for (const key of ['request', 'response']) {
    if (known.includes(key) && object[key] !== undefined && typeof object[key] !== 'boolean') {
      fail(`${path}.${key}`, 'a boolean', example, object[key]);
    }
  }
  if (object.maxBytes !== undefined && !(typeof object.maxBytes === 'number' && Number.isSafeInteger(object.maxBytes) && object.maxBytes > 0)) {
    fail(`${path}.maxBytes`, 'a positive integer number of bytes', example, object.maxBytes);
  }
  if (object.contentTypes !== undefined) {
    if (!Array.isArray(object.contentTypes) || object.contentTypes.some((type) => typeof type !== 'string' || !/^[\w.+*-]+(\/[\w.+*-]+)?$/.test(type.trim()))) {
      fail(`${path}.contentTypes`, "an array of content types such as 'application/json' or 'text/*'", example, object.contentTypes);
    }
  }
}

/** The capture parts of the `http` option: header allow-lists and `captureBody`. */
export function validateHttpCaptureOptions(http: unknown): void {
  if (http === null || typeof http !== 'object' || Array.isArray(http)) {
    return; // `http` itself is checked by validate-options.
  }
  const options = http as Record<string, unknown>;
  validateHeaderAllowList(options.requestHeaders, 'http.requestHeaders', "{ http: { requestHeaders: ['x-request-id', 'x-*', '!x-internal-*'] } }");
  validateHeaderAllowList(options.responseHeaders, 'http.responseHeaders', "{ http: { responseHeaders: ['content-type'] } }");
  validateBodyCapture(
    options.captureBody,
    'http.captureBody',
    ['request', 'response', 'maxBytes', 'contentTypes'],
    '{ http: { captureBody: { request: true, maxBytes: 2048 } } }',
  );
}
