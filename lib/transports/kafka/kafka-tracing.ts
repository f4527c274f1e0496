import { context, createContextKey, diag, type Attributes, type Context, type Span } from '@opentelemetry/api';
import {
  ATTR_MESSAGING_DESTINATION_PARTITION_ID,
  ATTR_MESSAGING_KAFKA_MESSAGE_KEY,
  ATTR_MESSAGING_KAFKA_MESSAGE_TOMBSTONE,
  ATTR_MESSAGING_KAFKA_OFFSET,
  ATTR_MESSAGING_MESSAGE_BODY_SIZE,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
} from '../../semconv.js';
import { bodySize, injectContext } from '../shared/messaging-tracing.js';
import { kafkaHeaderSetter } from './kafka.carrier.js';
import { messageContextNotAdded } from '../../otel.messages.js';

/** `messaging.system` of this transport. */
export const KAFKA_SYSTEM = 'kafka';

/** The parts of a Kafka record (kafkajs `Message`) tracing reads or writes. */
export interface KafkaRecordLike {
  key?: unknown;
  value?: unknown;
  partition?: unknown;
  headers?: Record<string, unknown> | null;
}

/** The parts of kafkajs' `RecordMetadata` (the broker's acknowledgement) tracing reads. */
export interface RecordMetadataLike {
  topicName?: string;
  partition?: number;
  baseOffset?: string;
  offset?: string;
}

/** Nest's serializer contract (`Serializer` of @nestjs/microservices). */
export interface SerializerLike {
  serialize(value: any, options?: Record<string, any>): any;
}

/**
 * Where the records of one PRODUCER span report to. Set in the context the client dispatches in,
 * read by the serializer (each record), `assignPacketId` (the correlation id) and the producer
 * (the acknowledgement).
 */
export interface ProducerSpanSink {
  readonly span: Span;
  /** A record of this span was serialized (and its headers written). */
  onRecord(record: KafkaRecordLike): void;
  /** The headers the application gave a record of this span, before the trace context is written. */
  onHeaders?(headers: Record<string, unknown>): void;
  /** The broker acknowledged a send that carried records of this span. */
  onAck(metadata: readonly RecordMetadataLike[]): void;
}

const PRODUCER_SINK = createContextKey('otel-nest kafka producer span');

export function withProducerSink(ctx: Context, sink: ProducerSpanSink): Context {
  return ctx.setValue(PRODUCER_SINK, sink);
}

export function getProducerSink(ctx: Context = context.active()): ProducerSpanSink | undefined {
  return ctx.getValue(PRODUCER_SINK) as ProducerSpanSink | undefined;
}

/** Records handed to the producer, and the span each belongs to (for the acknowledgement). */
const recordSinks = new WeakMap<object, ProducerSpanSink>();

export function sinkOfRecord(record: unknown): ProducerSpanSink | undefined {
  return record !== null && typeof record === 'object' ? recordSinks.get(record) : undefined;
}

/**
 * Wraps a Nest serializer so that every record it produces carries the context active when it
 * was called, in a copy of the record's headers: the user's own headers (`{ key, value, headers }`)
 * are kept and their object is never modified; only the propagator's headers are written.
 */
export function withTraceHeaders(inner: SerializerLike): SerializerLike {
  return {
    serialize(value: unknown, options?: Record<string, any>): unknown {
      const ctx = context.active();
      const out = inner.serialize(value, options);
      if (out !== null && typeof out === 'object' && typeof (out as PromiseLike<unknown>).then === 'function') {
        return Promise.resolve(out).then((record) => addTraceHeaders(record, ctx));
      }
      return addTraceHeaders(out, ctx);
    },
  };
}

function addTraceHeaders(record: unknown, ctx: Context): unknown {
  if (record === null || typeof record !== 'object') {
    return record;
  }
  try {
    const kafkaRecord = record as KafkaRecordLike;
    const headers = { ...(kafkaRecord.headers ?? {}) };
    const sink = getProducerSink(ctx);
    sink?.onHeaders?.(headers);
    injectContext(ctx, headers, kafkaHeaderSetter);
    kafkaRecord.headers = headers;
    if (sink) {
      recordSinks.set(record, sink);
      sink.onRecord(kafkaRecord);
    }
  } catch (err) {
    diag.error(messageContextNotAdded('Kafka'), err);
  }
  return record;
}

/** A record key as the `messaging.kafka.message.key` attribute: text, bytes as UTF-8, numbers as text. */
export function keyAttribute(key: unknown): string | undefined {
  if (typeof key === 'string') {
    return key;
  }
  if (key instanceof Uint8Array) {
    return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('utf8');
  }
  if (typeof key === 'number' || typeof key === 'bigint') {
    return String(key);
  }
  return undefined;
}

/**
 * Key, body size and tombstone flag of one outgoing or incoming record, written into `attributes`
 * (a new object by default). A record whose value is null (or, before kafkajs encodes it,
 * undefined) is a tombstone; a record read without its value says nothing either way.
 */
export function recordAttributes(record: KafkaRecordLike, attributes: Attributes = {}): Attributes {
  const key = keyAttribute(record.key);
  if (key !== undefined) {
    attributes[ATTR_MESSAGING_KAFKA_MESSAGE_KEY] = key;
  }
  if ('value' in record && (record.value === null || record.value === undefined)) {
    attributes[ATTR_MESSAGING_KAFKA_MESSAGE_TOMBSTONE] = true;
  }
  const size = bodySize(record.value);
  if (size !== undefined) {
    attributes[ATTR_MESSAGING_MESSAGE_BODY_SIZE] = size;
  }
  return attributes;
}

/** Partition and offset of a single-record send, from the broker's acknowledgement. */
export function ackAttributes(metadata: readonly RecordMetadataLike[] | undefined): Attributes {
  const attributes: Attributes = {};
  // One record goes to one partition; with several entries we cannot tell which is ours.
  if (!Array.isArray(metadata) || metadata.length !== 1) {
    return attributes;
  }
  const [ack] = metadata;
  if (typeof ack?.partition === 'number' && ack.partition >= 0) {
    attributes[ATTR_MESSAGING_DESTINATION_PARTITION_ID] = String(ack.partition);
  }
  const offset = offsetAttribute(ack?.baseOffset ?? ack?.offset);
  if (offset !== undefined) {
    attributes[ATTR_MESSAGING_KAFKA_OFFSET] = offset;
  }
  return attributes;
}

/** A Kafka offset (kafkajs gives strings) as the integer attribute; negative or unknown: none. */
export function offsetAttribute(offset: unknown): number | undefined {
  const value = typeof offset === 'string' && offset !== '' ? Number(offset) : offset;
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}

/**
 * `server.address` / `server.port` of the first bootstrap broker (`host:port`, `[v6]:port`).
 * Nothing when brokers come from a function (discovered at connect time). The object is shared
 * (frozen): copy it to add to it.
 */
export function brokerAttributes(brokers: unknown): Readonly<Attributes> {
  const first = Array.isArray(brokers) ? brokers[0] : undefined;
  if (typeof first !== 'string' || first === '') {
    return NO_ATTRIBUTES;
  }
  // Computed for every message: parse each broker string once.
  let attributes = byBroker.get(first);
  if (attributes === undefined) {
    attributes = Object.freeze(parseBroker(first));
    if (byBroker.size >= MAX_BROKERS) {
      byBroker.clear();
    }
    byBroker.set(first, attributes);
  }
  return attributes;
}

const NO_ATTRIBUTES: Readonly<Attributes> = Object.freeze({});
const byBroker = new Map<string, Readonly<Attributes>>();
const MAX_BROKERS = 64;

function parseBroker(first: string): Attributes {
  const text = first.trim();
  let host = text;
  let port: string | undefined;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (bracketed) {
    host = bracketed[1]!;
    port = bracketed[2];
  } else {
    const colon = text.indexOf(':');
    // One colon: `host:port`. More than one without brackets: a bare IPv6 address, no port.
    if (colon > 0 && colon === text.lastIndexOf(':') && /^\d+$/.test(text.slice(colon + 1))) {
      host = text.slice(0, colon);
      port = text.slice(colon + 1);
    }
  }
  const attributes: Attributes = { [ATTR_SERVER_ADDRESS]: host };
  if (port !== undefined) {
    attributes[ATTR_SERVER_PORT] = Number(port);
  }
  return attributes;
}
