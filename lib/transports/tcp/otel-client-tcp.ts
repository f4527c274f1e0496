import { ClientTCP, type ReadPacket, type TcpClientOptions, type WritePacket } from '@nestjs/microservices';
import { context, createContextKey, ROOT_CONTEXT, SpanKind, trace, type Context, type Span } from '@opentelemetry/api';
import type { Observable } from 'rxjs';
import { messageContextNotAdded, producerSpanStartFailed, tcpSpanStartFailed } from '../../otel.messages.js';
import { diagLimited } from '../../utils/diag-limited.js';
import { noteTracedTransport } from '../../utils/traced-transport.js';
import { getOtelNestTracer } from '../../utils/tracer.js';
import type { ClientStatusSubject } from '../shared/client-status.js';
import {
  producerSpanEnder,
  startProducerSpan,
  type MessagingClientTracingOptions,
  type PublishInfo,
} from '../shared/messaging-tracing.js';
import { callSpanHook, isIgnoredBy } from '../../utils/user-hook.js';
import { activeInstruments } from '../../metrics/metrics-state.js';
import { attachSpanMeasurement, measureSpan } from '../../metrics/span-measurement.js';
import { ATTR_SERVER_ADDRESS, ATTR_SERVER_PORT } from '../../semconv.js';
import { traceEmit, traceRequestReply, type ProducerHandle } from '../shared/producer-tracer.js';
import { TCP_SYSTEM, tcpPeerAttributes, tcpRpcAttributes, tcpRpcMetricAttributes, tcpServerAttributes } from './tcp.attributes.js';
import { isMetadataObject, metadataWithContext, TCP_REPLY_CONTEXT_KEY, type TcpMetadata } from './tcp.carrier.js';

/** Options of {@link OtelClientTCP}: Nest's TCP client options, unchanged. */
export type OtelClientTcpOptions = Required<TcpClientOptions>['options'] & {
  /**
   * Publish hook and ignore predicate, for `emit()` (PRODUCER spans) and `send()` (CLIENT spans)
   * alike. Default none. See {@link MessagingClientTracingOptions}.
   */
  otel?: MessagingClientTracingOptions;
};

/** A packet with the envelope's `metadata` (typed by Nest 12, absent from Nest 11's typings). */
type PacketWithMetadata = ReadPacket & { metadata?: unknown };

/** The CLIENT span of the request being sent, in the context Nest's send path runs in. */
const CLIENT_SPAN = createContextKey('otel-nest TCP client span');

/** What a request asks the server for: the consumer's context in the replies' metadata. */
const REPLY_CONTEXT_REQUEST: TcpMetadata = { [TCP_REPLY_CONTEXT_KEY]: '1' };

/** The keys of Nest's reply envelope (what Nest 12.1's response deserializer accepts, besides `metadata`). */
const REPLY_ENVELOPE_KEYS = new Set(['id', 'err', 'response', 'isDisposed', 'status']);

/**
 * Nest's `ClientTCP`, traced. The caller's context goes out in the packet envelope's `metadata`
 * (`traceparent`, `tracestate`, `baggage`), written by the global propagator, next to whatever the
 * application's own dispatch hook (Nest 12's `setOnDispatchHook`) put there; `data` is never touched.
 *
 * ```ts
 * ClientsModule.register([{ name: 'ORDERS', customClass: OtelClientTCP, options: { host, port } }]);
 * ```
 *
 * `send()`: a CLIENT span `{pattern}` (RPC conventions, `rpc.system.name` `nestjs_tcp`), started
 * when the Observable is subscribed and ended at the last reply, at an error reply (ERROR,
 * `error.type`), when the connection fails or closes (ERROR), or when the subscriber unsubscribes
 * first (an rxjs `timeout()`: ERROR, `error.type` `cancelled`). Replies reach the caller's code in
 * the caller's context.
 *
 * `emit()`: a PRODUCER span `send {pattern}` (messaging conventions), ended when the event was
 * written to the socket (ERROR when that fails).
 *
 * @publicApi
 */
export class OtelClientTCP extends ClientTCP {
  /** Type-only widening, for `customClass`: see {@link ClientStatusSubject}. */
  protected declare _status$: ClientStatusSubject;

  private readonly tracing: MessagingClientTracingOptions | undefined;

  constructor(options: OtelClientTcpOptions = {}) {
    const { otel, ...tcpOptions } = options ?? {};
    super(tcpOptions);
    this.tracing = otel;
    noteTracedTransport(this, 'TCP client');
  }

  /**
   * Connects outside any request's context: the socket's events (replies, errors) run in the
   * context the connection was opened in, which would otherwise be the context of whichever
   * request happened to connect first.
   */
  override connect(): Promise<any> {
    return context.with(ROOT_CONTEXT, () => super.connect());
  }

  override send<TResult = any, TInput = any>(pattern: any, data: TInput): Observable<TResult> {
    const source = super.send<TResult, TInput>(pattern, data);
    if (isNil(pattern) || isNil(data)) {
      return source;
    }
    return traceRequestReply(source, () => this.startClientSpan(pattern, data));
  }

  override emit<TResult = any, TInput = any>(pattern: any, data: TInput): Observable<TResult> {
    if (isNil(pattern) || isNil(data)) {
      return super.emit<TResult, TInput>(pattern, data);
    }
    const producer = this.startProducer(pattern, data);
    if (!producer) {
      return super.emit<TResult, TInput>(pattern, data);
    }
    return traceEmit(() => super.emit<TResult, TInput>(pattern, data), producer);
  }

  /** Every request goes out with the active context in its metadata. */
  protected override publish(packet: ReadPacket, callback: (packet: WritePacket) => any): () => void {
    return super.publish(this.withContext(packet, true), callback);
  }

  /** Every event goes out with the active context in its metadata. */
  protected override dispatchEvent(packet: ReadPacket): Promise<any> {
    return super.dispatchEvent(this.withContext(packet, false));
  }

  /**
   * Takes the `metadata` our server adds to replies off them before Nest's deserializer sees them
   * (Nest 12.1's would read a reply with an unknown key as a foreign payload). Only from a packet
   * that is otherwise a Nest reply envelope: a foreign payload with a `metadata` field stays as it is.
   */
  protected override initializeDeserializer(options: OtelClientTcpOptions): void {
    super.initializeDeserializer(options);
    // Runs inside super(): no field of this class exists yet.
    const inner = this.deserializer;
    this.deserializer = {
      deserialize: (value, deserializeOptions) => inner.deserialize(withoutReplyMetadata(value), deserializeOptions),
    };
  }

  private withContext(packet: ReadPacket, isRequest: boolean): ReadPacket {
    try {
      const active = context.active();
      const span = active.getValue(CLIENT_SPAN) as Span | undefined;
      if (span) {
        // Connected by now: the peer is known.
        span.setAttributes(tcpPeerAttributes(this.netSocket()));
      }
      const metadata = metadataWithContext(
        (packet as PacketWithMetadata).metadata,
        active,
        isRequest && span ? REPLY_CONTEXT_REQUEST : undefined,
      );
      return metadata ? ({ ...packet, metadata } as ReadPacket) : packet;
    } catch (err) {
      diagLimited('error', messageContextNotAdded('TCP'), err);
      return packet;
    }
  }

  private netSocket(): unknown {
    try {
      return this.unwrap();
    } catch {
      return undefined;
    }
  }

  private startClientSpan(pattern: unknown, data: unknown): ProducerHandle | undefined {
    try {
      const method = this.normalizePattern(pattern as Parameters<ClientTCP['normalizePattern']>[0]);
      const hooks = this.tracing;
      const info: PublishInfo | undefined =
        hooks?.publishHook || hooks?.ignore ? { system: TCP_SYSTEM, pattern: method, destination: method, isEvent: false, data } : undefined;
      if (info && isIgnoredBy('client ignore predicate', hooks!.ignore, info)) {
        // No span: the request carries the caller's context, as with no client span at all.
        return undefined;
      }
      const attributes = tcpServerAttributes(this.host, this.port, tcpRpcAttributes(method));
      const active = context.active();
      const span = getOtelNestTracer().startSpan(method, { kind: SpanKind.CLIENT, attributes }, active);
      const instruments = activeInstruments();
      if (instruments !== undefined) {
        const metric = tcpRpcMetricAttributes(method);
        metric[ATTR_SERVER_ADDRESS] = attributes[ATTR_SERVER_ADDRESS];
        metric[ATTR_SERVER_PORT] = attributes[ATTR_SERVER_PORT];
        attachSpanMeasurement(span, measureSpan(span, instruments.rpcClientDuration, metric));
      }
      if (info) {
        callSpanHook('publishHook', hooks!.publishHook, span, info);
      }
      const ctx: Context = trace.setSpan(active, span).setValue(CLIENT_SPAN, span);
      return { ctx, end: producerSpanEnder(span) };
    } catch (err) {
      diagLimited('error', tcpSpanStartFailed('CLIENT'), err);
      return undefined;
    }
  }

  private startProducer(pattern: unknown, data: unknown): ProducerHandle | undefined {
    try {
      const destination = this.normalizePattern(pattern as Parameters<ClientTCP['normalizePattern']>[0]);
      const { span, ctx } = startProducerSpan({
        system: TCP_SYSTEM,
        destination,
        pattern: destination,
        isEvent: true,
        attributes: tcpServerAttributes(this.host, this.port),
        data,
      }, this.tracing);
      return { ctx, end: producerSpanEnder(span) };
    } catch (err) {
      diagLimited('error', producerSpanStartFailed('TCP'), err);
      return undefined;
    }
  }
}

/** `value` without its `metadata`, when the rest is a Nest reply envelope; else `value` itself. */
function withoutReplyMetadata(value: unknown): unknown {
  if (!isMetadataObject(value) || !Object.hasOwn(value, 'metadata')) {
    return value;
  }
  const { metadata: _metadata, ...rest } = value;
  const keys = Object.keys(rest);
  return keys.length > 0 && keys.every((key) => REPLY_ENVELOPE_KEYS.has(key)) ? rest : value;
}

function isNil(value: unknown): boolean {
  return value === undefined || value === null;
}
