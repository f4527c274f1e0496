import type { Attributes, Span, TextMapGetter } from '@opentelemetry/api';
import { captureBodyText, compileHeaderAllowList, headerValue, type HeaderAllowList } from '../../capture/capture-rules.js';
import { validateBodyCapture, validateHeaderAllowList } from '../../http/http-capture.js';
import { captureFailed } from '../../otel.messages.js';
import { activeRedactor } from '../../redaction/redaction.processor.js';
import { ATTR_NESTJS_MESSAGE_BODY, ATTR_NESTJS_MESSAGE_BODY_TRUNCATED, ATTR_NESTJS_MESSAGE_HEADER_PREFIX } from '../../semconv.js';
import { diagLimited } from '../../utils/diag-limited.js';
import { DEFAULT_BODY_MAX_BYTES } from '../../capture/capture-rules.js';
import { OtelConfigError } from '../../otel.messages.js';

/** Message body capture of a transport server or client. */
export interface MessageBodyCaptureOptions {
  /**
   * At most this many UTF-8 bytes per payload (cut on a character boundary; a cut payload also
   * gets `nestjs.message.body.truncated` = `true`). A positive integer. Default `2048`.
   */
  maxBytes?: number;
}

/**
 * What a traced transport server or client records of each message, under its `otel` option.
 * Both are opt-in, and what is recorded goes through redaction before export like any attribute.
 */
export interface MessageCaptureOptions {
  /**
   * Message headers recorded as `nestjs.message.header.<lower-case name>` (string arrays): names
   * matched without case, `*` wildcards, `!` exclusions (`['x-*', '!x-internal-*']`). The trace
   * context headers are never captured on the producer side (they are written after). Default none.
   */
  captureHeaders?: string[];
  /**
   * The payload as `nestjs.message.body.content`: JSON text of the handler's data (consumer,
   * recorded when the handler is about to run) or of what `send()`/`emit()` was given (producer),
   * with the values of sensitive keys masked (the `redact` keys), cut to `maxBytes`. Never for
   * binary payloads (Buffer, Uint8Array). `true` is `{ maxBytes: 2048 }`. Default off.
   */
  captureBody?: boolean | MessageBodyCaptureOptions;
}

/** Compiled capture options of one server or client; undefined when nothing is captured. */
export interface MessageCapture {
  readonly headers: HeaderAllowList;
  /** Byte budget of body capture; undefined when bodies are not captured. */
  readonly bodyMaxBytes: number | undefined;
}

/**
 * Validates and compiles a transport's capture options (the constructor of a traced server or
 * client calls it, so a wrong option fails at bootstrap with OtelConfigError). `where` names the
 * option in messages: `OtelServerNats otel`.
 */
export function compileMessageCapture(options: MessageCaptureOptions | undefined, where: string): MessageCapture | undefined {
  if (options === undefined || options === null) {
    return undefined;
  }
  validateHeaderAllowList(options.captureHeaders, `${where}.captureHeaders`, "{ otel: { captureHeaders: ['x-tenant', 'x-*', '!x-internal-*'] } }");
  validateBodyCapture(options.captureBody, `${where}.captureBody`, ['maxBytes'], '{ otel: { captureBody: { maxBytes: 2048 } } }');
  const headers = compileHeaderAllowList(options.captureHeaders);
  const body = options.captureBody;
  const bodyMaxBytes = body === undefined || body === false ? undefined : body === true ? DEFAULT_BODY_MAX_BYTES : (body.maxBytes ?? DEFAULT_BODY_MAX_BYTES);
  return headers.empty && bodyMaxBytes === undefined ? undefined : { headers, bodyMaxBytes };
}

/**
 * Adds `nestjs.message.header.<name>` for the allowed headers of `carrier`, read with the
 * transport's own getter (the one that extracts the trace context), to `attributes`. Never throws.
 */
export function captureMessageHeaders<C>(
  capture: MessageCapture | undefined,
  carrier: C | undefined,
  getter: TextMapGetter<C>,
  attributes: Attributes,
): Attributes {
  if (capture === undefined || capture.headers.empty || carrier === undefined || carrier === null) {
    return attributes;
  }
  try {
    const allow = capture.headers;
    const names = allow.exact ?? getter.keys(carrier).filter((name) => allow.matches(name));
    for (const name of names) {
      const value = headerValue(getter.get(carrier, name));
      if (value !== undefined) {
        attributes[ATTR_NESTJS_MESSAGE_HEADER_PREFIX + name.toLowerCase()] = value;
      }
    }
  } catch (error) {
    diagLimited('warn', captureFailed('message headers'), error);
  }
  return attributes;
}

/**
 * Adds `nestjs.message.body.content` (and `.truncated`) for a payload, to `attributes` or a span.
 * `data` is the application's value (before serialization, after deserialization): binary is
 * never recorded. Never throws.
 */
export function captureMessageBody(capture: MessageCapture | undefined, data: unknown, target: Attributes | Span): void {
  const maxBytes = capture?.bodyMaxBytes;
  if (maxBytes === undefined || data === undefined) {
    return;
  }
  try {
    const captured = captureBodyText(payloadOf(data), maxBytes, activeRedactor());
    if (captured === undefined) {
      return;
    }
    const set =
      typeof (target as Span).setAttribute === 'function'
        ? (key: string, value: string | boolean) => (target as Span).setAttribute(key, value)
        : (key: string, value: string | boolean) => {
            (target as Attributes)[key] = value;
          };
    set(ATTR_NESTJS_MESSAGE_BODY, captured.text);
    if (captured.truncated) {
      set(ATTR_NESTJS_MESSAGE_BODY_TRUNCATED, true);
    }
  } catch (error) {
    diagLimited('warn', captureFailed('a message body'), error);
  }
}

const compiled = new WeakMap<object, MessageCapture | null>();

/**
 * The compiled capture of a transport's `otel` options object, compiled once per object. The
 * traced servers and clients call it in their constructor (`where` names them), where a wrong
 * option throws OtelConfigError at bootstrap; on the message path (no `where`) it never throws.
 */
export function messageCaptureOf(options: MessageCaptureOptions | undefined, where?: string): MessageCapture | undefined {
  if (options === undefined || options === null || typeof options !== 'object') {
    return undefined;
  }
  if (options.captureHeaders === undefined && options.captureBody === undefined) {
    return undefined;
  }
  const known = compiled.get(options);
  if (known !== undefined) {
    return known ?? undefined;
  }
  try {
    const capture = compileMessageCapture(options, where ?? 'otel');
    compiled.set(options, capture ?? null);
    return capture;
  } catch (error) {
    if (where !== undefined && error instanceof OtelConfigError) {
      throw error;
    }
    compiled.set(options, null);
    diagLimited('warn', captureFailed('message headers or bodies'), error);
    return undefined;
  }
}

/** Nest's record wrappers (`NatsRecord`, `RmqRecord`, `MqttRecord`, ...) carry the payload in `data`; a Kafka message in `value`. */
function payloadOf(data: unknown): unknown {
  if (data === null || typeof data !== 'object') {
    return data;
  }
  const name = (data as object).constructor?.name;
  if (typeof name === 'string' && name.endsWith('Record') && 'data' in data) {
    return (data as { data: unknown }).data;
  }
  if ('value' in data && ('key' in data || 'headers' in data)) {
    return (data as { value: unknown }).value;
  }
  return data;
}
