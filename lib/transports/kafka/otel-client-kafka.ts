import { ClientKafka, type KafkaOptions, type PacketId, type ReadPacket } from '@nestjs/microservices';
import { context, diag, ROOT_CONTEXT, type Context } from '@opentelemetry/api';
import { Observable } from 'rxjs';
import { ATTR_MESSAGING_BATCH_MESSAGE_COUNT, ATTR_MESSAGING_CLIENT_ID, ATTR_MESSAGING_MESSAGE_CONVERSATION_ID } from '../../semconv.js';
import { addAttributes } from '../../utils/attributes.js';
import { producerSpanEnder, startProducerSpan, type MessagingClientTracingOptions } from '../shared/messaging-tracing.js';
import { noteTracedTransport } from '../../utils/traced-transport.js';
import { captureMessageHeaders, messageCaptureOf } from '../shared/message-capture.js';
import { kafkaHeaderGetter } from './kafka.carrier.js';
import {
  ackAttributes,
  brokerAttributes,
  getProducerSink,
  KAFKA_SYSTEM,
  recordAttributes,
  sinkOfRecord,
  withProducerSink,
  withTraceHeaders,
  type ProducerSpanSink,
  type RecordMetadataLike,
  type SerializerLike,
} from './kafka-tracing.js';
import { pendingRequestsFor, traceRequestReply } from '../shared/producer-tracer.js';
import { kafkaAckNotRead, producerSpanStartFailed } from '../../otel.messages.js';
import type { ClientStatusSubject } from '../shared/client-status.js';

/** Options of {@link OtelClientKafka}: those of Nest's `ClientKafka`, plus `otel`. */
export type OtelClientKafkaOptions = Required<KafkaOptions>['options'] & {
  /** Publish hook and ignore predicate. Default none. See {@link MessagingClientTracingOptions}. */
  otel?: MessagingClientTracingOptions;
};


interface ProducerSpan {
  readonly ctx: Context;
  readonly sink: ProducerSpanSink;
  readonly end: (error?: unknown, errorType?: string) => void;
}

/**
 * Nest's Kafka client with a PRODUCER span `send {topic}` for `send()`, `emit()` and
 * `emitBatch()`, whose context goes out in the record headers through the global propagator.
 * Headers you set on a record (`{ key, value, headers }`) are kept; only the propagator's are
 * written (into a copy: your headers object is not modified).
 *
 * - `emit()` / `emitBatch()`: the span ends when the broker acknowledges the record (partition
 *   and offset come from that acknowledgement) or the send fails.
 * - `send()`: one span per subscription, from connecting to the reply on `<topic>.reply`. It ends
 *   when the reply stream completes (OK), errors (ERROR: an error reply, a failed send, the broker
 *   unreachable, the client closed), or is unsubscribed: after at least one reply that is OK
 *   (`firstValueFrom`), before any reply it is ERROR with `error.type` `cancelled` (an rxjs
 *   `timeout()` or an abandoned request).
 *
 * Reply values reach your subscriber in the context it subscribed in, not the driver's.
 *
 * ```ts
 * ClientsModule.register([{ name: 'ORDERS', customClass: OtelClientKafka, options: { client: { brokers } } }]);
 * ```
 *
 * @publicApi
 */
export class OtelClientKafka extends ClientKafka {
  /** Type-only widening, for `customClass`: see {@link ClientStatusSubject}. */
  protected declare _status$: ClientStatusSubject;
  /** Requests in flight, on a Nest whose close() leaves them pending (Nest 11). */
  private readonly pendingRequests = pendingRequestsFor(this);

  private readonly tracing: MessagingClientTracingOptions | undefined;

  constructor(options: OtelClientKafkaOptions) {
    const { otel, ...kafkaOptions } = options ?? {};
    super(kafkaOptions);
    // Header and body capture options: a wrong one fails here, at bootstrap.
    messageCaptureOf(otel, 'OtelClientKafka otel');
    this.tracing = otel;
    noteTracedTransport(this, 'Kafka client');
  }

  /**
   * Nest's close. On a Nest whose close leaves requests in flight pending (Nest 11), their
   * PRODUCER spans end first, with ERROR and `error.type` `client_closed`; Nest 12.1 fails
   * those requests itself ('Connection closed'), and their spans get that error.
   */
  override async close(): Promise<void> {
    this.pendingRequests?.endAllClosed();
    return super.close();
  }

  override send<TResult = any, TInput = any>(pattern: any, data: TInput): Observable<TResult> {
    const source = super.send<TResult, TInput>(pattern, data);
    if (pattern === null || pattern === undefined || data === null || data === undefined) {
      return source;
    }
    return traceRequestReply(source, () => this.startProducer(pattern, false, data), undefined, this.pendingRequests);
  }

  override emit<TResult = any, TInput = any>(pattern: any, data: TInput): Observable<TResult> {
    if (pattern === null || pattern === undefined || data === null || data === undefined) {
      return super.emit<TResult, TInput>(pattern, data);
    }
    const producer = this.startProducer(pattern, true, data);
    if (!producer) {
      return super.emit<TResult, TInput>(pattern, data);
    }
    // The record is serialized (and its headers written) inside the span's context.
    const source = context.with(producer.ctx, () => super.emit<TResult, TInput>(pattern, data));
    this.endWith(source, producer);
    return source;
  }

  override emitBatch<TResult = any, TInput = any>(pattern: any, data: { messages: TInput[] }): Observable<TResult> {
    // Nest sends nothing for an empty batch: no span either.
    if (pattern === null || pattern === undefined || !Array.isArray(data?.messages) || data.messages.length === 0) {
      return super.emitBatch<TResult, TInput>(pattern, data);
    }
    const producer = this.startProducer(pattern, true, data, data.messages.length);
    if (!producer) {
      return super.emitBatch<TResult, TInput>(pattern, data);
    }
    const source = context.with(producer.ctx, () => super.emitBatch<TResult, TInput>(pattern, data));
    this.endWith(source, producer);
    return source;
  }

  /**
   * Connections are made outside any request's context, so the driver's background work
   * (fetch loops, reconnects) never runs inside the span that happened to connect first.
   */
  override connect(): ReturnType<ClientKafka['connect']> {
    return context.with(ROOT_CONTEXT, () => super.connect());
  }

  /**
   * The kafkajs client, with a producer whose `send` also reports the broker's acknowledgement
   * (partition, offset) to the span of the record: Nest's request path does not return it. The
   * driver itself is untouched; Nest 11 builds the client synchronously, Nest 12 asynchronously,
   * and so does this override. The return type is the base class's, whichever Nest the
   * declarations are compiled against (`T` with Nest 11's typings, `Promise<T>` with Nest 12's).
   */
  override createClient<T = any>(): ReturnType<typeof ClientKafka.prototype.createClient<T>> {
    const made: unknown = super.createClient<T>();
    return (isThenable(made) ? Promise.resolve(made).then(reportingAcks) : reportingAcks(made)) as ReturnType<
      typeof ClientKafka.prototype.createClient<T>
    >;
  }

  protected override assignPacketId(packet: ReadPacket): ReadPacket & PacketId {
    const withId = super.assignPacketId(packet);
    const sink = getProducerSink();
    if (sink && typeof withId?.id === 'string') {
      sink.span.setAttribute(ATTR_MESSAGING_MESSAGE_CONVERSATION_ID, withId.id);
    }
    return withId;
  }

  protected override initializeSerializer(options: Parameters<ClientKafka['initializeSerializer']>[0]): void {
    super.initializeSerializer(options);
    this.serializer = withTraceHeaders(this.serializer as SerializerLike) as typeof this.serializer;
  }

  /** `batchSize`: the number of records of an `emitBatch()`; they share one span. */
  private startProducer(pattern: unknown, isEvent: boolean, data: unknown, batchSize?: number): ProducerSpan | undefined {
    try {
      const topic = this.normalizePattern(pattern as Parameters<ClientKafka['normalizePattern']>[0]);
      // Property writes rather than spreads: this runs for every message.
      const attributes = addAttributes({}, brokerAttributes(this.brokers));
      attributes[ATTR_MESSAGING_CLIENT_ID] = this.clientId;
      if (batchSize !== undefined) {
        attributes[ATTR_MESSAGING_BATCH_MESSAGE_COUNT] = batchSize;
      }
      const { span, ctx } = startProducerSpan(
        { system: KAFKA_SYSTEM, destination: topic, pattern: topic, isEvent, attributes, data },
        this.tracing,
      );
      const sink: ProducerSpanSink = {
        span,
        onRecord: (record) => {
          // A batch's records share the span; one key or size would describe only one of them.
          if (batchSize === undefined) {
            span.setAttributes(recordAttributes(record));
          }
        },
        // otel.captureHeaders: the application's headers of a single record (a batch's would describe one of many).
        onHeaders:
          this.tracing?.captureHeaders && batchSize === undefined
            ? (headers) => span.setAttributes(captureMessageHeaders(messageCaptureOf(this.tracing), headers, kafkaHeaderGetter, {}))
            : undefined,
        onAck: (metadata) => {
          if (span.isRecording() && batchSize === undefined) {
            span.setAttributes(ackAttributes(metadata));
          }
        },
      };
      return { ctx: withProducerSink(ctx, sink), sink, end: producerSpanEnder(span) };
    } catch (err) {
      diag.error(producerSpanStartFailed('Kafka'), err);
      return undefined;
    }
  }

  /** Ends the span of an `emit()` with its outcome. `emit()`'s Observable is hot: watching it changes nothing. */
  private endWith(source: Observable<unknown>, producer: ProducerSpan): void {
    source.subscribe({
      next: (metadata) => producer.sink.onAck(metadata as RecordMetadataLike[]),
      error: (err: unknown) => producer.end(err),
      complete: () => producer.end(),
    });
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && typeof value === 'object' && typeof (value as PromiseLike<unknown>).then === 'function';
}

/** The kafkajs `Kafka` client, whose producers report acknowledgements (see `createClient`). */
function reportingAcks<K>(kafka: K): K {
  if (kafka === null || typeof kafka !== 'object' || typeof (kafka as { producer?: unknown }).producer !== 'function') {
    return kafka;
  }
  return new Proxy(kafka as object, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== 'function') {
        return value;
      }
      if (property !== 'producer') {
        return value.bind(target);
      }
      return (...args: unknown[]) => reportingProducer(value.apply(target, args));
    },
  }) as K;
}

function reportingProducer<P>(producer: P): P {
  if (producer === null || typeof producer !== 'object' || typeof (producer as { send?: unknown }).send !== 'function') {
    return producer;
  }
  return new Proxy(producer as object, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== 'function') {
        return value;
      }
      if (property !== 'send') {
        return value.bind(target);
      }
      return (record: { messages?: unknown[] }) => {
        const sent = value.call(target, record) as Promise<RecordMetadataLike[]>;
        reportAck(record, sent);
        return sent;
      };
    },
  }) as P;
}

function reportAck(record: { messages?: unknown[] } | undefined, sent: unknown): void {
  try {
    const sinks = new Set(
      (Array.isArray(record?.messages) ? record.messages : []).map(sinkOfRecord).filter((sink) => sink !== undefined),
    );
    if (sinks.size === 0 || !isThenable(sent)) {
      return;
    }
    // Only observed: the caller gets (and handles) the same Promise, rejection included.
    sent.then(
      (metadata) => sinks.forEach((sink) => sink.onAck(metadata as RecordMetadataLike[])),
      () => undefined,
    );
  } catch (err) {
    diag.error(kafkaAckNotRead(), err);
  }
}
