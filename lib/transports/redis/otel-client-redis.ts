import { ClientRedis, type PacketId, type ReadPacket, type WritePacket } from '@nestjs/microservices';
import { context, createContextKey, ROOT_CONTEXT, type Attributes, type Context, type Span } from '@opentelemetry/api';
import type { Observable } from 'rxjs';
import { ATTR_MESSAGING_MESSAGE_CONVERSATION_ID, ATTR_MESSAGING_MESSAGE_ID } from '../../semconv.js';
import { producerSpanEnder, startProducerSpan, type MessagingClientTracingOptions } from '../shared/messaging-tracing.js';
import { pendingRequestsFor, traceEmit, traceRequestReply } from '../shared/producer-tracer.js';
import { noteTracedTransport } from '../../utils/traced-transport.js';
import { diagLimited } from '../../utils/diag-limited.js';
import { messageContextNotAdded, producerSpanStartFailed } from '../../otel.messages.js';
import type { ClientStatusSubject } from '../shared/client-status.js';
import { REDIS_MESSAGING_SYSTEM, redisDestination, redisServerAttributes } from './redis.attributes.js';
import { metadataWithContext, withoutReplyMetadata } from './redis.carrier.js';

/** Nest's Redis client options (Nest 12 adds `returnBuffers` to those of Nest 11). */
type RedisClientOptions = ConstructorParameters<typeof ClientRedis>[0];

/** Options of {@link OtelClientRedis}: Nest's Redis client options, plus `otel`. */
export type OtelClientRedisOptions = RedisClientOptions & {
  /** Publish hook and ignore predicate. Default none. See {@link MessagingClientTracingOptions}. */
  otel?: MessagingClientTracingOptions;
};

/** The PRODUCER span of the message being sent, in the context Nest's send/emit path runs in. */
const PRODUCER_SPAN = createContextKey('otel-nest Redis producer span');

interface Producer {
  ctx: Context;
  end: (error?: unknown, errorType?: string) => void;
}

/**
 * Nest's `ClientRedis` with a PRODUCER span `send {channel}` for every `send()` and `emit()`, whose
 * context (and the caller's baggage) goes out in the `metadata` of Nest's JSON packet, written by the
 * global propagator: `{"pattern":…,"data":…,"metadata":{"traceparent":…},"id":…}`. The application's
 * `data` is unchanged; metadata set by the application's own dispatch hook (Nest 12's
 * `setOnDispatchHook`) is kept.
 *
 * ```ts
 * ClientsModule.register([{ name: 'ORDERS', customClass: OtelClientRedis, options: { host, port } }]);
 * ```
 *
 * `send()`: the span starts when the Observable is subscribed and ends when the last reply arrives,
 * when an error reply arrives (ERROR, `error.type`), when sending fails (Redis unreachable: ERROR),
 * or when the subscriber unsubscribes: after a reply that is a success, before any reply it is ERROR
 * with `error.type` `cancelled` (an rxjs `timeout()`). Requests ask the server for its context on
 * the reply (`"otel-reply-context":"1"`); the reply's `metadata` is removed before Nest's
 * deserializer reads it. Replies are delivered in the caller's context.
 *
 * `emit()`: the span ends when Redis accepted the `PUBLISH` (ERROR when it failed).
 *
 * @publicApi
 */
export class OtelClientRedis extends ClientRedis {
  /** Type-only widening, for `customClass`: see {@link ClientStatusSubject}. */
  protected declare _status$: ClientStatusSubject;
  /** Requests in flight, on a Nest whose close() leaves them pending (Nest 11). */
  private readonly pendingRequests = pendingRequestsFor(this);
  private readonly serverAttributes: Readonly<Attributes>;

  private readonly tracing: MessagingClientTracingOptions | undefined;

  constructor(options: OtelClientRedisOptions = {}) {
    const { otel, ...redisOptions } = options ?? {};
    super(redisOptions);
    this.tracing = otel;
    this.serverAttributes = Object.freeze(redisServerAttributes(redisOptions));
    noteTracedTransport(this, 'Redis client');
  }

  /**
   * Connects outside any request's context: ioredis's socket callbacks (replies, reconnects) run in
   * the context the connection was opened in, which would otherwise be the context of whichever
   * request happened to connect first.
   */
  override connect(): Promise<any> {
    return context.with(ROOT_CONTEXT, () => super.connect());
  }

  /**
   * Nest's close. On a Nest whose close leaves requests in flight pending (Nest 11), their PRODUCER
   * spans end first, with ERROR and `error.type` `client_closed`; Nest 12.1 fails those requests
   * itself ('Connection closed'), and their spans get that error.
   */
  override async close(): Promise<void> {
    this.pendingRequests?.endAllClosed();
    return super.close();
  }

  override send<TResult = any, TInput = any>(pattern: any, data: TInput): Observable<TResult> {
    const source = super.send<TResult, TInput>(pattern, data);
    if (isNil(pattern) || isNil(data)) {
      return source;
    }
    return traceRequestReply(source, () => this.startProducer(pattern, false, data), undefined, this.pendingRequests);
  }

  override emit<TResult = any, TInput = any>(pattern: any, data: TInput): Observable<TResult> {
    if (isNil(pattern) || isNil(data)) {
      return super.emit<TResult, TInput>(pattern, data);
    }
    const producer = this.startProducer(pattern, true, data);
    if (!producer) {
      return super.emit<TResult, TInput>(pattern, data);
    }
    return traceEmit(() => super.emit<TResult, TInput>(pattern, data), producer);
  }

  /**
   * A request goes out with the active context in its metadata, and asks for the consumer's on the
   * reply. Overridden here rather than through Nest 12's `setOnDispatchHook`, which Nest 11 lacks:
   * the packet reaching `publish` already carries what the application's own dispatch hook set, so
   * its hook is never replaced, on either major.
   */
  protected override publish(partialPacket: ReadPacket, callback: (packet: WritePacket) => any): () => void {
    return super.publish(withContext(partialPacket, true), callback);
  }

  /** An event goes out with the active context in its metadata. */
  protected override dispatchEvent(packet: ReadPacket): Promise<any> {
    return super.dispatchEvent(withContext(packet, false));
  }

  /** Called by Nest's `publish` for each request: the id is the message id and the reply correlation id. */
  protected override assignPacketId(packet: ReadPacket): ReadPacket & PacketId {
    const withId = super.assignPacketId(packet);
    const span = context.active().getValue(PRODUCER_SPAN) as Span | undefined;
    if (span) {
      const id = String(withId.id);
      span.setAttribute(ATTR_MESSAGING_MESSAGE_ID, id);
      span.setAttribute(ATTR_MESSAGING_MESSAGE_CONVERSATION_ID, id);
    }
    return withId;
  }

  /** Replies lose the `metadata` a traced server adds, before Nest's (or the application's) deserializer sees them. */
  protected override initializeDeserializer(options: RedisClientOptions): void {
    super.initializeDeserializer(options);
    // Runs inside super(): no field of this class exists yet.
    const inner = this.deserializer;
    this.deserializer = {
      deserialize: (value, deserializeOptions) => inner.deserialize(withoutReplyMetadata(value), deserializeOptions),
    };
  }

  private startProducer(pattern: unknown, isEvent: boolean, data: unknown): Producer | undefined {
    try {
      const channel = this.normalizePattern(pattern as Parameters<ClientRedis['normalizePattern']>[0]);
      const { span, ctx } = startProducerSpan({
        system: REDIS_MESSAGING_SYSTEM,
        ...redisDestination(channel),
        pattern: channel,
        isEvent,
        attributes: this.serverAttributes,
        data,
      }, this.tracing);
      return { ctx: ctx.setValue(PRODUCER_SPAN, span), end: producerSpanEnder(span) };
    } catch (err) {
      diagLimited('error', producerSpanStartFailed('Redis'), err);
      return undefined;
    }
  }
}

/** `packet` with the active context (and, for a request, the reply-context request) in its metadata; never throws. */
function withContext<P extends ReadPacket>(packet: P, isRequest: boolean): P {
  try {
    const existing = (packet as { metadata?: unknown }).metadata;
    const metadata = metadataWithContext(existing, context.active(), isRequest);
    return metadata === existing ? packet : { ...packet, metadata };
  } catch (err) {
    diagLimited('error', messageContextNotAdded('Redis'), err);
    return packet;
  }
}

function isNil(value: unknown): value is null | undefined {
  return value === null || value === undefined;
}
