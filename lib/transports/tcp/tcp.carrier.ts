import { propagation, type Context, type TextMapGetter, type TextMapSetter } from '@opentelemetry/api';
import { injectContext, validatingGetter } from '../../propagation/carrier.js';
import { CONTEXT_FIELDS, maxFieldLength } from '../../propagation/header-values.js';

/**
 * The `metadata` of a Nest TCP packet envelope (`{ pattern, data, id?, metadata? }`): string
 * values by name. What arrives over the wire is any JSON value, so every reader takes `unknown`.
 */
export type TcpMetadata = Record<string, string>;

/**
 * The metadata key by which a request asks for the consumer's context in its replies. Nest 12.1's
 * `ClientTCP` reads a reply with any key besides `id`, `err`, `response`, `isDisposed` and
 * `status` as a foreign payload (the whole packet becomes the response), so `OtelServerTCP` adds
 * `metadata` to the replies of requests that carry this key (`"1"`) only: OtelClientTCP sends it,
 * a plain Nest client never does.
 */
export const TCP_REPLY_CONTEXT_KEY = 'otel-reply-context';

/** Metadata objects with more keys than this are not searched (read as "no context"). */
const MAX_METADATA_KEYS = 256;

/** A JSON object (not an array, not null): the only shape of metadata that can carry context. */
export function isMetadataObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/**
 * Reads trace context from a TCP packet's `metadata`. Names match case-insensitively; a key
 * present under several spellings is handed over as a repeated field (invalid for `traceparent`).
 * Only string values count: anything else (numbers, arrays, objects, null) under a context name
 * makes that field absent, as does metadata that is not a JSON object, or that has too many keys.
 * The validating layer in propagation/carrier.ts then drops control characters and oversized
 * values. Never throws.
 */
const rawTcpMetadataGetter: TextMapGetter<unknown> = {
  keys(carrier) {
    try {
      return isMetadataObject(carrier) ? Object.keys(carrier) : [];
    } catch {
      return [];
    }
  },
  get(carrier, key) {
    if (!isMetadataObject(carrier)) {
      return undefined;
    }
    try {
      const names = Object.keys(carrier);
      if (names.length > MAX_METADATA_KEYS) {
        return undefined;
      }
      const wanted = key.toLowerCase();
      const limit = maxFieldLength(wanted);
      const found: string[] = [];
      let length = 0;
      for (const name of names) {
        if (name.toLowerCase() !== wanted) {
          continue;
        }
        const value = carrier[name];
        if (typeof value !== 'string') {
          return undefined;
        }
        length += value.length;
        if (length > limit) {
          return undefined;
        }
        found.push(value);
      }
      return found.length === 0 ? undefined : found.length === 1 ? found[0] : found;
    } catch {
      return undefined;
    }
  },
};

/** {@link rawTcpMetadataGetter} behind the validating layer: what a propagator may read (text, or absent). */
export const tcpMetadataGetter: TextMapGetter<unknown> = validatingGetter(rawTcpMetadataGetter);

/** Writes one context field into a metadata object, removing differently-cased copies of it. */
export const tcpMetadataSetter: TextMapSetter<TcpMetadata> = {
  set(carrier, key, value) {
    removeField(carrier, key);
    carrier[key] = value;
  },
};

function removeField(metadata: Record<string, unknown>, field: string): void {
  const wanted = field.toLowerCase();
  for (const name of Object.keys(metadata)) {
    if (name.toLowerCase() === wanted) {
      delete metadata[name];
    }
  }
}

/** The context fields: the global propagator's, and the W3C ones in any case. */
function contextFields(): string[] {
  let fields: string[] = [];
  try {
    fields = propagation.fields();
  } catch {
    // The W3C fields, then.
  }
  return [...new Set([...fields, ...CONTEXT_FIELDS])];
}

/**
 * A new metadata object: the application's own entries (from its dispatch hook) kept, every
 * context field of the application's removed (a stale or forwarded `traceparent` would contradict
 * ours), and the context of `ctx` written by the global propagator. `undefined` when there is
 * nothing to send (no application metadata and no context), so that the packet stays as Nest
 * would send it. The application's object is never changed.
 */
export function metadataWithContext(own: unknown, ctx: Context, extra?: TcpMetadata): TcpMetadata | undefined {
  const metadata: TcpMetadata = {};
  const hasOwn = isMetadataObject(own);
  if (hasOwn) {
    Object.assign(metadata, own);
    for (const field of contextFields()) {
      removeField(metadata, field);
    }
  }
  const before = Object.keys(metadata).length;
  injectContext(ctx, metadata, tcpMetadataSetter);
  if (Object.keys(metadata).length === before && !hasOwn) {
    return undefined;
  }
  if (extra) {
    Object.assign(metadata, extra);
  }
  return metadata;
}
