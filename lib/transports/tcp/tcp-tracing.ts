import { context, createContextKey, propagation, ROOT_CONTEXT, SpanKind, trace, type Context, type Link } from '@opentelemetry/api';
import { extractContext } from '../../propagation/carrier.js';
import { ATTR_SERVER_ADDRESS, ATTR_SERVER_PORT } from '../../semconv.js';
import { diagLimited } from '../../utils/diag-limited.js';
import { getOtelNestTracer } from '../../utils/tracer.js';
import { callSpanHook, isIgnoredBy } from '../../utils/user-hook.js';
import { tcpSpanEndFailed, tcpSpanStartFailed } from '../../otel.messages.js';
import type { HandlerLookup, ProcessingEndHook, ProcessingStartHook } from '../shared/consumer-tracer.js';
import {
  endConsumerSpan,
  resolveConsumePolicy,
  withConsumerState,
  type ConsumeInfo,
  type ConsumePolicy,
  type ConsumerState,
  type MessagingServerTracingOptions,
} from '../shared/messaging-tracing.js';
import { TCP_SYSTEM, tcpPeerAttributes, tcpRpcAttributes, tcpRpcMetricAttributes } from './tcp.attributes.js';
import { activeInstruments } from '../../metrics/metrics-state.js';
import { captureMessageHeaders, messageCaptureOf } from '../shared/message-capture.js';
import { measureSpan } from '../../metrics/span-measurement.js';
import { isMetadataObject, metadataWithContext, TCP_REPLY_CONTEXT_KEY, tcpMetadataGetter, type TcpMetadata } from './tcp.carrier.js';

/** What the TCP server knows of one incoming packet when its processing starts. */
export interface IncomingTcpPacket {
  /** The pattern as Nest routes it (a JSON string for an object pattern). */
  pattern: string;
  /** The envelope's `metadata`, as it came over the wire: any JSON value. */
  metadata: unknown;
  /** The connection's `net.Socket`. */
  socket: unknown;
}

/** One request being processed: its SERVER span, and the metadata its replies carry (if asked for). */
export interface TcpRequest {
  readonly state: ConsumerState;
  /** The context the request is processed in: the SERVER span's, with the state. */
  ctx: Context;
  /** `true` when the request asked for the consumer's context in its replies (see TCP_REPLY_CONTEXT_KEY). */
  readonly replyContext: boolean;
  replyMetadata?: TcpMetadata | null;
}

const TCP_REQUEST = createContextKey('otel-nest TCP request');

/** The request whose SERVER span is active in `ctx`, if any. */
export function activeTcpRequest(ctx: Context = context.active()): TcpRequest | undefined {
  return ctx.getValue(TCP_REQUEST) as TcpRequest | undefined;
}

/**
 * The metadata a reply to `request` carries: the SERVER span's trace context (`traceparent`,
 * `tracestate`; never the caller's baggage, which would only be echoed back), computed once per
 * request. `undefined` when the request did not ask for it.
 */
export function replyMetadataOf(request: TcpRequest): TcpMetadata | undefined {
  if (!request.replyContext) {
    return undefined;
  }
  if (request.replyMetadata === undefined) {
    request.replyMetadata = metadataWithContext(undefined, propagation.deleteBaggage(request.ctx)) ?? null;
  }
  return request.replyMetadata ?? undefined;
}

/**
 * Starts the SERVER span `{pattern}` of one request (RPC conventions: Nest's TCP transport is a
 * direct request-reply protocol, no intermediary). The caller's context from the metadata is the
 * parent by default; `link` and `parent+link` work as for the messaging consumers. Bad or missing
 * metadata gives a fresh root: extraction starts from ROOT_CONTEXT.
 */
export function startTcpServerSpan(
  packet: IncomingTcpPacket,
  policy: ConsumePolicy,
  hooks?: Pick<MessagingServerTracingOptions, 'consumeHook' | 'replyHook' | 'captureHeaders' | 'captureBody'>,
  info?: ConsumeInfo,
): TcpRequest {
  const extracted = extractContext(packet.metadata, tcpMetadataGetter, ROOT_CONTEXT, 'tcp');
  const caller = trace.getSpanContext(extracted);
  const links: Link[] = [];
  let parent = extracted;
  if (caller && policy !== 'parent') {
    links.push({ context: caller });
  }
  if (policy === 'link') {
    const baggage = propagation.getBaggage(extracted);
    parent = baggage ? propagation.setBaggage(ROOT_CONTEXT, baggage) : ROOT_CONTEXT;
  }
  const attributes = tcpRpcAttributes(packet.pattern);
  tcpPeerAttributes(packet.socket, attributes);
  addLocalAddress(packet.socket, attributes);
  // otel.captureHeaders / captureBody: the request's metadata and payload, as on the consumer spans.
  const capture = messageCaptureOf(hooks);
  captureMessageHeaders(capture, packet.metadata, tcpMetadataGetter, attributes);
  const span = getOtelNestTracer().startSpan(packet.pattern, { kind: SpanKind.SERVER, links, attributes }, parent);
  const state: ConsumerState = { span, isEvent: false, ended: false };
  if (capture?.bodyMaxBytes !== undefined && span.isRecording()) {
    state.capture = capture;
  }
  const instruments = activeInstruments();
  if (instruments !== undefined) {
    state.measurement = measureSpan(span, instruments.rpcServerDuration, tcpRpcMetricAttributes(packet.pattern));
  }
  if (info && hooks && (hooks.consumeHook || hooks.replyHook) && span.isRecording()) {
    callSpanHook('consumeHook', hooks.consumeHook, span, info);
    if (hooks.replyHook) {
      state.reply = { hook: hooks.replyHook, info };
    }
  }
  const request: TcpRequest = {
    state,
    ctx: ROOT_CONTEXT,
    replyContext: isMetadataObject(packet.metadata) && packet.metadata[TCP_REPLY_CONTEXT_KEY] === '1',
  };
  request.ctx = withConsumerState(trace.setSpan(parent, span), state).setValue(TCP_REQUEST, request);
  return request;
}

/** `server.address` / `server.port`: where the connection was accepted. */
function addLocalAddress(socket: unknown, attributes: Record<string, unknown>): void {
  try {
    const { localAddress, localPort } = (socket ?? {}) as { localAddress?: unknown; localPort?: unknown };
    if (typeof localAddress === 'string' && localAddress && typeof localPort === 'number') {
      attributes[ATTR_SERVER_ADDRESS] = localAddress;
      attributes[ATTR_SERVER_PORT] = localPort;
    }
  } catch {
    // None, then.
  }
}

/**
 * The SERVER spans of a TCP server's requests, through Nest's processing hooks. Events are the
 * shared ConsumerTracer's (CONSUMER spans); this one is chained behind it (its start hook is the
 * ConsumerTracer's "user" hook, and the hooks set by others are this one's), so that both run
 * inside whichever span a message has.
 */
export class TcpRequestTracer<Ctx extends object> {
  private userStart?: ProcessingStartHook;
  private userEnd?: ProcessingEndHook;
  private readonly requests = new WeakMap<object, TcpRequest>();
  /** Requests whose end hook call comes from a reply that is not the last (Nest 11, see publishReply). */
  private readonly heldOpen = new WeakSet<ConsumerState>();

  constructor(
    private readonly server: HandlerLookup,
    /** Reads a request's packet; `undefined` means "not a traced request" (events, or unreadable). */
    private readonly describe: (ctx: Ctx) => IncomingTcpPacket | undefined,
    private readonly options: MessagingServerTracingOptions | undefined,
  ) {}

  chainStart(hook: ProcessingStartHook): void {
    this.userStart = hook;
  }

  chainEnd(hook: ProcessingEndHook): void {
    this.userEnd = hook;
  }

  readonly startHook: ProcessingStartHook = (transportId, ctx, done) => {
    let request: TcpRequest | undefined;
    try {
      const packet = isObject(ctx) ? this.describe(ctx as Ctx) : undefined;
      const info: ConsumeInfo | undefined = packet
        ? { system: TCP_SYSTEM, pattern: packet.pattern, destination: packet.pattern, isEvent: false, context: ctx }
        : undefined;
      if (packet && info && !isIgnoredBy('server ignore predicate', this.options?.ignore, info)) {
        const handler = this.server.getHandlerByPattern(packet.pattern);
        request = startTcpServerSpan(packet, resolveConsumePolicy(handler, false, this.options), this.options, info);
        this.requests.set(ctx as object, request);
      }
    } catch (err) {
      diagLimited('error', tcpSpanStartFailed('SERVER'), err);
    }
    const run = (): unknown => (this.userStart ? this.userStart(transportId, ctx, done) : done());
    if (!request) {
      return run();
    }
    const traced = request;
    const result = context.with(traced.ctx, run);
    if (isThenable(result)) {
      // Nest 12 runs the end hook when processing rejects; Nest 11 does not. A span ends once.
      return result.then(undefined, (err: unknown) => {
        traced.state.error ??= err;
        this.end(ctx);
        throw err;
      });
    }
    return result;
  };

  readonly endHook: ProcessingEndHook = (transportId, ctx) => {
    const request = isObject(ctx) ? this.requests.get(ctx) : undefined;
    if (!(request && this.heldOpen.has(request.state))) {
      this.end(ctx);
    }
    this.userEnd?.(transportId, ctx);
  };

  /**
   * Publishes one reply of `request`. Nest 11 runs the end hook inside the publish of every reply,
   * which would end a streamed reply's span at its first value: a call from a reply that is not
   * the last (`isDisposed`) leaves the span open; it ends when the reply stream settles
   * (ConsumerTracer#watchReply). Nest 12 calls no hook in here.
   */
  publishReply<T>(request: TcpRequest, reply: unknown, publish: () => T): T {
    if ((reply as { isDisposed?: unknown } | null)?.isDisposed === true) {
      return publish();
    }
    this.heldOpen.add(request.state);
    try {
      return publish();
    } finally {
      this.heldOpen.delete(request.state);
    }
  }

  private end(ctx: unknown): void {
    const request = isObject(ctx) ? this.requests.get(ctx) : undefined;
    if (!request) {
      return;
    }
    this.requests.delete(ctx as object);
    try {
      endConsumerSpan(request.state);
    } catch (err) {
      diagLimited('error', tcpSpanEndFailed('SERVER'), err);
    }
  }
}

function isObject(value: unknown): value is object {
  return value !== null && (typeof value === 'object' || typeof value === 'function');
}

function isThenable(value: unknown): value is Promise<unknown> {
  return value !== null && typeof value === 'object' && typeof (value as Promise<unknown>).then === 'function';
}
