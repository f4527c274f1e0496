import {
  KafkaHeaders as NestKafkaHeaders,
  ServerKafka,
  type KafkaContext,
  type KafkaOptions,
  type MessageHandler,
} from '@nestjs/microservices';
import { context, diag, ROOT_CONTEXT, type Context } from '@opentelemetry/api';
import type { Observable } from 'rxjs';
import {
  ATTR_MESSAGING_CLIENT_ID,
  ATTR_MESSAGING_CONSUMER_GROUP_NAME,
  ATTR_MESSAGING_DESTINATION_PARTITION_ID,
  ATTR_MESSAGING_KAFKA_OFFSET,
  ATTR_MESSAGING_MESSAGE_CONVERSATION_ID,
} from '../../semconv.js';
import { addAttributes } from '../../utils/attributes.js';
import { HandlerCache } from '../shared/handler-cache.js';
import { ConsumerTracer, type ProcessingEndHook, type ProcessingStartHook } from '../shared/consumer-tracer.js';
import {
  getConsumerState,
  type IncomingMessageDescription,
  type MessagingServerTracingOptions,
} from '../shared/messaging-tracing.js';
import { noteTracedTransport } from '../../utils/traced-transport.js';
import { messageCaptureOf } from '../shared/message-capture.js';
import { kafkaHeaderGetter, type KafkaHeaderCarrier } from './kafka.carrier.js';
import {
  brokerAttributes,
  KAFKA_SYSTEM,
  offsetAttribute,
  recordAttributes,
  withTraceHeaders,
  type KafkaRecordLike,
  type SerializerLike,
} from './kafka-tracing.js';
import { kafkaRecordNotRead } from '../../otel.messages.js';

/** Options of {@link OtelServerKafka}: those of Nest's `ServerKafka`, plus `otel`. */
export type OtelServerKafkaOptions = Required<KafkaOptions>['options'] & {
  /**
   * How handler spans relate to the producer's span: `eventConsume` (default `'link'`) for
   * `@EventPattern`, `messageConsume` (default `'parent'`) for `@MessagePattern`. A handler's own
   * `@Traced({ consume })` or `@EventPattern(topic, { otelConsume })` wins.
   */
  otel?: MessagingServerTracingOptions;
};

type KafkaServerOptions = Required<KafkaOptions>['options'];
type StartHook = Parameters<ServerKafka['setOnProcessingStartHook']>[0];
type EndHook = Parameters<ServerKafka['setOnProcessingEndHook']>[0];
type EachMessagePayload = Parameters<ServerKafka['handleMessage']>[0];
type KafkaMessage = EachMessagePayload['message'];
type OutgoingReply = Parameters<ServerKafka['sendMessage']>[0];

/**
 * Nest's Kafka server with a CONSUMER span `process {topic}` around each record's whole handler
 * pipeline (guards, interceptors, pipes, handler, and the Observable it returns): a child of the
 * producer's span for `@MessagePattern`, a new trace linked to it for `@EventPattern`, by default.
 * A request's span lasts until its reply is published, and the reply carries the span's context
 * in its headers; a reply that cannot be published fails the span.
 *
 * Every delivery of a record gets its own span, related to the producer's context in the same
 * way: a record redelivered after a failure or a rebalance (same offset) is a second span with
 * the same parent or link, so both attempts show up.
 *
 * ```ts
 * app.connectMicroservice({ strategy: new OtelServerKafka({ client: { brokers }, consumer: { groupId } }) });
 * ```
 *
 * @publicApi
 */
export class OtelServerKafka extends ServerKafka {
  private readonly tracer: ConsumerTracer<KafkaContext>;
  /** Records being handled, by topic/partition/offset: their raw headers, key and value bytes. */
  private readonly inFlight = new Map<string, KafkaMessage>();
  /** The CONSUMER span's context of each request, for the headers of its reply. */
  private readonly replyContexts = new WeakMap<object, Context>();
  /** Contexts marked as events by `handleEvent`. */
  private readonly events = new WeakSet<object>();
  /**
   * Messages whose span ends later than Nest's end hook: an event when `handleEvent` settles, a
   * request when its last reply has been published (or failed to be).
   */
  private readonly pending = new WeakSet<object>();
  /** Pending messages for which Nest ran the end hook (so the user's end hook is due). */
  private readonly endHookDue = new WeakSet<object>();
  /** Messages whose span we end without Nest's end hook: the user's hook is not called for that one. */
  private readonly ownEnds = new WeakSet<object>();
  private readonly handlerCache = new HandlerCache<MessageHandler>();
  private userStartHook?: ProcessingStartHook;
  private userEndHook?: ProcessingEndHook;

  constructor(options: OtelServerKafkaOptions = {}) {
    const { otel, ...kafkaOptions } = options ?? {};
    super(kafkaOptions as KafkaServerOptions);
    // Header and body capture options: a wrong one fails here, at bootstrap.
    messageCaptureOf(otel, 'OtelServerKafka otel');
    noteTracedTransport(this, 'Kafka server');
    this.tracer = new ConsumerTracer<KafkaContext>(this, (ctx) => this.describe(ctx), otel);
    this.tracer.chainStart(this.innerStartHook);
    this.tracer.chainEnd(this.innerEndHook);
    super.setOnProcessingStartHook(this.tracer.startHook as StartHook);
    super.setOnProcessingEndHook(this.endHook as EndHook);
  }

  /** Hooks set by others (e.g. @nestjs/observe) keep running, inside the CONSUMER span. */
  override setOnProcessingStartHook(hook: StartHook): void {
    this.userStartHook = hook as ProcessingStartHook;
  }

  override setOnProcessingEndHook(hook: EndHook): void {
    this.userEndHook = hook as ProcessingEndHook;
  }

  /** Nest's lookup (RegExp patterns included), cached per pattern: Nest and the tracer each look up every record's handler. */
  override getHandlerByPattern(pattern: string): MessageHandler | null {
    // Nest's constructor can call this before this class's fields exist.
    return this.handlerCache
      ? this.handlerCache.lookup(pattern, this.getHandlers().size, () => super.getHandlerByPattern(pattern))
      : super.getHandlerByPattern(pattern);
  }

  override addHandler(...args: Parameters<ServerKafka['addHandler']>): void {
    super.addHandler(...args);
    this.handlerCache?.clear();
  }

  override async handleMessage(payload: EachMessagePayload): Promise<any> {
    const key = recordKey(payload?.topic, payload?.partition, payload?.message?.offset);
    if (key !== undefined) {
      this.inFlight.set(key, payload.message);
    }
    try {
      return await super.handleMessage(payload);
    } finally {
      if (key !== undefined) {
        this.inFlight.delete(key);
      }
    }
  }

  /**
   * An event's span ends when `handleEvent` settles, which for Kafka is when its handler, and the
   * Observable it returned, are done: Nest 12 runs the end hook from a `finalize` before a failed
   * stream's error reaches us, and Nest 11 runs none after a handler that returns a value or a
   * Promise. Either way the span gets the outcome, and ends once.
   */
  override async handleEvent(pattern: string, packet: Parameters<ServerKafka['handleEvent']>[1], ctx: KafkaContext): Promise<any> {
    this.tracer.markEvent(ctx);
    this.events.add(ctx);
    this.pending.add(ctx);
    try {
      return await super.handleEvent(pattern, packet, ctx);
    } finally {
      this.finish(ctx);
    }
  }

  override send(stream$: Observable<any>, respond: Parameters<ServerKafka['send']>[1]): ReturnType<ServerKafka['send']> {
    return super.send(this.tracer.watchReply(stream$), respond);
  }

  /**
   * Publishes a reply with the CONSUMER span's context in its headers. A request's span ends once
   * its last reply is published (Nest 12 runs the end hook earlier, when the handler's stream
   * ends; Nest 11 after each reply), so a reply that cannot be published fails the span.
   */
  override sendMessage(
    message: OutgoingReply,
    replyTopic: string,
    replyPartition: string | undefined | null,
    correlationId: string,
    kafkaContext: KafkaContext,
  ): ReturnType<ServerKafka['sendMessage']> {
    // Named as in Nest 11.1.4 to 12.1 (the override stops compiling if Nest changes them); the
    // request is found by its context, and an unknown one is published untraced.
    const ctx: object | undefined = isObject(kafkaContext) ? kafkaContext : undefined;
    const replyContext = ctx ? this.replyContexts.get(ctx) : undefined;
    const publish = () => super.sendMessage(message, replyTopic, replyPartition, correlationId, kafkaContext);
    // The serializer writes the active context into the reply's headers.
    const sent = replyContext ? context.with(replyContext, publish) : publish();
    if (!ctx || !replyContext || !message?.isDisposed) {
      return sent;
    }
    return sent.then(
      (metadata) => {
        this.finish(ctx);
        return metadata;
      },
      (err: unknown) => {
        this.fail(ctx, err);
        this.finish(ctx);
        throw err;
      },
    );
  }

  protected override initializeSerializer(options: Parameters<ServerKafka['initializeSerializer']>[0]): void {
    super.initializeSerializer(options);
    this.serializer = withTraceHeaders(this.serializer as SerializerLike) as typeof this.serializer;
  }

  private readonly innerStartHook: ProcessingStartHook = (transportId, ctx, done) => {
    // Runs inside the CONSUMER span's context (ConsumerTracer's start hook calls it there).
    if (isObject(ctx)) {
      this.replyContexts.set(ctx, context.active());
      if (!this.events.has(ctx)) {
        this.pending.add(ctx);
      }
    }
    const result = this.userStartHook ? this.userStartHook(transportId, ctx, done) : done();
    if (!isObject(ctx) || !isThenable(result)) {
      return result;
    }
    // Processing rejected (e.g. a KafkaRetriableException): no reply follows, the span ends now.
    return result.then(undefined, (err: unknown) => {
      this.fail(ctx, err);
      this.finish(ctx);
      throw err;
    });
  };

  /** What Nest calls at the end of processing. */
  private readonly endHook: ProcessingEndHook = (transportId, ctx) => {
    if (isObject(ctx) && this.pending.has(ctx)) {
      this.endHookDue.add(ctx);
      return;
    }
    this.tracer.endHook(transportId, ctx);
  };

  /** Runs after the span ended: the user's end hook, when Nest asked for it. */
  private readonly innerEndHook: ProcessingEndHook = (transportId, ctx) => {
    if (isObject(ctx) && this.ownEnds.delete(ctx)) {
      return;
    }
    this.userEndHook?.(transportId, ctx);
  };

  /** Ends a pending message's span once; the user's end hook runs only if Nest asked for it. */
  private finish(ctx: object): void {
    if (!this.pending.delete(ctx)) {
      return;
    }
    if (!this.endHookDue.delete(ctx)) {
      this.ownEnds.add(ctx);
    }
    this.tracer.endHook(this.transportId, ctx);
  }

  /** Keeps the first failure of a message for its span. */
  private fail(ctx: object, err: unknown): void {
    const state = getConsumerState(this.replyContexts.get(ctx) ?? ROOT_CONTEXT);
    if (state) {
      state.error ??= err;
    }
  }

  private describe(ctx: KafkaContext): IncomingMessageDescription<KafkaHeaderCarrier> | undefined {
    try {
      const topic = ctx.getTopic();
      const partition = ctx.getPartition();
      const parsed = ctx.getMessage() as KafkaRecordLike & { offset?: string };
      const key = recordKey(topic, partition, parsed?.offset);
      const raw = key === undefined ? undefined : this.inFlight.get(key);
      // The raw record keeps the bytes: headers as sent, the key, and the value's real size.
      const record: KafkaRecordLike = raw ?? { key: parsed?.key, headers: parsed?.headers };
      // Property writes rather than spreads: this runs for every record.
      const attributes = recordAttributes(record, addAttributes({}, brokerAttributes(this.brokers)));
      attributes[ATTR_MESSAGING_DESTINATION_PARTITION_ID] = String(partition);
      attributes[ATTR_MESSAGING_CONSUMER_GROUP_NAME] = this.groupId;
      attributes[ATTR_MESSAGING_CLIENT_ID] = this.clientId;
      const offset = offsetAttribute(parsed?.offset);
      if (offset !== undefined) {
        attributes[ATTR_MESSAGING_KAFKA_OFFSET] = offset;
      }
      const correlationId = parsed?.headers?.[NestKafkaHeaders.CORRELATION_ID];
      if (typeof correlationId === 'string' && correlationId !== '') {
        attributes[ATTR_MESSAGING_MESSAGE_CONVERSATION_ID] = correlationId;
      }
      return {
        system: KAFKA_SYSTEM,
        destination: topic,
        pattern: topic,
        carrier: (record.headers ?? {}) as KafkaHeaderCarrier,
        getter: kafkaHeaderGetter,
        attributes,
      };
    } catch (err) {
      diag.error(kafkaRecordNotRead(), err);
      return undefined;
    }
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return isObject(value) && typeof (value as PromiseLike<unknown>).then === 'function';
}

function isObject(value: unknown): value is object {
  return value !== null && (typeof value === 'object' || typeof value === 'function');
}

function recordKey(topic: unknown, partition: unknown, offset: unknown): string | undefined {
  return typeof topic === 'string' && typeof partition === 'number' && typeof offset === 'string'
    ? `${topic}\u0000${partition}\u0000${offset}`
    : undefined;
}
