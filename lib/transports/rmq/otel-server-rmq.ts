import { context, diag, type Attributes, type Context } from '@opentelemetry/api';
import { ServerRMQ, type MessageHandler, type ReadPacket, type RmqContext, type RmqOptions, type WritePacket } from '@nestjs/microservices';
import type { Observable, Subscription } from 'rxjs';
import {
  ATTR_MESSAGING_MESSAGE_BODY_SIZE,
  ATTR_MESSAGING_MESSAGE_CONVERSATION_ID,
  ATTR_MESSAGING_MESSAGE_ID,
  ATTR_MESSAGING_RABBITMQ_DELIVERY_TAG,
  ATTR_MESSAGING_RABBITMQ_ROUTING_KEY,
} from '../../semconv.js';
import { HandlerCache } from '../shared/handler-cache.js';
import { addAttributes } from '../../utils/attributes.js';
import { ConsumerTracer, type ProcessingEndHook, type ProcessingStartHook } from '../shared/consumer-tracer.js';
import {
  getConsumerState,
  injectContext,
  type IncomingMessageDescription,
  type MessagingServerTracingOptions,
} from '../shared/messaging-tracing.js';
import { noteTracedTransport } from '../../utils/traced-transport.js';
import { messageCaptureOf } from '../shared/message-capture.js';
import { rmqQueue } from '../../nest-compat.js';
import { consumeDestination, isTopicWildcard, queueFlags, RABBITMQ_SYSTEM, serverAttributes } from './rmq.attributes.js';
import { rmqHeaderGetter, rmqHeaderSetter, type RmqHeaders } from './rmq.carrier.js';
import { replyContextNotAdded, replyContextNotKept } from '../../otel.messages.js';

/** Options of {@link OtelServerRMQ}: Nest's RabbitMQ options, plus `otel`. */
export type OtelServerRmqOptions = NonNullable<RmqOptions['options']> & {
  /**
   * Parent-or-link policy of the CONSUMER spans. Default: `parent` for `@MessagePattern`, `link`
   * for `@EventPattern`; a handler's own `@Traced({ consume })` wins.
   */
  otel?: MessagingServerTracingOptions;
};

type NestStartHook = Parameters<ServerRMQ['setOnProcessingStartHook']>[0];
type NestEndHook = Parameters<ServerRMQ['setOnProcessingEndHook']>[0];

/** What the tracer reads of a delivery (amqplib's `ConsumeMessage`, declared here, see rmq.carrier.ts). */
interface Delivery {
  content?: { length: number };
  fields?: { exchange?: string; routingKey?: string; deliveryTag?: number };
  properties?: { headers?: RmqHeaders; messageId?: unknown; correlationId?: unknown };
}

/**
 * Nest's `ServerRMQ`, with a CONSUMER span `process {destination}` around the whole handler
 * pipeline of every message that has a handler: `messaging.destination.name` is
 * `{exchange}:{routing key}:{queue}` (empty parts left out, a routing key equal to the queue said
 * once: `process orders` for Nest's default queue mode), and a routing key that matched a wildcard
 * binding (`wildcards: true`, or a `routingKey` option with `*`/`#`) names the span after
 * `messaging.destination.template`, `{exchange}:{binding}:{queue}`, so many routing keys make one
 * span name. The producer's context comes from AMQP
 * `properties.headers` (read with the global propagator); a request-reply handler's span is its
 * child, an event handler's span starts a new trace linked to it (see `otel`). Replies carry the
 * CONSUMER span's context in their own `properties.headers`. Payloads and acknowledgements are
 * exactly Nest's.
 *
 * ```ts
 * app.connectMicroservice({ strategy: new OtelServerRMQ({ urls, queue: 'orders' }) });
 * ```
 *
 * @publicApi
 */
export class OtelServerRMQ extends ServerRMQ {
  private readonly tracer: ConsumerTracer<RmqContext>;
  private readonly connectionAttributes: Attributes;
  /** The context each message's handler ran in, so that its replies carry the CONSUMER span. */
  private readonly replyContexts = new WeakMap<object, Context>();
  /** Set while `sendMessage` serializes a reply: the context whose headers the reply gets. */
  private replyContext: Context | undefined;
  private readonly handlerCache = new HandlerCache<MessageHandler>();
  /** The options as given (Nest's copy is protected): exchange, binding and queue for the span names. */
  private readonly rmqOptions: NonNullable<RmqOptions['options']>;
  /** The registered pattern of each handler found through a wildcard (`wildcards: true`). */
  private readonly patternsByHandler = new WeakMap<MessageHandler, string>();

  constructor(options: OtelServerRmqOptions = {}) {
    const { otel, ...rmqOptions } = options;
    super(rmqOptions);
    // Header and body capture options: a wrong one fails here, at bootstrap.
    messageCaptureOf(otel, 'OtelServerRMQ otel');
    this.rmqOptions = rmqOptions;
    noteTracedTransport(this, 'RabbitMQ server');
    this.connectionAttributes = serverAttributes(rmqOptions.urls);
    this.tracer = new ConsumerTracer<RmqContext>(this, (ctx) => this.describe(ctx), otel);
    // The tracer starts the span and runs the rest of the pipeline in its context; the context is
    // kept for `sendMessage`, which Nest calls later, outside of it.
    // Nest passes its transport context (an object) where its typings say `unknown`.
    super.setOnProcessingStartHook((transportId, ctx, done) =>
      this.tracer.startHook(transportId, ctx as object, () => {
        this.rememberReplyContext(ctx as object);
        return done();
      }),
    );
    super.setOnProcessingEndHook((transportId, ctx) => this.tracer.endHook(transportId, ctx as object));
  }

  /** Runs `hook` inside the CONSUMER span rather than replacing it. */
  override setOnProcessingStartHook(hook: NestStartHook): void {
    this.tracer.chainStart(hook as ProcessingStartHook);
  }

  /** Runs `hook` after the CONSUMER span ended rather than replacing it. */
  override setOnProcessingEndHook(hook: NestEndHook): void {
    this.tracer.chainEnd(hook as ProcessingEndHook);
  }

  /** Nest's lookup (wildcards included), cached per pattern: Nest and the tracer each look up every message's handler. */
  override getHandlerByPattern(pattern: string): MessageHandler | null {
    // Nest's constructor can call this before this class's fields exist.
    return this.handlerCache
      ? this.handlerCache.lookup(pattern, this.getHandlers().size, () => super.getHandlerByPattern(pattern))
      : super.getHandlerByPattern(pattern);
  }

  /**
   * With `wildcards: true`, Nest collects the wildcard handlers while it sets up the channel, before
   * it consumes: lookups made earlier (none are, unless something asks before listen) are dropped.
   */
  override setupChannel(...args: Parameters<ServerRMQ['setupChannel']>): ReturnType<ServerRMQ['setupChannel']> {
    this.handlerCache?.clear();
    return super.setupChannel(...args);
  }

  override addHandler(...args: Parameters<ServerRMQ['addHandler']>): void {
    super.addHandler(...args);
    this.handlerCache?.clear();
  }

  override handleEvent(pattern: string, packet: ReadPacket, rmqContext: RmqContext): Promise<any> {
    this.tracer.markEvent(rmqContext);
    return super.handleEvent(pattern, packet, rmqContext);
  }

  /** A request's span ends when its reply stream settles, on Nest 11 as on Nest 12.1 (see sendMessage). */
  override send(stream$: Observable<any>, respond: (data: WritePacket) => Promise<unknown> | void): Subscription {
    return super.send(this.tracer.watchReply(stream$, true), respond);
  }

  override sendMessage<T = any>(message: T, replyTo: any, correlationId: string, rmqContext: RmqContext): void {
    // Nest serializes the reply synchronously inside `sendMessage`, where the wrapped serializer
    // (see initializeSerializer) adds the headers of this context. Nest 11 also runs the end hook
    // in here, for every reply: `publishReply` keeps the span open until the last one.
    const previous = this.replyContext;
    this.replyContext = this.replyContexts.get(rmqContext);
    try {
      this.tracer.publishReply(rmqContext, message, () => super.sendMessage(message, replyTo, correlationId, rmqContext));
    } finally {
      this.replyContext = previous;
    }
  }

  /**
   * Wraps the reply serializer (Nest's or the user's) so that a reply sent for a traced message gets
   * the trace headers in `options.headers`, which `sendMessage` passes to the broker as
   * `properties.headers` and strips from the body. Called by Nest's constructor.
   */
  protected override initializeSerializer(options: RmqOptions['options']): void {
    super.initializeSerializer(options);
    const serializer = this.serializer;
    this.serializer = {
      serialize: (value, serializeOptions) => this.withReplyHeaders(serializer.serialize(value, serializeOptions)),
    };
  }

  private rememberReplyContext(ctx: object): void {
    try {
      const active = contextIfTraced();
      if (active) {
        this.replyContexts.set(ctx, active);
      }
    } catch (err) {
      diag.error(replyContextNotKept(), err);
    }
  }

  private withReplyHeaders(serialized: unknown): unknown {
    const ctx = this.replyContext;
    if (!ctx || !isPlainObject(serialized)) {
      return serialized;
    }
    try {
      const options = serialized.options ?? {};
      const userHeaders = isPlainObject(options) ? (options.headers ?? {}) : undefined;
      if (!isPlainObject(options) || !isPlainObject(userHeaders)) {
        // Options we do not understand are the user's business: leave them, without headers.
        return serialized;
      }
      const headers: RmqHeaders = { ...userHeaders };
      injectContext(ctx, headers, rmqHeaderSetter);
      return { ...serialized, options: { ...options, headers } };
    } catch (err) {
      diag.error(replyContextNotAdded('RabbitMQ'), err);
      return serialized;
    }
  }

  /**
   * The wildcard binding key (`orders.*`, `audit.#`) a delivery's routing key matched: with
   * `wildcards: true`, the pattern of the handler Nest found for it; otherwise the `routingKey`
   * option the queue is bound with. Undefined when the routing key matched exactly.
   */
  private wildcardBinding(pattern: string, routingKey: string): string | undefined {
    if (this.rmqOptions.wildcards) {
      const handler = this.getHandlerByPattern(pattern);
      if (!handler) {
        return undefined;
      }
      let registered = this.patternsByHandler.get(handler);
      if (registered === undefined) {
        for (const [key, candidate] of this.getHandlers()) {
          if (candidate === handler) {
            registered = key;
            break;
          }
        }
        this.patternsByHandler.set(handler, registered ?? '');
      }
      return registered && registered !== routingKey && isTopicWildcard(registered) ? registered : undefined;
    }
    const bound = this.rmqOptions.routingKey;
    return typeof bound === 'string' && bound !== routingKey && isTopicWildcard(bound) ? bound : undefined;
  }

  private describe(ctx: RmqContext): IncomingMessageDescription<RmqHeaders | undefined> | undefined {
    const message = ctx.getMessage() as Delivery | undefined;
    if (!message) {
      return undefined;
    }
    const { fields = {}, properties = {} } = message;
    const exchange = typeof fields.exchange === 'string' ? fields.exchange : '';
    const routingKey = typeof fields.routingKey === 'string' ? fields.routingKey : '';
    const attributes = addAttributes({}, this.connectionAttributes);
    if (routingKey) {
      attributes[ATTR_MESSAGING_RABBITMQ_ROUTING_KEY] = routingKey;
    }
    if (typeof fields.deliveryTag === 'number') {
      attributes[ATTR_MESSAGING_RABBITMQ_DELIVERY_TAG] = fields.deliveryTag;
    }
    if (typeof properties.messageId === 'string' && properties.messageId) {
      attributes[ATTR_MESSAGING_MESSAGE_ID] = properties.messageId;
    }
    // Nest's request id: the client sets it as the correlation id of a request and of its reply.
    if (typeof properties.correlationId === 'string' && properties.correlationId) {
      attributes[ATTR_MESSAGING_MESSAGE_CONVERSATION_ID] = properties.correlationId;
    }
    if (typeof message.content?.length === 'number') {
      attributes[ATTR_MESSAGING_MESSAGE_BODY_SIZE] = message.content.length;
    }
    const pattern = ctx.getPattern();
    const queue = rmqQueue(this);
    const flags = queueFlags(queue, this.rmqOptions.queueOptions?.exclusive);
    // The binding key the routing key matched, when it is a wildcard: the low-cardinality form.
    const binding = exchange ? this.wildcardBinding(pattern, routingKey) : undefined;
    return {
      system: RABBITMQ_SYSTEM,
      destination: consumeDestination(exchange, routingKey, queue),
      template: binding === undefined ? undefined : consumeDestination(exchange, binding, flags.anonymous ? '' : queue),
      ...flags,
      pattern,
      carrier: properties.headers,
      getter: rmqHeaderGetter,
      attributes,
    };
  }
}

/** The active context, if it is the one of a traced message. */
function contextIfTraced(): Context | undefined {
  const active = context.active();
  return getConsumerState(active) ? active : undefined;
}

function isPlainObject(value: unknown): value is Record<string, any> {
  if (value === null || typeof value !== 'object') {
    return false;
  }
  const prototype = Object.getPrototypeOf(value) as unknown;
  return prototype === Object.prototype || prototype === null;
}
