import type { Context, TextMapGetter, TextMapSetter } from '@opentelemetry/api';
import { injectContext } from '../../propagation/carrier.js';
import { isPlainRecord, recordFieldGetter, recordFieldSetter, removeContextFields } from '../../propagation/record-carrier.js';

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

/** A JSON object (not an array, not null): the only shape of metadata that can carry context. */
export const isMetadataObject = isPlainRecord;

/**
 * Reads trace context from a TCP packet's `metadata`, behind the validating layer: string values
 * only, names case-insensitive, a name under several spellings a repeated field (see
 * {@link recordFieldGetter}). Never throws.
 */
export const tcpMetadataGetter: TextMapGetter<unknown> = recordFieldGetter(false);

/** Writes one context field into a metadata object, removing differently-cased copies of it. */
export const tcpMetadataSetter: TextMapSetter<TcpMetadata> = recordFieldSetter as TextMapSetter<TcpMetadata>;

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
    removeContextFields(metadata);
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
