import {
  baggageEntryMetadataFromString,
  propagation,
  type BaggageEntry,
  type Context,
  type TextMapGetter,
  type TextMapPropagator,
  type TextMapSetter,
} from '@opentelemetry/api';
import { isTracingSuppressed } from '@opentelemetry/core';

/**
 * W3C Baggage (https://www.w3.org/TR/baggage/), as a `TextMapPropagator`, strict on both sides.
 * Where it differs from `@opentelemetry/core`'s `W3CBaggagePropagator`, and why:
 * - **properties are validated** (`key` or `key=value`, RFC 7230 token keys, baggage-octet
 *   values); an invalid property is dropped, its member kept. Core keeps the raw text after the
 *   first `;` and sends it on unchanged, which is how a control byte from one peer reached undici
 *   (which throws) and AMQP reply headers.
 * - **members are validated** by the grammar (token key, baggage-octet value after OWS trimming);
 *   an invalid member is dropped, the others kept.
 * - values are **percent-decoded as UTF-8**, an invalid sequence becoming U+FFFD as the spec
 *   says (core's `decodeURIComponent` throws and drops the member).
 * - **outgoing** entries are checked again (an application can put anything into baggage): keys
 *   that are not tokens and properties that are not valid are left out; values are percent-encoded.
 * Limits: at most 180 members and 8192 bytes per header, 4096 bytes per member (the limits
 * OpenTelemetry JS uses); beyond them members are dropped, on extraction and on injection.
 */

export const BAGGAGE_HEADER = 'baggage';
export const BAGGAGE_MAX_MEMBERS = 180;
export const BAGGAGE_MAX_BYTES = 8192;
export const BAGGAGE_MAX_MEMBER_BYTES = 4096;

// RFC 7230 tchar.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// baggage-octet = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E
const VALUE = /^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*$/;
const OWS = /^[ \t]+|[ \t]+$/g;

const trim = (text: string): string => text.replace(OWS, '');

/** Percent-decodes `value` as UTF-8; invalid sequences become U+FFFD. */
export function percentDecode(value: string): string {
  if (!value.includes('%')) {
    return value;
  }
  const bytes: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 0x25 && /^[0-9a-fA-F]{2}$/.test(value.slice(i + 1, i + 3))) {
      bytes.push(Number.parseInt(value.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      // Values are ASCII by grammar, so a char is a byte.
      bytes.push(c);
    }
  }
  return new TextDecoder('utf-8', { fatal: false }).decode(Uint8Array.from(bytes));
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * Percent-encodes every character outside baggage-octet (and `%` itself) as UTF-8. A lone
 * surrogate (not encodable, `encodeURIComponent` would throw) becomes U+FFFD.
 */
export function percentEncode(value: string): string {
  return encodeURIComponent(value.replace(LONE_SURROGATE, '\uFFFD'));
}

/** Validates one property (`key` or `key = value`); returns it normalized, or `undefined`. */
function parseProperty(raw: string): string | undefined {
  const eq = raw.indexOf('=');
  if (eq === -1) {
    const key = trim(raw);
    return TOKEN.test(key) ? key : undefined;
  }
  const key = trim(raw.slice(0, eq));
  const value = trim(raw.slice(eq + 1));
  return TOKEN.test(key) && VALUE.test(value) ? `${key}=${value}` : undefined;
}

/** Validated properties of a metadata string, joined by `;` (empty when none is valid). */
export function validProperties(metadata: string | undefined): string {
  if (!metadata) {
    return '';
  }
  return metadata
    .split(';')
    .map((part) => (trim(part) === '' ? undefined : parseProperty(part)))
    .filter((part): part is string => part !== undefined)
    .join(';');
}

/** Parses a baggage header: valid members only, within the limits. */
export function parseBaggage(header: string): Record<string, BaggageEntry> {
  // No prototype: `__proto__` is a valid key (a token) and must be an entry like any other.
  const entries: Record<string, BaggageEntry> = Object.create(null);
  if (Buffer.byteLength(header) > BAGGAGE_MAX_BYTES) {
    return entries;
  }
  let count = 0;
  for (const raw of header.split(',')) {
    if (count >= BAGGAGE_MAX_MEMBERS) {
      break;
    }
    if (trim(raw) === '' || Buffer.byteLength(raw) > BAGGAGE_MAX_MEMBER_BYTES) {
      continue;
    }
    const [pair, ...properties] = raw.split(';');
    const eq = pair!.indexOf('=');
    if (eq === -1) {
      continue;
    }
    const key = trim(pair!.slice(0, eq));
    const value = trim(pair!.slice(eq + 1));
    if (!TOKEN.test(key) || !VALUE.test(value)) {
      continue;
    }
    const metadata = validProperties(properties.join(';'));
    entries[key] = { value: percentDecode(value), ...(metadata ? { metadata: baggageEntryMetadataFromString(metadata) } : {}) };
    count++;
  }
  return entries;
}

/** The baggage header to send for `entries`, or `undefined` when nothing valid is left. */
export function serializeBaggage(entries: ReadonlyArray<[string, BaggageEntry]>): string | undefined {
  const members: string[] = [];
  let bytes = 0;
  for (const [key, entry] of entries) {
    if (members.length >= BAGGAGE_MAX_MEMBERS) {
      break;
    }
    if (!TOKEN.test(key) || typeof entry?.value !== 'string') {
      continue;
    }
    const properties = validProperties(entry.metadata?.toString());
    const member = `${key}=${percentEncode(entry.value)}${properties ? `;${properties}` : ''}`;
    const size = Buffer.byteLength(member);
    if (size > BAGGAGE_MAX_MEMBER_BYTES || bytes + size + (members.length > 0 ? 1 : 0) > BAGGAGE_MAX_BYTES) {
      continue;
    }
    bytes += size + (members.length > 0 ? 1 : 0);
    members.push(member);
  }
  return members.length > 0 ? members.join(',') : undefined;
}

export class W3CBaggagePropagator implements TextMapPropagator {
  inject(context: Context, carrier: unknown, setter: TextMapSetter): void {
    const baggage = propagation.getBaggage(context);
    if (!baggage || isTracingSuppressed(context)) {
      return;
    }
    const header = serializeBaggage(baggage.getAllEntries());
    if (header !== undefined) {
      setter.set(carrier, BAGGAGE_HEADER, header);
    }
  }

  extract(context: Context, carrier: unknown, getter: TextMapGetter): Context {
    const raw = getter.get(carrier, BAGGAGE_HEADER);
    const header = Array.isArray(raw) ? raw.join(',') : raw;
    if (!header) {
      return context;
    }
    const entries = parseBaggage(header);
    return Object.keys(entries).length === 0 ? context : propagation.setBaggage(context, propagation.createBaggage(entries));
  }

  fields(): string[] {
    return [BAGGAGE_HEADER];
  }
}
