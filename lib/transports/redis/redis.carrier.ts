import type { Context, TextMapSetter } from '@opentelemetry/api';
import { injectContext } from '../../propagation/carrier.js';
import { isPlainRecord, recordFieldGetter, recordFieldSetter } from '../../propagation/record-carrier.js';

/**
 * Redis pub/sub has no headers: trace context travels in the `metadata` object of Nest's JSON
 * packet envelope (`{ pattern, data, metadata, id }`), next to the application's `data`, never
 * inside it. Its fields are the global propagator's (`traceparent`, `tracestate`, `baggage`),
 * as strings.
 */
export type RedisPacketMetadata = Record<string, string>;

/**
 * The metadata key with which a request asks for the consumer's context on its reply:
 * `"otel-reply-context": "1"`. Nest 12's own client reads a reply with any key beyond its envelope
 * (`id`, `err`, `response`, `isDisposed`, `status`) as a foreign payload and hands the whole packet
 * to the caller, so a server adds `metadata` to a reply only when the request asked for it.
 * {@link OtelClientRedis} asks on every `send()`; a non-Nest peer may too.
 */
export const REPLY_CONTEXT_KEY = 'otel-reply-context';
export const REPLY_CONTEXT_REQUESTED = '1';

/** The keys of Nest's reply envelope. */
const REPLY_ENVELOPE_KEYS = new Set(['id', 'err', 'response', 'isDisposed', 'status', 'metadata']);

const isRecord = isPlainRecord;

/**
 * Reads trace context from a packet's `metadata`, which came over the network and may be anything
 * JSON can hold (or whatever a custom deserializer made of it), behind the validating layer: string
 * values only (a JSON array is no header value), names case-insensitive, metadata that is not a
 * plain object or has more than 256 keys has no fields (see {@link recordFieldGetter}). Never throws.
 */
export const redisMetadataGetter = recordFieldGetter(false);

/**
 * Writes one field into a metadata object of our own (a copy: see {@link metadataWithContext}),
 * replacing any differently-cased copy of it, which would make the field look repeated.
 */
export const redisMetadataSetter: TextMapSetter<RedisPacketMetadata> = recordFieldSetter as TextMapSetter<RedisPacketMetadata>;

/**
 * The metadata an outgoing packet goes out with: a copy of `existing` (what the application's own
 * dispatch hook set; never changed, it may be shared by every packet), plus the context of `ctx`,
 * plus, for a request, {@link REPLY_CONTEXT_KEY}. `existing` that is not an object (something other
 * than Nest's `Record<string, string>`) is the application's and is returned as it is, without
 * context. `undefined` when there is nothing to send.
 */
export function metadataWithContext(existing: unknown, ctx: Context, isRequest: boolean): unknown {
  if (existing !== undefined && !isRecord(existing)) {
    return existing;
  }
  const metadata: RedisPacketMetadata = {};
  if (existing) {
    for (const key of Object.keys(existing)) {
      metadata[key] = existing[key] as string;
    }
  }
  injectContext(ctx, metadata, redisMetadataSetter);
  if (isRequest) {
    metadata[REPLY_CONTEXT_KEY] = REPLY_CONTEXT_REQUESTED;
  }
  return existing === undefined && Object.keys(metadata).length === 0 ? undefined : metadata;
}

/** Whether an incoming request's metadata asks for the consumer's context on the reply. */
export function requestsReplyContext(metadata: unknown): boolean {
  return redisMetadataGetter.get(metadata, REPLY_CONTEXT_KEY) === REPLY_CONTEXT_REQUESTED;
}

/**
 * A serialized reply with the consumer's context (`ctx`) in its `metadata`, written fresh: nothing
 * of the request's metadata is copied back. A reply that is not an object (a custom serializer's
 * string) is returned as it is, and so is one to which there is nothing to add.
 */
export function replyWithContext<T>(serialized: T, ctx: Context): T {
  if (!isRecord(serialized)) {
    return serialized;
  }
  const metadata: RedisPacketMetadata = {};
  injectContext(ctx, metadata, redisMetadataSetter);
  return Object.keys(metadata).length === 0 ? serialized : ({ ...serialized, metadata } as T);
}

/**
 * A reply as Nest's response deserializer expects it: without the `metadata` a traced server adds
 * (Nest 12's would take a reply with an extra key for a foreign payload). Only a Nest reply envelope
 * (an `id`, and nothing but envelope keys) loses it; any other payload is returned as it is.
 */
export function withoutReplyMetadata(value: unknown): unknown {
  if (!isRecord(value) || !('metadata' in value) || !('id' in value)) {
    return value;
  }
  const reply: Record<string, unknown> = {};
  for (const key of Object.keys(value)) {
    if (!REPLY_ENVELOPE_KEYS.has(key)) {
      return value;
    }
    if (key !== 'metadata') {
      reply[key] = value[key];
    }
  }
  return reply;
}
