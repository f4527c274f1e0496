import { ServerTCP, type MessageHandler, type ReadPacket, type TcpContext, type TcpOptions, type WritePacket } from '@nestjs/microservices';
import { context, createContextKey, ROOT_CONTEXT } from '@opentelemetry/api';
import type { Observable, Subscription } from 'rxjs';
import { tcpContextCarriesMetadata } from '../../nest-compat.js';
import { replyContextNotAdded } from '../../otel.messages.js';
import { diagLimited } from '../../utils/diag-limited.js';
import { noteTracedTransport } from '../../utils/traced-transport.js';
import { ConsumerTracer, type ProcessingEndHook, type ProcessingStartHook } from '../shared/consumer-tracer.js';
import { HandlerCache } from '../shared/handler-cache.js';
import type { IncomingMessageDescription, MessagingServerTracingOptions } from '../shared/messaging-tracing.js';
import { TCP_SYSTEM, tcpPeerAttributes } from './tcp.attributes.js';
import { tcpMetadataGetter } from './tcp.carrier.js';
import { activeTcpRequest, replyMetadataOf, TcpRequestTracer, type IncomingTcpPacket } from './tcp-tracing.js';

type TcpServerOptions = Required<TcpOptions>['options'];

/** Options of {@link OtelServerTCP}: Nest's TCP options, plus `otel`. */
export type OtelServerTcpOptions = TcpServerOptions & {
  /**
   * When the caller's context is the parent of a handler's span, or a link: `messageConsume` for
   * `@MessagePattern` (SERVER spans, default `'parent'`), `eventConsume` for `@EventPattern`
   * (CONSUMER spans, default `'link'`). See {@link MessagingServerTracingOptions}.
   */
  otel?: MessagingServerTracingOptions;
};

type StartHook = Parameters<ServerTCP['setOnProcessingStartHook']>[0];
type EndHook = Parameters<ServerTCP['setOnProcessingEndHook']>[0];

/** The deserialized packet of the message being handled, on a Nest whose TcpContext drops its metadata. */
interface IncomingTcpMessage {
  packet?: unknown;
}

const INCOMING_TCP_MESSAGE = createContextKey('otel-nest incoming TCP message');
const CONTEXT_CARRIES_METADATA = tcpContextCarriesMetadata();

/**
 * Nest's `ServerTCP`, traced. The caller's context travels in the packet envelope's `metadata`
 * (`{ pattern, data, id, metadata: { traceparent, tracestate, baggage } }`), never in `data`.
 *
 * ```ts
 * app.connectMicroservice({ strategy: new OtelServerTCP({ host: '0.0.0.0', port: 3001 }) });
 * ```
 *
 * - `@MessagePattern` (request-reply, `send()`): a SERVER span `{pattern}` (RPC conventions,
 *   `rpc.system.name` `nestjs_tcp`), a child of the caller's span, around the whole handler
 *   pipeline and its reply stream. Replies carry the SERVER span's context in their own `metadata`
 *   when the request asked for it (OtelClientTCP does; a plain Nest client, which would read such a
 *   reply as a foreign payload, does not).
 * - `@EventPattern` (`emit()`): a CONSUMER span `process {pattern}` (messaging conventions),
 *   in a new trace linked to the producer's span.
 *
 * Change parent/link per server with `otel`, or per handler with `@Traced({ consume })` /
 * `@EventPattern(pattern, { otelConsume })`.
 *
 * @publicApi
 */
export class OtelServerTCP extends ServerTCP {
  private readonly consumerTracer: ConsumerTracer<TcpContext>;
  private readonly requestTracer: TcpRequestTracer<TcpContext>;
  private readonly eventContexts = new WeakSet<object>();
  private readonly handlerCache = new HandlerCache<MessageHandler>();

  constructor(options: OtelServerTcpOptions = {}) {
    const { otel, ...tcpOptions } = options ?? {};
    super(tcpOptions);
    noteTracedTransport(this, 'TCP server');
    // Events through the shared consumer tracer; requests through the request tracer chained
    // behind it (see TcpRequestTracer), and the hooks set by others behind that.
    this.consumerTracer = new ConsumerTracer<TcpContext>(this, (ctx) => this.describeEvent(ctx), otel);
    this.requestTracer = new TcpRequestTracer<TcpContext>(this, (ctx) => this.describeRequest(ctx), otel);
    this.consumerTracer.chainStart(this.requestTracer.startHook);
    this.consumerTracer.chainEnd(this.requestTracer.endHook);
    super.setOnProcessingStartHook(this.consumerTracer.startHook as StartHook);
    super.setOnProcessingEndHook(this.consumerTracer.endHook as EndHook);
  }

  /** Hooks set by others run inside the SERVER or CONSUMER span. */
  override setOnProcessingStartHook(hook: StartHook): void {
    this.requestTracer.chainStart(hook as ProcessingStartHook);
  }

  override setOnProcessingEndHook(hook: EndHook): void {
    this.requestTracer.chainEnd(hook as ProcessingEndHook);
  }

  /** Nest's lookup, cached per pattern: Nest and the tracers each look up every message's handler. */
  override getHandlerByPattern(pattern: string): MessageHandler | null {
    // Nest's constructor can call this before this class's fields exist.
    return this.handlerCache
      ? this.handlerCache.lookup(pattern, this.getHandlers().size, () => super.getHandlerByPattern(pattern))
      : super.getHandlerByPattern(pattern);
  }

  override addHandler(...args: Parameters<ServerTCP['addHandler']>): void {
    super.addHandler(...args);
    this.handlerCache?.clear();
  }

  /** Each message starts from the root context, not from the one the connection was accepted in. */
  override handleMessage(socket: Parameters<ServerTCP['handleMessage']>[0], rawMessage: unknown): Promise<any> {
    const base = CONTEXT_CARRIES_METADATA ? ROOT_CONTEXT : ROOT_CONTEXT.setValue(INCOMING_TCP_MESSAGE, {} satisfies IncomingTcpMessage);
    return context.with(base, () => super.handleMessage(socket, rawMessage));
  }

  override handleEvent(pattern: string, packet: ReadPacket, ctx: TcpContext): Promise<any> {
    if (ctx) {
      this.eventContexts.add(ctx);
      this.consumerTracer.markEvent(ctx);
    }
    return super.handleEvent(pattern, packet, ctx);
  }

  /**
   * A request's span ends when its reply stream settles (ConsumerTracer#watchReply). Each reply
   * goes through the request tracer's publishReply (Nest 11 runs the end hook in there), with the
   * SERVER span's context in its `metadata` when the request asked for it.
   */
  override send(stream$: Observable<any>, respond: (data: WritePacket) => Promise<unknown> | void): Subscription {
    const request = activeTcpRequest();
    const watched = this.consumerTracer.watchReply(stream$, true);
    if (!request) {
      return super.send(watched, respond);
    }
    return super.send(watched, (packet) =>
      this.requestTracer.publishReply(request, packet, () => respond(withReplyMetadata(packet, replyMetadataOfSafe(request)))),
    );
  }

  /**
   * On a Nest whose TcpContext drops the envelope's metadata (Nest 11), keeps the deserialized
   * packet of the message being handled, for the processing hooks that run in its async flow.
   */
  protected override initializeDeserializer(options: TcpServerOptions): void {
    super.initializeDeserializer(options);
    if (CONTEXT_CARRIES_METADATA) {
      return;
    }
    // Runs inside super(): no field of this class exists yet.
    const inner = this.deserializer;
    this.deserializer = {
      deserialize: (value, deserializeOptions) => {
        const packet = inner.deserialize(value, deserializeOptions);
        const incoming = context.active().getValue(INCOMING_TCP_MESSAGE) as IncomingTcpMessage | undefined;
        if (incoming) {
          if (isThenable(packet)) {
            return packet.then((resolved) => {
              incoming.packet = resolved;
              return resolved;
            });
          }
          incoming.packet = packet;
        }
        return packet;
      },
    };
  }

  private describeRequest(ctx: TcpContext): IncomingTcpPacket | undefined {
    return this.eventContexts.has(ctx) ? undefined : this.describe(ctx);
  }

  private describeEvent(ctx: TcpContext): IncomingMessageDescription<unknown> | undefined {
    if (!this.eventContexts.has(ctx)) {
      return undefined;
    }
    const packet = this.describe(ctx);
    if (!packet) {
      return undefined;
    }
    return {
      system: TCP_SYSTEM,
      destination: packet.pattern,
      pattern: packet.pattern,
      carrier: packet.metadata,
      getter: tcpMetadataGetter,
      attributes: tcpPeerAttributes(packet.socket),
    };
  }

  private describe(ctx: TcpContext): IncomingTcpPacket | undefined {
    if (typeof ctx?.getPattern !== 'function') {
      return undefined;
    }
    const pattern = String(ctx.getPattern());
    let metadata: unknown;
    if (CONTEXT_CARRIES_METADATA) {
      metadata = (ctx as { getMetadata?: () => unknown }).getMetadata?.();
    } else {
      const incoming = context.active().getValue(INCOMING_TCP_MESSAGE) as IncomingTcpMessage | undefined;
      const packet = incoming?.packet;
      metadata = packet !== null && typeof packet === 'object' ? (packet as { metadata?: unknown }).metadata : undefined;
    }
    let socket: unknown;
    try {
      socket = ctx.getSocketRef()?.netSocket;
    } catch {
      // No peer attributes, then.
    }
    return { pattern, metadata, socket };
  }
}

function replyMetadataOfSafe(request: Parameters<typeof replyMetadataOf>[0]): ReturnType<typeof replyMetadataOf> {
  try {
    return replyMetadataOf(request);
  } catch (err) {
    diagLimited('error', replyContextNotAdded('TCP'), err);
    return undefined;
  }
}

/** The reply packet with `metadata` added (a new object: Nest's queue keeps its own). */
function withReplyMetadata(packet: WritePacket, metadata: Record<string, string> | undefined): WritePacket {
  return metadata ? ({ ...packet, metadata } as WritePacket) : packet;
}

function isThenable(value: unknown): value is Promise<unknown> {
  return value !== null && typeof value === 'object' && typeof (value as Promise<unknown>).then === 'function';
}
