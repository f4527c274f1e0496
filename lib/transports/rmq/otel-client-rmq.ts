import {
  context,
  createContextKey,
  diag,
  ROOT_CONTEXT,
  type Attributes,
  type Context,
  type Span,
} from '@opentelemetry/api';
import { ClientRMQ, RmqRecord, type ReadPacket, type RmqOptions, type WritePacket } from '@nestjs/microservices';
import { Observable } from 'rxjs';
import {
  ATTR_MESSAGING_MESSAGE_CONVERSATION_ID,
  ATTR_MESSAGING_MESSAGE_ID,
  ATTR_MESSAGING_RABBITMQ_ROUTING_KEY,
} from '../../semconv.js';
import { addAttributes } from '../../utils/attributes.js';
import {
  injectContext,
  producerSpanEnder,
  startProducerSpan,
  type MessagingClientTracingOptions,
} from '../shared/messaging-tracing.js';
import { noteTracedTransport } from '../../utils/traced-transport.js';
import { captureMessageHeaders, messageCaptureOf } from '../shared/message-capture.js';
import { DIRECT_REPLY_TO, publishDestination, queueFlags, RABBITMQ_SYSTEM, serverAttributes } from './rmq.attributes.js';
import { rmqHeaderGetter, rmqHeaderSetter } from './rmq.carrier.js';
import { closeFailsPendingRequests, rmqQueue, rmqReplyQueue } from '../../nest-compat.js';
import { diagLimited } from '../../utils/diag-limited.js';
import { producerSpanStartFailed, rmqConnectionNotWatched } from '../../otel.messages.js';
import {
  PendingRequests,
  SEND_CONNECTION_LOST,
  traceEmit,
  traceRequestReply,
} from '../shared/producer-tracer.js';
import type { ClientStatusSubject } from '../shared/client-status.js';

/** Options of {@link OtelClientRMQ}: Nest's RabbitMQ client options, plus `otel`. */
export type OtelClientRmqOptions = NonNullable<RmqOptions['options']> & {
  /** Publish hook and ignore predicate. Default none. See {@link MessagingClientTracingOptions}. */
  otel?: MessagingClientTracingOptions;
};


interface Producer {
  readonly span: Span;
  /** Ends the span once: no argument for success, an error, or `(undefined, errorType)`. */
  readonly end: (error?: unknown, errorType?: string) => void;
}

/** The PRODUCER span of the message being published in the active context. */
const PRODUCER = createContextKey('otel-nest rmq producer');


/**
 * Nest's `ClientRMQ`, with a PRODUCER span `send {destination}` for every `send()` and `emit()`,
 * and the span's context written into AMQP `properties.headers` by the global propagator
 * (`traceparent`, `tracestate`, `baggage`). Payloads, the user's headers (`options.headers`,
 * `RmqRecord` options) and every error are exactly Nest's.
 *
 * - `send()`: the span covers connecting, publishing and waiting; it ends with the last reply, with
 *   status ERROR and `error.type` on an error reply or a failure, and with `error.type` `cancelled`
 *   (status ERROR) when the subscriber unsubscribes first (RxJS `timeout()`, `take(1)` on a stream).
 *   `messaging.message.conversation_id` is Nest's request id (the AMQP correlation id).
 * - `emit()`: the span ends when the broker confirmed the message, or with ERROR when it could not
 *   be published.
 * - The connection drops while `send()`s wait for their replies on direct reply-to (Nest's
 *   default reply queue): those replies can no longer arrive, and Nest leaves the requests
 *   pending (until the caller's timeout, or `close()`). Their spans end at the drop, ERROR with
 *   `error.type` `connection_lost`.
 *
 * ```ts
 * ClientsModule.register([{ name: 'ORDERS', customClass: OtelClientRMQ, options: { urls, queue: 'orders' } }]);
 * ```
 *
 * @publicApi
 */
export class OtelClientRMQ extends ClientRMQ {
  /** Type-only widening, for `customClass`: see {@link ClientStatusSubject}. */
  protected declare _status$: ClientStatusSubject;
  private readonly connectionAttributes: Attributes;
  /** Requests in flight: ended by a dropped connection (see registerDisconnectListener), and by close() on Nest 11. */
  private readonly pendingRequests = new PendingRequests();

  /** The options as given (Nest keeps its copy, and the queues it derives, in protected fields). */
  private readonly rmqOptions: OtelClientRmqOptions;

  private readonly tracing: MessagingClientTracingOptions | undefined;

  constructor(options: OtelClientRmqOptions) {
    const { otel, ...rmqOptions } = options ?? {};
    super(rmqOptions);
    // Header and body capture options: a wrong one fails here, at bootstrap.
    messageCaptureOf(otel, 'OtelClientRMQ otel');
    this.rmqOptions = rmqOptions;
    this.tracing = otel;
    noteTracedTransport(this, 'RabbitMQ client');
    this.connectionAttributes = serverAttributes(options?.urls);
  }

  /**
   * Connects outside of any request's context: the connection's callbacks (replies arriving, for
   * one) would otherwise run in the context of whichever request happened to connect first.
   */
  override connect(): Promise<any> {
    return context.with(ROOT_CONTEXT, () => super.connect());
  }

  /**
   * Nest's close. On a Nest whose close leaves requests in flight pending (Nest 11), their
   * PRODUCER spans end first, with ERROR and `error.type` `client_closed`; Nest 12.1 fails
   * those requests itself ('Connection closed'), and their spans get that error.
   */
  override async close(): Promise<void> {
    if (!closeFailsPendingRequests(this)) {
      this.pendingRequests.endAllClosed();
    }
    return super.close();
  }

  /**
   * Nest's disconnect listener, plus one of ours, on each connection manager Nest creates (once
   * per `connect()` after a close, not per reconnect). Replies to direct reply-to are delivered on
   * the channel the request went out on; once the connection drops, the requests still waiting
   * can only stay pending in Nest, and their spans end here. A reply queue of the user's may
   * still deliver after the reconnect: those spans wait for it.
   */
  override registerDisconnectListener(client: Parameters<ClientRMQ['registerDisconnectListener']>[0]): void {
    super.registerDisconnectListener(client);
    if (rmqReplyQueue(this) !== DIRECT_REPLY_TO) {
      return;
    }
    try {
      client.on('disconnect', () => this.pendingRequests.endAll(SEND_CONNECTION_LOST));
    } catch (err) {
      diagLimited('warn', rmqConnectionNotWatched(), err);
    }
  }

  override send<TResult = any, TInput = any>(pattern: any, data: TInput): Observable<TResult> {
    const source$ = super.send<TResult, TInput>(pattern, data);
    if (isNil(pattern) || isNil(data)) {
      // Nest answers with an InvalidMessageException without publishing anything.
      return source$;
    }
    return traceRequestReply(
      source$,
      () => this.startProducer(pattern, data, false, context.active()),
      recordable,
      this.pendingRequests,
    );
  }

  override emit<TResult = any, TInput = any>(pattern: any, data: TInput): Observable<TResult> {
    if (isNil(pattern) || isNil(data)) {
      return super.emit<TResult, TInput>(pattern, data);
    }
    const producer = this.startProducer(pattern, data, true, context.active());
    if (!producer) {
      return super.emit<TResult, TInput>(pattern, data);
    }
    return traceEmit(() => super.emit<TResult, TInput>(pattern, data), producer, recordable);
  }

  /** Ends the `send()` span on the last reply or an error reply, before the caller sees it. */
  protected override publish(message: ReadPacket, callback: (packet: WritePacket) => any): () => void {
    const producer = context.active().getValue(PRODUCER) as Producer | undefined;
    if (!producer) {
      return super.publish(message, callback);
    }
    const observe = (packet: WritePacket): any => {
      // Same tests as Nest's ClientProxy.createObserver. Ending first means a caller that
      // unsubscribes on the value (`firstValueFrom`) does not turn a reply into a cancellation.
      if (packet?.err) {
        producer.end(recordable(packet.err));
      } else if (packet?.isDisposed) {
        producer.end();
      }
      return callback(packet);
    };
    const teardown = super.publish(message, observe);
    // Nest assigned the request id (also the AMQP correlation id) inside publish.
    const id = (message as ReadPacket & { id?: unknown }).id;
    if (typeof id === 'string' && id) {
      producer.span.setAttribute(ATTR_MESSAGING_MESSAGE_CONVERSATION_ID, id);
    }
    return teardown;
  }

  /**
   * Nest's merge of `options.headers` and the message's own headers, plus the trace headers of the
   * active context (the PRODUCER span's, for `send()` and `emit()`). Without a context to propagate
   * it returns exactly what Nest would.
   */
  protected override mergeHeaders(requestHeaders?: Record<string, string>): Record<string, string> | undefined {
    const merged = super.mergeHeaders(requestHeaders);
    const producer = this.tracing?.captureHeaders ? (context.active().getValue(PRODUCER) as Producer | undefined) : undefined;
    if (producer) {
      // The application's headers, before the trace context is added.
      producer.span.setAttributes(captureMessageHeaders(messageCaptureOf(this.tracing), merged, rmqHeaderGetter, {}));
    }
    const traceHeaders: Record<string, string> = {};
    injectContext(context.active(), traceHeaders, rmqHeaderSetter);
    if (Object.keys(traceHeaders).length === 0) {
      return merged;
    }
    return { ...merged, ...traceHeaders };
  }

  private startProducer(
    pattern: unknown,
    data: unknown,
    isEvent: boolean,
    parent: Context,
  ): (Producer & { ctx: Context }) | undefined {
    try {
      // The same string Nest publishes (routing key in exchange modes) and the server matches.
      const patternString = typeof pattern === 'string' ? pattern : JSON.stringify(pattern);
      const { exchange, routingKey } = this.route(patternString);
      const attributes = addAttributes({}, this.connectionAttributes);
      if (routingKey) {
        attributes[ATTR_MESSAGING_RABBITMQ_ROUTING_KEY] = routingKey;
      }
      const messageId = data instanceof RmqRecord ? (data.options as { messageId?: unknown } | undefined)?.messageId : undefined;
      if (typeof messageId === 'string' && messageId) {
        attributes[ATTR_MESSAGING_MESSAGE_ID] = messageId;
      }
      const { span, ctx } = context.with(parent, () =>
        startProducerSpan({
          system: RABBITMQ_SYSTEM,
          destination: publishDestination(exchange, routingKey),
          // Through the default exchange the routing key is a queue: a reply queue, for one.
          ...(exchange ? undefined : queueFlags(routingKey)),
          pattern: patternString,
          isEvent,
          attributes,
          data,
        }, this.tracing),
      );
      const producer: Producer = { span, end: producerSpanEnder(span) };
      return { span, end: producer.end, ctx: ctx.setValue(PRODUCER, producer) };
    } catch (err) {
      diag.error(producerSpanStartFailed('RabbitMQ'), err);
      return undefined;
    }
  }

  /** Where Nest's ClientRMQ publishes: the exchange in wildcard and fanout modes, else the queue. */
  private route(pattern: string): { exchange: string; routingKey: string } {
    const options = this.rmqOptions;
    const queue = rmqQueue(this);
    if (options.wildcards || options.exchangeType === 'fanout') {
      const exchange = 'exchange' in options ? options.exchange : queue;
      return { exchange: exchange ?? '', routingKey: pattern };
    }
    return { exchange: '', routingKey: queue };
  }
}

/**
 * What the span records for a failure. Nest's ClientRMQ fails a connection attempt with the
 * connection manager's `connectFailed` event, `{ err, url }`: the span gets the inner error, and
 * not the URL, which may hold credentials. The caller still receives the event unchanged.
 */
function recordable(error: unknown): unknown {
  if (error !== null && typeof error === 'object' && !(error instanceof Error)) {
    const inner = (error as { err?: unknown }).err;
    if (inner instanceof Error) {
      return inner;
    }
  }
  return error;
}

function isNil(value: unknown): value is null | undefined {
  return value === null || value === undefined;
}
