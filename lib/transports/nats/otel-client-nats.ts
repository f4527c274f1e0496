import { ClientNats, type NatsOptions, type PacketId, type ReadPacket } from '@nestjs/microservices';
import { context, createContextKey, diag, ROOT_CONTEXT, type Context, type Span } from '@opentelemetry/api';
import { Observable } from 'rxjs';
import { ATTR_MESSAGING_MESSAGE_BODY_SIZE, ATTR_MESSAGING_MESSAGE_CONVERSATION_ID } from '../../semconv.js';
import {
  bodySize,
  injectContext,
  producerSpanEnder,
  startProducerSpan,
  type MessagingClientTracingOptions,
} from '../shared/messaging-tracing.js';
import { noteTracedTransport } from '../../utils/traced-transport.js';
import { captureMessageHeaders, messageCaptureOf } from '../shared/message-capture.js';
import { connectedNatsServer, NATS_MESSAGING_SYSTEM, natsDestination, natsServerAttributes } from './nats.attributes.js';
import { copyNatsHeaders, loadNatsDriver, natsHeaderGetter, natsHeaderSetter, type NatsHeaders } from './nats.carrier.js';
import { pendingRequestsFor, traceEmit, traceRequestReply } from '../shared/producer-tracer.js';
import { messageContextNotAdded, producerSpanStartFailed } from '../../otel.messages.js';
import type { ClientStatusSubject } from '../shared/client-status.js';

type NatsClientOptions = Required<NatsOptions>['options'];

/** Options of {@link OtelClientNats}: Nest's NATS client options, plus `otel`. */
export type OtelClientNatsOptions = NatsClientOptions & {
  /** Publish hook and ignore predicate. Default none. See {@link MessagingClientTracingOptions}. */
  otel?: MessagingClientTracingOptions;
};


/** The PRODUCER span of the message being sent, in the context Nest's send/emit path runs in. */
const PRODUCER_SPAN = createContextKey('otel-nest NATS producer span');

interface Producer {
  ctx: Context;
  end: (error?: unknown, errorType?: string) => void;
}

/**
 * Nest's `ClientNats` with a PRODUCER span `send {subject}` for every `send()` and `emit()`, whose
 * context (and the caller's baggage) goes out in the NATS message headers, written by the global
 * propagator. Payloads are unchanged; headers from a `NatsRecord` and the `headers` option are kept.
 *
 * ```ts
 * ClientsModule.register([{ name: 'ORDERS', customClass: OtelClientNats, options: { servers } }]);
 * ```
 *
 * `send()`: the span starts when the Observable is subscribed (each subscription sends) and ends
 * when the last reply arrives, when an error reply arrives (ERROR, `error.type`), when sending
 * fails (not connected, connection closed: ERROR), or when the subscriber unsubscribes: after a
 * reply that is a success (e.g. `firstValueFrom`), before any reply it is ERROR with `error.type`
 * `cancelled` (what an rxjs `timeout()` looks like from here). Replies are delivered in the
 * caller's context.
 *
 * `emit()`: the span ends when the message was handed to the connection (ERROR when that fails).
 *
 * @publicApi
 */
export class OtelClientNats extends ClientNats {
  /** Type-only widening, for `customClass`: see {@link ClientStatusSubject}. */
  protected declare _status$: ClientStatusSubject;
  /** Requests in flight, on a Nest whose close() leaves them pending (Nest 11). */
  private readonly pendingRequests = pendingRequestsFor(this);

  /** The options as given (Nest keeps its copy in a protected field). */
  private readonly natsOptions: NatsClientOptions;

  private readonly tracing: MessagingClientTracingOptions | undefined;

  constructor(options: OtelClientNatsOptions = {}) {
    const { otel, ...natsOptions } = options ?? {};
    super(natsOptions);
    // Header and body capture options: a wrong one fails here, at bootstrap.
    messageCaptureOf(otel, 'OtelClientNats otel');
    this.natsOptions = natsOptions;
    this.tracing = otel;
    noteTracedTransport(this, 'NATS client');
  }

  /**
   * Connects outside any request's context: the driver's socket callbacks (replies, status
   * updates) run in the context the connection was opened in, which would otherwise be the
   * context of whichever request happened to connect first.
   */
  override async connect(): Promise<any> {
    await loadNatsDriver();
    return context.with(ROOT_CONTEXT, () => super.connect());
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

  /** Called by Nest's `publish` for each request: the id is the reply correlation id. */
  protected override assignPacketId(packet: ReadPacket): ReadPacket & PacketId {
    const withId = super.assignPacketId(packet);
    activeProducerSpan()?.setAttribute(ATTR_MESSAGING_MESSAGE_CONVERSATION_ID, String(withId.id));
    return withId;
  }

  /**
   * Nest's headers (the record's, with the `headers` option added by Nest), copied, plus the
   * active context. Trace context is never written into the application's headers object (a
   * `NatsRecord` may be sent again); without anything to add, Nest's value is returned as is (no
   * headers at all when it had none).
   */
  protected override mergeHeaders<THeaders = any>(requestHeaders?: THeaders): any {
    const merged = super.mergeHeaders<THeaders>(requestHeaders) as NatsHeaders | undefined;
    const span = this.tracing?.captureHeaders ? activeProducerSpan() : undefined;
    if (span) {
      // The application's headers, before the trace context is added.
      span.setAttributes(captureMessageHeaders(messageCaptureOf(this.tracing), merged, natsHeaderGetter, {}));
    }
    try {
      const headers = copyNatsHeaders(merged);
      if (!headers) {
        return merged;
      }
      injectContext(context.active(), headers, natsHeaderSetter);
      return merged === undefined && headers.keys().length === 0 ? merged : headers;
    } catch (err) {
      diag.error(messageContextNotAdded('NATS'), err);
      return merged;
    }
  }

  /** Records the size of each serialized payload on the PRODUCER span. */
  protected override initializeSerializer(options: NatsClientOptions): void {
    super.initializeSerializer(options);
    // Runs inside super(): no field of this class exists yet.
    const inner = this.serializer as typeof this.serializer & { init?: () => unknown };
    const wrapper: typeof inner = {
      serialize: (packet, serializeOptions) => {
        const serialized = inner.serialize(packet, serializeOptions);
        if (isThenable(serialized)) {
          return serialized.then((value) => {
            recordBodySize(value);
            return value;
          });
        }
        recordBodySize(serialized);
        return serialized;
      },
    };
    if (typeof inner.init === 'function') {
      wrapper.init = () => inner.init!();
    }
    this.serializer = wrapper;
  }

  /** The driver's connection, through Nest's public `unwrap()`; undefined until connected. */
  private connection(): unknown {
    try {
      return this.unwrap();
    } catch {
      return undefined;
    }
  }

  private startProducer(pattern: unknown, isEvent: boolean, data: unknown): Producer | undefined {
    try {
      const destination = this.normalizePattern(pattern as Parameters<ClientNats['normalizePattern']>[0]);
      const { span, ctx } = startProducerSpan({
        system: NATS_MESSAGING_SYSTEM,
        ...natsDestination(destination, undefined, this.natsOptions?.inboxPrefix),
        pattern: destination,
        isEvent,
        attributes: natsServerAttributes(this.natsOptions?.servers, connectedNatsServer(this.connection())),
        data,
      }, this.tracing);
      return { ctx: ctx.setValue(PRODUCER_SPAN, span), end: producerSpanEnder(span) };
    } catch (err) {
      diag.error(producerSpanStartFailed('NATS'), err);
      return undefined;
    }
  }
}

function activeProducerSpan(): Span | undefined {
  return context.active().getValue(PRODUCER_SPAN) as Span | undefined;
}

function recordBodySize(serialized: unknown): void {
  try {
    const span = activeProducerSpan();
    if (span && serialized !== null && typeof serialized === 'object') {
      const size = bodySize((serialized as { data?: unknown }).data);
      if (size !== undefined) {
        span.setAttribute(ATTR_MESSAGING_MESSAGE_BODY_SIZE, size);
      }
    }
  } catch {
    // An attribute is never worth failing a send.
  }
}

function isNil(value: unknown): value is null | undefined {
  return value === null || value === undefined;
}

function isThenable(value: unknown): value is Promise<unknown> {
  return value !== null && typeof value === 'object' && typeof (value as Promise<unknown>).then === 'function';
}
