import { context, diag, propagation, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span } from '@opentelemetry/api';
import {
  ATTR_ERROR_TYPE,
  ATTR_RPC_GRPC_STATUS_CODE,
  ATTR_RPC_MESSAGE_ID,
  ATTR_RPC_MESSAGE_TYPE,
  ATTR_RPC_MESSAGE_UNCOMPRESSED_SIZE,
  ATTR_RPC_METHOD,
  ATTR_RPC_METHOD_ORIGINAL,
  ATTR_RPC_STATUS_CODE,
  ATTR_RPC_SYSTEM_NAME,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  RPC_MESSAGE_EVENT,
} from '../../semconv.js';
import { extractContext, injectContext } from '../../propagation/carrier.js';
import { recordError } from '../../utils/record-error.js';
import { getOtelNestTracer } from '../../utils/tracer.js';
import { diagLimited } from '../../utils/diag-limited.js';
import { withConsumerState, type ConsumerState } from '../shared/messaging-tracing.js';
import { activeInstruments } from '../../metrics/metrics-state.js';
import { measureSpan, recordSpanMeasurement, type SpanMeasurement } from '../../metrics/span-measurement.js';
import {
  GRPC_RPC_SYSTEM,
  GRPC_STATUS_CANCELLED,
  GRPC_STATUS_DEADLINE_EXCEEDED,
  GRPC_STATUS_UNIMPLEMENTED,
  grpcMethodAttributes,
  grpcMethodOf,
  grpcPeerAttributes,
  grpcStatusName,
  isGrpcError,
  legacyRpcAttributesRequested,
  RPC_METHOD_OTHER,
} from './grpc.attributes.js';
import { grpcMetadataGetter, grpcMetadataSetter, loadedGrpcDriver, type GrpcDriver, type GrpcMetadata } from './grpc.carrier.js';
import {
  grpcClientNotReady,
  grpcServerInterceptorsUnsupported,
  grpcSpanEndFailed,
  grpcSpanStartFailed,
} from '../../otel.messages.js';
import { callSpanHook, isIgnoredBy, type SpanHook } from '../../utils/user-hook.js';

/** Tracing options of the traced gRPC server and client, under `otel` in their options. */
export interface GrpcTracingOptions {
  /**
   * Adds an `rpc.message` event per message sent and received (`rpc.message.type` `SENT` /
   * `RECEIVED`, `rpc.message.id` counting from 1 per direction, `rpc.message.uncompressed_size`
   * for sent messages, measured by serializing them once more). Default `false`.
   */
  messageEvents?: boolean;
  /** With `messageEvents`, at most this many events per span; later messages are still counted in their ids. Default `128`. */
  maxMessageEvents?: number;
  /**
   * Also emits the pre-1.39 attribute names that `@opentelemetry/instrumentation-grpc` emits
   * (`rpc.system`, `rpc.service`, `rpc.grpc.status_code` as a number). `rpc.method` keeps the
   * current meaning (`package.Service/Method`): the two cannot share the name. Default: `true`
   * when `OTEL_SEMCONV_STABILITY_OPT_IN` lists `rpc/dup`, else `false`.
   */
  legacyAttributes?: boolean;
  /**
   * Server only: writes the SERVER span's context (`traceparent`, `tracestate`; never baggage) into
   * the response metadata (the initial metadata, or the trailers of a trailers-only response), so
   * that a caller can tie its call to the server's span. Default `true`.
   */
  responseContext?: boolean;
  /**
   * Called with the call's span (recording spans only) when it starts: the server's when the call's
   * metadata arrives, before the handler; the client's before the request goes out. A hook that
   * throws is logged and ignored. Default none.
   */
  requestHook?: SpanHook<GrpcCallInfo>;
  /** Called with the call's span just before it ends, with the status it ends with. Default none. */
  responseHook?: SpanHook<GrpcCallResultInfo>;
  /**
   * Calls for which it returns true get no span of ours (the call still runs; on the server the
   * handler runs in the caller's context, on the client the caller's context goes out). Default none.
   */
  ignore?: (info: GrpcCallInfo) => boolean;
}

/** What gRPC hooks and `ignore` are told about a call. */
export interface GrpcCallInfo {
  /** `server` in OtelServerGrpc, `client` in OtelClientGrpc. */
  side: 'client' | 'server';
  /** The method path, `package.Service/Method` (as `rpc.method`); `''` when unknown. */
  method: string;
  /** Server only: the call's metadata as received (grpc-js `Metadata`). */
  metadata?: unknown;
}

/** What `responseHook` is told: the call, and the status it ended with. */
export interface GrpcCallResultInfo extends GrpcCallInfo {
  /** The gRPC status code (`0` OK). */
  code: number;
  details?: string;
  /** The handler's error (server), when there was one. */
  error?: unknown;
}

interface ResolvedGrpcTracing {
  readonly messageEvents: boolean;
  readonly maxMessageEvents: number;
  readonly legacy: boolean;
  readonly responseContext: boolean;
  readonly requestHook?: SpanHook<GrpcCallInfo>;
  readonly responseHook?: SpanHook<GrpcCallResultInfo>;
  readonly ignore?: (info: GrpcCallInfo) => boolean;
}

const DEFAULT_MAX_MESSAGE_EVENTS = 128;

export function resolveGrpcTracing(options: GrpcTracingOptions | undefined): ResolvedGrpcTracing {
  const max = options?.maxMessageEvents;
  return {
    messageEvents: options?.messageEvents === true,
    maxMessageEvents: typeof max === 'number' && Number.isFinite(max) && max >= 0 ? Math.floor(max) : DEFAULT_MAX_MESSAGE_EVENTS,
    legacy: options?.legacyAttributes ?? legacyRpcAttributesRequested(),
    responseContext: options?.responseContext !== false,
    requestHook: options?.requestHook,
    responseHook: options?.responseHook,
    ignore: options?.ignore,
  };
}

/** `info` for the hooks, or undefined when there is no hook and no predicate (nothing to build). */
function callInfo(tracing: ResolvedGrpcTracing, side: Side, path: unknown, metadata?: unknown): GrpcCallInfo | undefined {
  if (!tracing.requestHook && !tracing.responseHook && !tracing.ignore) {
    return undefined;
  }
  const method = typeof path === 'string' ? path.replace(/^\//, '') : '';
  return side === 'server' ? { side, method, metadata } : { side, method };
}

type Side = 'client' | 'server';

/**
 * The span of one call, from its first metadata to its status. Shaped as a consumer state, so
 * that Nest's interceptor (OtelTracingInterceptor) names the handler on a SERVER span and keeps
 * the handler's error for it.
 */
export class GrpcCallSpan implements ConsumerState {
  readonly isEvent = false;
  error?: unknown;
  ended = false;
  /** `rpc.server.call.duration` / `rpc.client.call.duration`, while metrics are on. */
  measurement?: SpanMeasurement;
  /** What the response hook is told, when there is one. */
  hookInfo?: GrpcCallInfo;
  private sent = 0;
  private received = 0;
  private events = 0;

  constructor(
    readonly span: Span,
    private readonly side: Side,
    private readonly tracing: ResolvedGrpcTracing,
    /** Serializes a sent message, for its size in message events. */
    private readonly serialize?: (message: unknown) => unknown,
    /** The calls in flight of the server this call belongs to, which it leaves when it ends. */
    private readonly open?: Set<GrpcCallSpan>,
  ) {
    open?.add(this);
  }

  message(type: 'SENT' | 'RECEIVED', message: unknown): void {
    if (!this.tracing.messageEvents || this.ended) {
      return;
    }
    const id = type === 'SENT' ? ++this.sent : ++this.received;
    if (this.events >= this.tracing.maxMessageEvents) {
      return;
    }
    this.events++;
    try {
      const attributes: Attributes = {};
      attributes[ATTR_RPC_MESSAGE_TYPE] = type;
      attributes[ATTR_RPC_MESSAGE_ID] = id;
      if (type === 'SENT' && this.serialize) {
        const bytes = this.serialize(message);
        if (bytes instanceof Uint8Array) {
          attributes[ATTR_RPC_MESSAGE_UNCOMPRESSED_SIZE] = bytes.byteLength;
        }
      }
      this.span.addEvent(RPC_MESSAGE_EVENT, attributes);
    } catch {
      // An event is never worth failing a call.
    }
  }

  /**
   * Ends the span once, with the call's status: `rpc.status_code`, and for an error code (every
   * non-OK code on the client; the server's own faults on the server) status ERROR with
   * `error.type` set to the code and the handler's error recorded once, when there was one.
   * `rename`: the span's name and method attributes, when they change at the end (see `_OTHER`).
   */
  end(code: number, details?: string, rename?: { name: string; attributes: Attributes }, failure?: string): void {
    if (this.ended) {
      return;
    }
    this.ended = true;
    this.open?.delete(this);
    let statusName: string | undefined;
    let errorType: string | undefined;
    try {
      if (rename) {
        this.span.updateName(rename.name);
        this.span.setAttributes(rename.attributes);
      }
      const name = grpcStatusName(code);
      statusName = name;
      this.span.setAttribute(ATTR_RPC_STATUS_CODE, name);
      if (this.tracing.legacy) {
        this.span.setAttribute(ATTR_RPC_GRPC_STATUS_CODE, typeof code === 'number' ? code : 2);
      }
      // `failure`: why a call that sent no error status failed all the same (server shutdown).
      if (this.hookInfo && this.tracing.responseHook) {
        callSpanHook('gRPC responseHook', this.tracing.responseHook, this.span, { ...this.hookInfo, code, details, error: this.error });
      }
      if (failure !== undefined || isGrpcError(name, this.side)) {
        errorType = failure ?? name;
        if (this.error !== undefined) {
          recordError(this.span, this.error, errorType);
        } else {
          this.span.setAttribute(ATTR_ERROR_TYPE, errorType);
          this.span.setStatus({ code: SpanStatusCode.ERROR, message: typeof details === 'string' ? details : undefined });
        }
      }
    } catch (err) {
      diag.error(grpcSpanEndFailed(this.side === 'client' ? 'CLIENT' : 'SERVER'), err);
    } finally {
      this.span.end();
      if (this.measurement !== undefined) {
        const extra: Attributes = {};
        extra[ATTR_RPC_STATUS_CODE] = statusName ?? grpcStatusName(code);
        if (rename) {
          extra[ATTR_RPC_METHOD] = rename.attributes[ATTR_RPC_METHOD];
        }
        recordSpanMeasurement(this.measurement, this.span, errorType, extra);
      }
    }
  }

  /** Measures the call while metrics are on: `rpc.system.name`, `rpc.method`, and the server's address on the client. */
  measure(attributes: Attributes, serverAttributes?: Attributes): void {
    const instruments = activeInstruments();
    if (instruments === undefined) {
      return;
    }
    const metric: Attributes = {};
    metric[ATTR_RPC_SYSTEM_NAME] = GRPC_RPC_SYSTEM;
    metric[ATTR_RPC_METHOD] = attributes[ATTR_RPC_METHOD];
    if (serverAttributes?.[ATTR_SERVER_ADDRESS] !== undefined) {
      metric[ATTR_SERVER_ADDRESS] = serverAttributes[ATTR_SERVER_ADDRESS];
    }
    if (serverAttributes?.[ATTR_SERVER_PORT] !== undefined) {
      metric[ATTR_SERVER_PORT] = serverAttributes[ATTR_SERVER_PORT];
    }
    this.measurement = measureSpan(this.span, this.side === 'client' ? instruments.rpcClientDuration : instruments.rpcServerDuration, metric);
  }
}

/** `metadata` copied, with `ctx`'s trace context written in (the original may belong to the application). */
function withTraceContext(metadata: GrpcMetadata, ctx: Context): GrpcMetadata {
  let copy: GrpcMetadata;
  try {
    copy = metadata.clone();
  } catch {
    return metadata;
  }
  injectContext(ctx, copy, grpcMetadataSetter);
  return copy;
}

/** Milliseconds of a grpc-js `Deadline` (a Date or a number, Infinity for none). */
function deadlineMs(deadline: unknown): number {
  return deadline instanceof Date ? deadline.getTime() : typeof deadline === 'number' ? deadline : Number.POSITIVE_INFINITY;
}

/**
 * How close to its deadline a server call may be cancelled for the cancellation to count as the
 * deadline: the client's timer fires at its own deadline, a little before the server's (which
 * starts when the call arrives), and its RST_STREAM can arrive first.
 */
const DEADLINE_SLACK_MS = 50;

/** A grpc-js server interceptor (structural, see GrpcDriver). */
export type GrpcServerInterceptor = (methodDescriptor: any, call: any) => any;
/** A grpc-js client interceptor. */
export type GrpcClientInterceptor = (options: any, nextCall: (options: any) => any) => any;

/**
 * The grpc-js server interceptor behind `OtelServerGrpc`: a SERVER span per call, started when
 * the call's metadata arrives (the producer's context read from it through the validating layer;
 * bad or absent context gives a fresh root), active while every inbound event runs (the handler
 * grpc-js starts from one, Nest's pipeline and whatever it subscribes), and ended at the status
 * the server sends, or when the call is cancelled (client cancel, deadline, shutdown). First in
 * the server's interceptor list (nearest the wire), so the span covers the application's own
 * server interceptors.
 *
 * `handled(path)`: whether a handler serves the path; a call that ends UNIMPLEMENTED on a path
 * no handler serves (a method of the proto without a Nest handler) is named `grpc` with
 * `rpc.method=_OTHER`. `open`: where the calls in flight are kept until they end (see
 * `OtelServerGrpc#close`).
 */
export function createGrpcServerInterceptor(
  driver: GrpcDriver,
  tracing: ResolvedGrpcTracing,
  handled: (path: string) => boolean,
  open?: Set<GrpcCallSpan>,
): GrpcServerInterceptor | undefined {
  const ServerInterceptingCall = driver.ServerInterceptingCall;
  if (typeof ServerInterceptingCall !== 'function') {
    diag.error(grpcServerInterceptorsUnsupported());
    return undefined;
  }
  const Metadata = driver.Metadata;
  return (methodDescriptor, call) => {
    let state: GrpcCallSpan | undefined;
    let ctx: Context | undefined;
    let metadataSent = false;
    const path: unknown = methodDescriptor?.path;
    const run = (fn: () => void): void => (ctx ? context.with(ctx, fn) : fn());
    const responseContext = (metadata: GrpcMetadata | null | undefined): GrpcMetadata | null | undefined => {
      if (!ctx || !state || !tracing.responseContext) {
        return metadata;
      }
      try {
        // The span's own context only: the caller's baggage is not sent back.
        return withTraceContext(metadata ?? new Metadata(), propagation.deleteBaggage(ctx));
      } catch {
        return metadata;
      }
    };
    const rename = (code: number): { name: string; attributes: Attributes } | undefined => {
      const method = grpcMethodOf(path);
      if (code !== GRPC_STATUS_UNIMPLEMENTED || method === undefined || handled(path as string)) {
        return undefined;
      }
      const attributes: Attributes = {};
      attributes[ATTR_RPC_METHOD] = RPC_METHOD_OTHER;
      attributes[ATTR_RPC_METHOD_ORIGINAL] = method;
      return { name: GRPC_RPC_SYSTEM, attributes };
    };
    return new ServerInterceptingCall(call, {
      start: (next: (listener: object) => void) => {
        next({
          onReceiveMetadata: (metadata: GrpcMetadata, nextMetadata: (metadata: GrpcMetadata) => void) => {
            try {
              const info = callInfo(tracing, 'server', path, metadata);
              if (info && isIgnoredBy('gRPC ignore predicate', tracing.ignore, info)) {
                // No span: the handler runs in the caller's context.
                ctx = extractContext(metadata, grpcMetadataGetter, undefined, 'grpc');
              } else {
                const started = startServerSpan(path, methodDescriptor, call, metadata, tracing, open);
                state = started.state;
                ctx = started.ctx;
                if (info) {
                  state.hookInfo = info;
                  callSpanHook('gRPC requestHook', tracing.requestHook, state.span, info);
                }
              }
            } catch (err) {
              diagLimited('error', grpcSpanStartFailed('SERVER'), err);
            }
            run(() => nextMetadata(metadata));
          },
          onReceiveMessage: (message: unknown, nextMessage: (message: unknown) => void) => {
            state?.message('RECEIVED', message);
            run(() => nextMessage(message));
          },
          onReceiveHalfClose: (nextHalfClose: () => void) => run(nextHalfClose),
          onCancel: () => {
            if (!state || state.ended) {
              return;
            }
            let code = GRPC_STATUS_CANCELLED;
            try {
              if (Date.now() + DEADLINE_SLACK_MS >= deadlineMs(call.getDeadline())) {
                code = GRPC_STATUS_DEADLINE_EXCEEDED;
              }
            } catch {
              // CANCELLED, then.
            }
            state.end(code, undefined, rename(code));
          },
        });
      },
      sendMetadata: (metadata: GrpcMetadata, nextMetadata: (metadata: GrpcMetadata | null | undefined) => void) => {
        metadataSent = true;
        nextMetadata(responseContext(metadata));
      },
      sendMessage: (message: unknown, nextMessage: (message: unknown) => void) => {
        state?.message('SENT', message);
        nextMessage(message);
      },
      sendStatus: (status: { code: number; details?: string; metadata?: GrpcMetadata | null }, nextStatus: (status: object) => void) => {
        // A trailers-only response (no metadata sent before the status) carries the context in its trailers.
        const sent = metadataSent || !ctx || !state || !tracing.responseContext ? status : { ...status, metadata: responseContext(status?.metadata) };
        try {
          nextStatus(sent);
        } finally {
          state?.end(status?.code, status?.details, rename(status?.code));
        }
      },
    });
  };
}

function startServerSpan(
  path: unknown,
  methodDescriptor: { responseSerialize?: (message: unknown) => unknown },
  call: { getConnectionInfo?: () => { remoteAddress?: string; remotePort?: number }; getPeer?: () => string },
  metadata: GrpcMetadata,
  tracing: ResolvedGrpcTracing,
  open: Set<GrpcCallSpan> | undefined,
): { state: GrpcCallSpan; ctx: Context } {
  // From the root, not from whatever context the connection's events run in.
  const parent = extractContext(metadata, grpcMetadataGetter, undefined, 'grpc');
  const { name, attributes } = grpcMethodAttributes(path, true, tracing.legacy);
  addServerPeer(call, attributes);
  const span = getOtelNestTracer().startSpan(name, { kind: SpanKind.SERVER, attributes }, parent);
  const serialize = typeof methodDescriptor?.responseSerialize === 'function' ? methodDescriptor.responseSerialize : undefined;
  const state = new GrpcCallSpan(span, 'server', tracing, serialize, open);
  state.measure(attributes);
  return { state, ctx: withConsumerState(trace.setSpan(parent, span), state) };
}

function addServerPeer(
  call: { getConnectionInfo?: () => { remoteAddress?: string; remotePort?: number }; getPeer?: () => string },
  attributes: Attributes,
): void {
  try {
    const info = typeof call.getConnectionInfo === 'function' ? call.getConnectionInfo() : undefined;
    if (info?.remoteAddress) {
      grpcPeerAttributes(info.remotePort ? `${bracket(info.remoteAddress)}:${info.remotePort}` : bracket(info.remoteAddress), attributes);
    } else if (typeof call.getPeer === 'function') {
      grpcPeerAttributes(call.getPeer(), attributes);
    }
  } catch {
    // No peer attributes, then.
  }
}

function bracket(address: string): string {
  return address.includes(':') ? `[${address}]` : address;
}

/**
 * The grpc-js client interceptor behind `OtelClientGrpc`: a CLIENT span per call, a child of the
 * context the call is made in (Nest makes it when the Observable is subscribed), its context
 * written into a copy of the call's metadata; ended at the status the call receives, which grpc-js
 * reports for every outcome (OK, error status, deadline exceeded, cancelled by the caller, channel
 * closed). Responses and the status reach the application in the caller's context, not in the
 * context of whichever call opened the connection. First in the client's interceptor list
 * (outermost), so the span covers the application's own client interceptors.
 *
 * Until `@grpc/grpc-js` is loaded (a few ticks after the client is constructed) calls go out untraced.
 */
export function createGrpcClientInterceptor(tracing: ResolvedGrpcTracing, serverAttributes: Attributes): GrpcClientInterceptor {
  let warned = false;
  return (options, nextCall) => {
    const driver = loadedGrpcDriver();
    if (!driver) {
      if (!warned) {
        warned = true;
        diag.warn(grpcClientNotReady());
      }
      return nextCall(options);
    }
    let state: GrpcCallSpan;
    let ctx: Context;
    const caller = context.active();
    try {
      const definition = options?.method_definition as { path?: unknown; requestSerialize?: (message: unknown) => unknown } | undefined;
      const info = callInfo(tracing, 'client', definition?.path);
      if (info && isIgnoredBy('gRPC ignore predicate', tracing.ignore, info)) {
        // No span: the call goes out with the caller's context, so the server continues the caller's trace.
        return new driver.InterceptingCall(nextCall(options), {
          start: (metadata: GrpcMetadata, listener: object, nextStart: (metadata: GrpcMetadata, listener: object) => void) =>
            nextStart(withTraceContext(metadata, caller), listener),
        });
      }
      const { name, attributes } = grpcMethodAttributes(definition?.path, true, tracing.legacy);
      for (const key in serverAttributes) {
        attributes[key] = serverAttributes[key];
      }
      const span = getOtelNestTracer().startSpan(name, { kind: SpanKind.CLIENT, attributes }, caller);
      const serialize = typeof definition?.requestSerialize === 'function' ? definition.requestSerialize : undefined;
      state = new GrpcCallSpan(span, 'client', tracing, serialize);
      state.measure(attributes, serverAttributes);
      if (info) {
        state.hookInfo = info;
        callSpanHook('gRPC requestHook', tracing.requestHook, span, info);
      }
      ctx = trace.setSpan(caller, span);
    } catch (err) {
      diagLimited('error', grpcSpanStartFailed('CLIENT'), err);
      return nextCall(options);
    }
    const next = context.with(ctx, () => nextCall(options));
    let peerRecorded = false;
    const recordPeer = (): void => {
      if (peerRecorded) {
        return;
      }
      peerRecorded = true;
      try {
        const attributes: Attributes = {};
        grpcPeerAttributes(next.getPeer(), attributes);
        state.span.setAttributes(attributes);
      } catch {
        // No peer attributes, then.
      }
    };
    const toCaller = (fn: () => void): void => context.with(caller, fn);
    return new driver.InterceptingCall(next, {
      start: (metadata: GrpcMetadata, _listener: unknown, nextStart: (metadata: GrpcMetadata, listener: object) => void) => {
        context.with(ctx, () =>
          nextStart(withTraceContext(metadata, ctx), {
            onReceiveMetadata: (received: unknown, nextMetadata: (metadata: unknown) => void) => {
              recordPeer();
              toCaller(() => nextMetadata(received));
            },
            onReceiveMessage: (message: unknown, nextMessage: (message: unknown) => void) => {
              state.message('RECEIVED', message);
              toCaller(() => nextMessage(message));
            },
            onReceiveStatus: (status: { code: number; details?: string }, nextStatus: (status: unknown) => void) => {
              recordPeer();
              state.end(status?.code, status?.details);
              toCaller(() => nextStatus(status));
            },
          }),
        );
      },
      sendMessage: (message: unknown, nextMessage: (message: unknown) => void) => {
        state.message('SENT', message);
        nextMessage(message);
      },
    });
  };
}
