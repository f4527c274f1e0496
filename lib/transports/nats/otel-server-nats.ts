import {
  ServerNats,
  type MessageHandler,
  type NatsContext,
  type NatsOptions,
  type ReadPacket,
  type WritePacket,
} from '@nestjs/microservices';
import { context, createContextKey, diag, ROOT_CONTEXT } from '@opentelemetry/api';
import type { Observable, Subscription } from 'rxjs';
import {
  ATTR_MESSAGING_CONSUMER_GROUP_NAME,
  ATTR_MESSAGING_MESSAGE_BODY_SIZE,
  ATTR_MESSAGING_MESSAGE_CONVERSATION_ID,
  ATTR_MESSAGING_MESSAGE_ID,
} from '../../semconv.js';
import { HandlerCache } from '../shared/handler-cache.js';
import { addAttributes } from '../../utils/attributes.js';
import { ConsumerTracer, type ProcessingEndHook, type ProcessingStartHook } from '../shared/consumer-tracer.js';
import {
  bodySize,
  getConsumerState,
  injectContext,
  type IncomingMessageDescription,
  type MessagingServerTracingOptions,
} from '../shared/messaging-tracing.js';
import { noteTracedTransport } from '../../utils/traced-transport.js';
import { messageCaptureOf } from '../shared/message-capture.js';
import { connectedNatsServer, NATS_MESSAGING_SYSTEM, natsDestination, natsServerAttributes } from './nats.attributes.js';
import { createNatsHeaders, loadNatsDriver, natsHeaderGetter, natsHeaderSetter, type NatsHeaders } from './nats.carrier.js';
import { replyContextNotAdded } from '../../otel.messages.js';
import { natsServerCatchesMessageErrors } from '../../nest-compat.js';

/** Options of {@link OtelServerNats}: Nest's NATS options, plus `otel`. */
export type OtelServerNatsOptions = Required<NatsOptions>['options'] & {
  /** When the producer's context is the parent of a handler's span, or a link. Default: see {@link MessagingServerTracingOptions}. */
  otel?: MessagingServerTracingOptions;
};

type NatsServerOptions = Required<NatsOptions>['options'];
type StartHook = Parameters<ServerNats['setOnProcessingStartHook']>[0];
type EndHook = Parameters<ServerNats['setOnProcessingEndHook']>[0];

/** The parts of a driver `Msg` read here (both drivers Nest uses have them). */
interface NatsMsgLike {
  data?: Uint8Array;
  headers?: NatsHeaders;
}

/** What `handleMessage` knows and the processing hooks do not: the subscription and the raw message. */
interface IncomingNatsMessage {
  channel: string;
  natsMsg: NatsMsgLike;
  requestId?: string;
}

// Set around `handleMessage`, so that `handleEvent` and `getPublisher`, which run in its async
// flow and receive the message's NatsContext, can tie the raw message to that context.
const INCOMING_NATS_MESSAGE = createContextKey('otel-nest incoming NATS message');
/** Nest 12 catches what handleMessage rejects with; Nest 11 does not (see handleMessage). */
const NEST_CATCHES_MESSAGE_ERRORS = natsServerCatchesMessageErrors();

/**
 * Nest's `ServerNats` with a CONSUMER span `process {subject}` (`process {pattern}` for a handler
 * registered under a wildcard pattern, e.g. `process orders.*.get`) around each message's whole handler
 * pipeline (guards, interceptors, pipes, handler, and the Observable it returns), continuing or
 * linking the producer's context read from the NATS message headers, and with the consumer's
 * context written into the headers of every reply.
 *
 * ```ts
 * app.connectMicroservice({ strategy: new OtelServerNats({ servers: ['nats://localhost:4222'] }) });
 * ```
 *
 * `@MessagePattern` handlers are children of the producer span; `@EventPattern` handlers start a
 * new trace linked to it. Change it per server with `otel`, or per handler with
 * `@Traced({ consume })` / `@EventPattern(pattern, { otelConsume })`.
 *
 * @publicApi
 */
export class OtelServerNats extends ServerNats {
  private readonly consumerTracer: ConsumerTracer<NatsContext>;
  private readonly natsOptions: NatsServerOptions;
  private readonly incoming = new WeakMap<NatsContext, IncomingNatsMessage>();
  private readonly handlerCache = new HandlerCache<MessageHandler>();

  constructor(options: OtelServerNatsOptions = {}) {
    const { otel, ...natsOptions } = options ?? {};
    super(natsOptions);
    // Header and body capture options: a wrong one fails here, at bootstrap.
    messageCaptureOf(otel, 'OtelServerNats otel');
    noteTracedTransport(this, 'NATS server');
    this.natsOptions = natsOptions;
    this.consumerTracer = new ConsumerTracer<NatsContext>(this, (ctx) => this.describe(ctx), otel);
    super.setOnProcessingStartHook(this.consumerTracer.startHook as StartHook);
    super.setOnProcessingEndHook(this.consumerTracer.endHook as EndHook);
  }

  /** Loads the driver's headers factory first: replies need it to carry the consumer's context. */
  override async listen(callback: Parameters<ServerNats['listen']>[0]): Promise<void> {
    await loadNatsDriver();
    return super.listen(callback);
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

  override addHandler(...args: Parameters<ServerNats['addHandler']>): void {
    super.addHandler(...args);
    this.handlerCache?.clear();
  }

  override handleMessage(channel: string, natsMsg: any): Promise<any> {
    const message: IncomingNatsMessage = { channel, natsMsg: natsMsg ?? {} };
    // Each message starts from the root context, not from the one the connection was opened in.
    const handled = context.with(ROOT_CONTEXT.setValue(INCOMING_NATS_MESSAGE, message), () => super.handleMessage(channel, natsMsg));
    if (NEST_CATCHES_MESSAGE_ERRORS) {
      return handled;
    }
    return handled.catch((error: unknown) => {
      // Nest 11 calls this from the subscription callback without a catch: a message the driver
      // cannot decode (a header name with a space, a bare CR in a value, from a raw peer) would be
      // an unhandled rejection that ends the process. Logged as Nest 12 does.
      this.logger.error(error);
    });
  }

  override handleEvent(pattern: string, packet: ReadPacket, ctx: NatsContext): Promise<any> {
    this.remember(ctx);
    this.consumerTracer.markEvent(ctx);
    return super.handleEvent(pattern, packet, ctx);
  }

  /**
   * Called for request-reply messages only, before processing starts; `id` is Nest's correlation
   * id. Each reply goes through `publishReply`: Nest 11 runs the end hook inside every reply's
   * publish, and the span must last until the reply stream settles (see `send`).
   */
  override getPublisher(natsMsg: any, id: string, ctx: NatsContext): (response: any) => any {
    this.remember(ctx, id);
    const publish = super.getPublisher(natsMsg, id, ctx);
    return (response: any) => this.consumerTracer.publishReply(ctx, response, () => publish(response));
  }

  /**
   * A request's span ends when its reply stream settles, as Nest 12.1 runs the end hook. Nest 11
   * runs it from the reply publisher only, and not at all for a request without a reply subject
   * (a non-Nest peer's publish with an id), whose publisher is a no-op.
   */
  override send(stream$: Observable<any>, respond: (data: WritePacket) => Promise<unknown> | void): Subscription {
    return super.send(this.consumerTracer.watchReply(stream$, true), respond);
  }

  /** Replies carry the consumer's context in their NATS headers. */
  protected override initializeSerializer(options: NatsServerOptions): void {
    super.initializeSerializer(options);
    // Runs inside super(): no field of this class exists yet.
    const inner = this.serializer;
    this.serializer = {
      serialize: (packet, serializeOptions) => addReplyContext(inner.serialize(packet, serializeOptions)),
    };
  }

  private remember(ctx: NatsContext, requestId?: string): void {
    const message = context.active().getValue(INCOMING_NATS_MESSAGE) as IncomingNatsMessage | undefined;
    if (message && ctx) {
      // The message object is this message's own (see handleMessage): no copy needed.
      if (requestId !== undefined) {
        message.requestId = requestId;
      }
      this.incoming.set(ctx, message);
    }
  }

  private describe(ctx: NatsContext): IncomingMessageDescription<NatsHeaders | undefined> | undefined {
    if (typeof ctx?.getSubject !== 'function') {
      return undefined;
    }
    const subject = String(ctx.getSubject());
    const headers = ctx.getHeaders() as NatsHeaders | undefined;
    const message = this.incoming.get(ctx);
    this.incoming.delete(ctx);
    // The subscription's pattern: the subject itself, or the wildcard it matched.
    const pattern = message?.channel ?? subject;
    const attributes = addAttributes({}, natsServerAttributes(this.natsOptions.servers, this.connectedServer()));
    const queue = this.getHandlerByPattern(pattern)?.extras?.queue ?? this.natsOptions.queue;
    if (typeof queue === 'string' && queue) {
      attributes[ATTR_MESSAGING_CONSUMER_GROUP_NAME] = queue;
    }
    if (message?.requestId !== undefined) {
      attributes[ATTR_MESSAGING_MESSAGE_CONVERSATION_ID] = String(message.requestId);
    }
    const size = bodySize(message?.natsMsg.data);
    if (size !== undefined) {
      attributes[ATTR_MESSAGING_MESSAGE_BODY_SIZE] = size;
    }
    // JetStream's de-duplication id, when the publisher set one.
    const messageId = natsHeaderGetter.get(headers, 'Nats-Msg-Id');
    if (typeof messageId === 'string' && messageId) {
      attributes[ATTR_MESSAGING_MESSAGE_ID] = messageId;
    }
    return {
      system: NATS_MESSAGING_SYSTEM,
      ...natsDestination(subject, pattern, this.natsOptions.inboxPrefix),
      pattern,
      carrier: headers,
      getter: natsHeaderGetter,
      attributes,
    };
  }

  private connectedServer(): string | undefined {
    try {
      return connectedNatsServer(this.unwrap());
    } catch {
      return undefined;
    }
  }
}

/**
 * Adds the active consumer's context to a serialized reply (`{ data, headers }`). Nest publishes
 * the reply while the handler's context is active; outside a traced message (e.g. the "no
 * handler" reply) nothing is added, so no unrelated context is ever sent back.
 */
function addReplyContext<T>(serialized: T): T {
  try {
    const active = context.active();
    if (!getConsumerState(active) || serialized === null || typeof serialized !== 'object') {
      return serialized;
    }
    const reply = serialized as T & { headers?: NatsHeaders };
    const headers = reply.headers ?? createNatsHeaders();
    if (!headers) {
      return serialized;
    }
    injectContext(active, headers, natsHeaderSetter);
    return reply.headers === headers ? serialized : { ...reply, headers };
  } catch (err) {
    diag.error(replyContextNotAdded('NATS'), err);
    return serialized;
  }
}
