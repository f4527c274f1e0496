import {
  ServerRedis,
  type MessageHandler,
  type ReadPacket,
  type RedisContext,
  type RedisOptions,
  type WritePacket,
} from '@nestjs/microservices';
import { context, createContextKey, ROOT_CONTEXT, type Attributes } from '@opentelemetry/api';
import type { Observable, Subscription } from 'rxjs';
import { ATTR_MESSAGING_MESSAGE_BODY_SIZE, ATTR_MESSAGING_MESSAGE_CONVERSATION_ID, ATTR_MESSAGING_MESSAGE_ID } from '../../semconv.js';
import { HandlerCache } from '../shared/handler-cache.js';
import { addAttributes } from '../../utils/attributes.js';
import { diagLimited } from '../../utils/diag-limited.js';
import { ConsumerTracer, type ProcessingEndHook, type ProcessingStartHook } from '../shared/consumer-tracer.js';
import {
  bodySize,
  getConsumerState,
  type IncomingMessageDescription,
  type MessagingServerTracingOptions,
} from '../shared/messaging-tracing.js';
import { noteTracedTransport } from '../../utils/traced-transport.js';
import { replyContextNotAdded } from '../../otel.messages.js';
import { redisContextHasMetadata, redisServerCatchesMessageErrors } from '../../nest-compat.js';
import { REDIS_MESSAGING_SYSTEM, redisDestination, redisServerAttributes } from './redis.attributes.js';
import { redisMetadataGetter, replyWithContext, requestsReplyContext } from './redis.carrier.js';

/** Options of {@link OtelServerRedis}: Nest's Redis options, plus `otel`. */
export type OtelServerRedisOptions = Required<RedisOptions>['options'] & {
  /** When the producer's context is the parent of a handler's span, or a link. Default: see {@link MessagingServerTracingOptions}. */
  otel?: MessagingServerTracingOptions;
};

type RedisServerOptions = Required<RedisOptions>['options'];
type StartHook = Parameters<ServerRedis['setOnProcessingStartHook']>[0];
type EndHook = Parameters<ServerRedis['setOnProcessingEndHook']>[0];

/** What `handleMessage` knows and the processing hooks do not. */
interface IncomingRedisMessage {
  /** What the handler is registered under: the `PSUBSCRIBE` pattern with `wildcards: true`, else the channel. */
  subscription: string;
  /** Bytes of the message as published (Nest's JSON packet). */
  size?: number;
  /** The deserialized packet's `metadata`, kept where `RedisContext` does not hold it (Nest 11). */
  metadata?: unknown;
  /** Nest's packet id, for a request. */
  requestId?: unknown;
}

// Set around `handleMessage`, so that the deserializer, `handleEvent` and `getPublisher`, which run
// in its async flow, can tie the raw message to the message's RedisContext.
const INCOMING_REDIS_MESSAGE = createContextKey('otel-nest incoming Redis message');
/** Set around the publish of a reply whose request asked for the consumer's context. */
const REPLY_WITH_CONTEXT = createContextKey('otel-nest Redis reply with context');
/** Nest 12's RedisContext carries the packet metadata; Nest 11's does not. */
const CONTEXT_HAS_METADATA = redisContextHasMetadata();
/** Nest 12 catches what handleMessage rejects with; Nest 11 does not (see handleMessage). */
const NEST_CATCHES_MESSAGE_ERRORS = redisServerCatchesMessageErrors();

/**
 * Nest's `ServerRedis` with a CONSUMER span `process {channel}` (`process {pattern}` for a handler
 * registered under a glob pattern with `wildcards: true`, e.g. `process orders.*.get`) around each
 * message's whole handler pipeline (guards, interceptors, pipes, handler, and the Observable it
 * returns), continuing or linking the producer's context read from the `metadata` of Nest's JSON
 * packet. A reply carries the consumer's context in its own `metadata` when the request asked for it
 * (`"otel-reply-context":"1"`, which {@link OtelClientRedis} sends); replies to any other requester
 * are Nest's, unchanged.
 *
 * ```ts
 * app.connectMicroservice({ strategy: new OtelServerRedis({ host: '127.0.0.1', port: 6379 }) });
 * ```
 *
 * `@MessagePattern` handlers are children of the producer span; `@EventPattern` handlers start a
 * new trace linked to it. Change it per server with `otel`, or per handler with
 * `@Traced({ consume })` / `@EventPattern(pattern, { otelConsume })`.
 *
 * @publicApi
 */
export class OtelServerRedis extends ServerRedis {
  private readonly consumerTracer: ConsumerTracer<RedisContext>;
  private readonly serverAttributes: Readonly<Attributes>;
  private readonly incoming = new WeakMap<RedisContext, IncomingRedisMessage>();
  private readonly handlerCache = new HandlerCache<MessageHandler>();

  constructor(options: OtelServerRedisOptions = {}) {
    const { otel, ...redisOptions } = options ?? {};
    super(redisOptions);
    noteTracedTransport(this, 'Redis server');
    this.serverAttributes = Object.freeze(redisServerAttributes(redisOptions));
    this.consumerTracer = new ConsumerTracer<RedisContext>(this, (ctx) => this.describe(ctx), otel);
    super.setOnProcessingStartHook(this.consumerTracer.startHook as StartHook);
    super.setOnProcessingEndHook(this.consumerTracer.endHook as EndHook);
  }

  /** Hooks set by others run inside the CONSUMER span. */
  override setOnProcessingStartHook(hook: StartHook): void {
    this.consumerTracer.chainStart(hook as ProcessingStartHook);
  }

  override setOnProcessingEndHook(hook: EndHook): void {
    this.consumerTracer.chainEnd(hook as ProcessingEndHook);
  }

  /** Nest's lookup, cached per pattern: Nest, the tracer and `describe` each look up every message's handler. */
  override getHandlerByPattern(pattern: string): MessageHandler | null {
    // Nest's constructor can call this before this class's fields exist.
    return this.handlerCache
      ? this.handlerCache.lookup(pattern, this.getHandlers().size, () => super.getHandlerByPattern(pattern))
      : super.getHandlerByPattern(pattern);
  }

  override addHandler(...args: Parameters<ServerRedis['addHandler']>): void {
    super.addHandler(...args);
    this.handlerCache?.clear();
  }

  /**
   * `channel` is what the handler is registered under (the pattern, with `wildcards: true`),
   * `pattern` the channel the message was published on (Nest's naming).
   */
  override handleMessage(channel: string, buffer: string, pub: any, pattern: string): Promise<any> {
    const message: IncomingRedisMessage = { subscription: channel, size: bodySize(buffer) };
    // Each message starts from the root context, not from the one the connection was opened in.
    const handled = context.with(ROOT_CONTEXT.setValue(INCOMING_REDIS_MESSAGE, message), () =>
      super.handleMessage(channel, buffer, pub, pattern),
    );
    if (NEST_CATCHES_MESSAGE_ERRORS) {
      return handled;
    }
    return handled.catch((error: unknown) => {
      // Nest 11 calls this from the message listener without a catch: a packet a custom
      // deserializer cannot handle would be an unhandled rejection that ends the process.
      // Logged as Nest 12 does.
      this.logger.error(error);
    });
  }

  override handleEvent(pattern: string, packet: ReadPacket, ctx: RedisContext): Promise<any> {
    this.remember(ctx);
    this.consumerTracer.markEvent(ctx);
    return super.handleEvent(pattern, packet, ctx);
  }

  /**
   * Called for requests only, before processing starts; `id` is Nest's packet id. Each reply goes
   * through `publishReply` (Nest 11 runs the end hook inside every reply's publish), and carries
   * the consumer's context when the request asked for it.
   */
  override getPublisher(pub: any, pattern: any, id: string, ctx: RedisContext): (response: any) => any {
    const message = this.remember(ctx, id);
    const publish = super.getPublisher(pub, pattern, id, ctx);
    let withContext = false;
    try {
      withContext = requestsReplyContext(this.metadataOf(ctx, message));
    } catch {
      // No context on the reply, then.
    }
    return (response: any) =>
      this.consumerTracer.publishReply(ctx, response, () =>
        withContext ? context.with(context.active().setValue(REPLY_WITH_CONTEXT, true), () => publish(response)) : publish(response),
      );
  }

  /**
   * A request's span ends when its reply stream settles, as Nest 12.1 runs the end hook; Nest 11
   * runs it from the reply publisher only.
   */
  override send(stream$: Observable<any>, respond: (data: WritePacket) => Promise<unknown> | void): Subscription {
    return super.send(this.consumerTracer.watchReply(stream$, true), respond);
  }

  /** Replies that asked for it carry the consumer's context in their `metadata`. */
  protected override initializeSerializer(options: RedisServerOptions): void {
    super.initializeSerializer(options);
    // Runs inside super(): no field of this class exists yet.
    const inner = this.serializer;
    this.serializer = {
      serialize: (packet, serializeOptions) => addReplyContext(inner.serialize(packet, serializeOptions)),
    };
  }

  /** On Nest 11, whose RedisContext does not hold it, the packet's metadata is kept here. */
  protected override initializeDeserializer(options: RedisServerOptions): void {
    super.initializeDeserializer(options);
    if (CONTEXT_HAS_METADATA) {
      return;
    }
    const inner = this.deserializer;
    this.deserializer = {
      deserialize: (value, deserializeOptions) => {
        const packet = inner.deserialize(value, deserializeOptions);
        if (isThenable(packet)) {
          return packet.then((resolved) => keepMetadata(resolved));
        }
        return keepMetadata(packet);
      },
    };
  }

  private remember(ctx: RedisContext, requestId?: unknown): IncomingRedisMessage | undefined {
    const message = context.active().getValue(INCOMING_REDIS_MESSAGE) as IncomingRedisMessage | undefined;
    if (message && ctx) {
      // The message object is this message's own (see handleMessage): no copy needed.
      if (requestId !== undefined) {
        message.requestId = requestId;
      }
      this.incoming.set(ctx, message);
    }
    return message;
  }

  private metadataOf(ctx: RedisContext, message: IncomingRedisMessage | undefined): unknown {
    return CONTEXT_HAS_METADATA ? (ctx as { getMetadata?: () => unknown }).getMetadata?.() : message?.metadata;
  }

  private describe(ctx: RedisContext): IncomingMessageDescription<unknown> | undefined {
    if (typeof ctx?.getChannel !== 'function') {
      return undefined;
    }
    const channel = String(ctx.getChannel());
    const message = this.incoming.get(ctx);
    this.incoming.delete(ctx);
    const subscription = message?.subscription ?? channel;
    const attributes = addAttributes({}, this.serverAttributes);
    const id = message?.requestId;
    if (typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id))) {
      attributes[ATTR_MESSAGING_MESSAGE_ID] = String(id);
      attributes[ATTR_MESSAGING_MESSAGE_CONVERSATION_ID] = String(id);
    }
    if (message?.size !== undefined) {
      attributes[ATTR_MESSAGING_MESSAGE_BODY_SIZE] = message.size;
    }
    return {
      system: REDIS_MESSAGING_SYSTEM,
      ...redisDestination(channel, subscription),
      pattern: subscription,
      carrier: this.metadataOf(ctx, message),
      getter: redisMetadataGetter,
      attributes,
    };
  }
}

/** Keeps a deserialized packet's `metadata` on the message being handled (Nest 11); never throws. */
function keepMetadata<T>(packet: T): T {
  try {
    const message = context.active().getValue(INCOMING_REDIS_MESSAGE) as IncomingRedisMessage | undefined;
    if (message && packet !== null && typeof packet === 'object') {
      message.metadata = (packet as { metadata?: unknown }).metadata;
    }
  } catch {
    // Without metadata, the message starts a new trace.
  }
  return packet;
}

/**
 * Adds the active consumer's context to a serialized reply whose request asked for it (see
 * getPublisher). Outside a traced message (e.g. Nest's "no handler" reply) nothing is added, so no
 * unrelated context is ever sent back.
 */
function addReplyContext<T>(serialized: T): T {
  try {
    const active = context.active();
    if (active.getValue(REPLY_WITH_CONTEXT) !== true || !getConsumerState(active)) {
      return serialized;
    }
    return replyWithContext(serialized, active);
  } catch (err) {
    diagLimited('error', replyContextNotAdded('Redis'), err);
    return serialized;
  }
}

function isThenable(value: unknown): value is Promise<unknown> {
  return value !== null && typeof value === 'object' && typeof (value as Promise<unknown>).then === 'function';
}
