/**
 * The one place where a raw trace-context header value from any channel (HTTP, NATS, RabbitMQ,
 * Kafka, ...) becomes text a propagator may read, and where a value we are about to send is
 * checked. Channels hand over what their driver gives them: a string, a Buffer or byte array
 * (AMQP byte arrays, Kafka headers), or an array of those (a repeated header).
 */

/** The fields otel-nest reads and writes (lower case, as propagators ask for them). */
export const CONTEXT_FIELDS = ['traceparent', 'tracestate', 'baggage'] as const;

/**
 * Longest accepted value per field, in characters, after repeated headers are combined. Anything
 * longer is ignored as a whole (never truncated: a cut list member would change meaning).
 * - traceparent: 55 for version 00; a future version may append fields, 512 is generous.
 * - tracestate: 32 members of at most 256 + 1 + 256 characters (W3C Trace Context).
 * - baggage: 8192 bytes (W3C Baggage; this project's limit, see baggage.propagator.ts).
 * Other fields (B3, user headers read through the same getter): 8192.
 */
export const MAX_FIELD_LENGTH: Readonly<Record<string, number>> = {
  traceparent: 512,
  tracestate: 32 * 513 + 31,
  baggage: 8192,
};
const DEFAULT_MAX_FIELD_LENGTH = 8192;

/** Fields that must appear once (W3C Trace Context): a repeated one is invalid as a whole. */
const SINGLE_VALUED = new Set(['traceparent', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-sampled', 'x-b3-flags']);

/**
 * Whether `value` may travel in a header: visible ASCII, space and horizontal tab only. No CR, LF,
 * NUL or other control character, no DEL, nothing outside ASCII (trace-context and baggage are
 * ASCII by grammar; baggage percent-encodes everything else).
 */
export function isSafeHeaderValue(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    if ((code < 0x20 && code !== 0x09) || code > 0x7e) {
      return false;
    }
  }
  return true;
}

/** One raw value as text: a string as is, bytes as Latin-1 (so no byte is hidden by UTF-8 decoding). */
function rawText(value: unknown): string | undefined {
  if (typeof value === 'string') {
    return value;
  }
  if (value instanceof Uint8Array) {
    // latin1 maps every byte to one code unit: a non-ASCII byte stays visible to the check below,
    // where UTF-8 decoding could turn invalid sequences into U+FFFD or merge bytes.
    return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('latin1');
  }
  return undefined;
}

export function maxFieldLength(field: string): number {
  return MAX_FIELD_LENGTH[field] ?? DEFAULT_MAX_FIELD_LENGTH;
}

/**
 * The value of context field `field` as a propagator may read it, or `undefined` ("absent"):
 * - a string or bytes; an array of them is a repeated header, combined with `,` as HTTP does
 *   (a repeated `traceparent` is invalid: absent, and so is one with a comma in it, which is
 *   how a repetition looks once Node's `req.headers` or a proxy has combined it: a later
 *   version's `00-...-01-x, 00-...` would otherwise parse as its first 55 characters);
 * - values of other types (numbers, objects, AMQP tables) are absent;
 * - a value with a control character (CR, LF, NUL, ...) or a non-ASCII byte anywhere, or longer
 *   than {@link maxFieldLength} once combined, is absent as a whole.
 * Never throws.
 */
export function contextFieldValue(field: string, raw: unknown): string | undefined {
  const values = Array.isArray(raw) ? raw : [raw];
  if (values.length === 0 || (values.length > 1 && SINGLE_VALUED.has(field))) {
    return undefined;
  }
  const limit = maxFieldLength(field);
  let combined: string | undefined;
  for (const value of values) {
    const text = rawText(value);
    if (text === undefined) {
      return undefined;
    }
    combined = combined === undefined ? text : `${combined},${text}`;
    if (combined.length > limit) {
      return undefined;
    }
  }
  if (combined === undefined || !isSafeHeaderValue(combined)) {
    return undefined;
  }
  return SINGLE_VALUED.has(field) && combined.includes(',') ? undefined : combined;
}

/**
 * Whether a value we are about to write for `field` may be sent: a string within the field's
 * length limit with no control or non-ASCII character. An empty value is not sent either (an
 * empty `tracestate:` header says nothing and the spec asks not to send it).
 */
export function isSendableFieldValue(field: string, value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= maxFieldLength(field) && isSafeHeaderValue(value);
}
