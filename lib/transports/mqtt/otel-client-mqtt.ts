import { ClientMqtt, type MqttOptions, type MqttRecordOptions, type PacketId, type ReadPacket, type WritePacket } from '@nestjs/microservices';
import { context, createContextKey, diag, ROOT_CONTEXT, type Context, type Span } from '@opentelemetry/api';
import { Observable } from 'rxjs';
import {
  ATTR_MESSAGING_MESSAGE_BODY_SIZE,
  ATTR_MESSAGING_MESSAGE_CONVERSATION_ID,
  ATTR_MESSAGING_MESSAGE_ID,
} from '../../semconv.js';
import { addAttributes } from '../../utils/attributes.js';
import { producerSpanEnder, startProducerSpan, type MessagingClientTracingOptions } from '../shared/messaging-tracing.js';
import { noteTracedTransport } from '../../utils/traced-transport.js';
import { messageCaptureOf } from '../shared/message-capture.js';
import { pendingRequestsFor, traceEmit, traceRequestReply } from '../shared/producer-tracer.js';
import { messageContextNotAdded, mqttReplyNotRead, producerSpanStartFailed } from '../../otel.messages.js';
import { diagLimited } from '../../utils/diag-limited.js';
import type { ClientStatusSubject } from '../shared/client-status.js';
import { metadataWithContext } from '../tcp/tcp.carrier.js';
import {
  addMqttClientId,
  addMqttDeliveryAttributes,
  MQTT_MESSAGING_SYSTEM,
  mqttDestination,
  mqttProtocolVersion,
  mqttServerAttributes,
} from './mqtt.attributes.js';
import { userPropertiesWithContext } from './mqtt.carrier.js';

type MqttClientOptions = Required<MqttOptions>['options'];

/** Options of {@link OtelClientMqtt}: Nest's MQTT client options, plus `otel`. */
export type OtelClientMqttOptions = MqttClientOptions & {
  /** Publish hook and ignore predicate. Default none. See {@link MessagingClientTracingOptions}. */
  otel?: MessagingClientTracingOptions;
};

/** The PRODUCER span of the message being sent, in the context Nest's send/emit path runs in. */
const PRODUCER_SPAN = createContextKey('otel-nest MQTT producer span');

interface Producer {
  ctx: Context;
  end: (error?: unknown, errorType?: string) => void;
}

/**
 * Nest's `ClientMqtt` with a PRODUCER span `send {topic}` for every `send()` and `emit()`, whose
 * context (and the caller's baggage) goes out with the message, written by the global propagator:
 * - MQTT 5 (`protocolVersion: 5`): as user properties `traceparent`, `tracestate`, `baggage` (the
 *   W3C Trace Context MQTT draft's names), next to the application's own user properties (an
 *   `MqttRecord`'s, the `userProperties` option), which are kept;
 * - MQTT 3.1.1 and 3.1 (the driver's default), which have no user properties: as the `metadata`
 *   object of Nest's JSON packet (`{ pattern, data, id, metadata: { traceparent, ... } }`), the
 *   envelope field Nest 12's `setOnDispatchHook` writes, which Nest servers ignore and
 *   `OtelServerMqtt` reads.
 * The payload's `data` is never changed.
 *
 * ```ts
 * ClientsModule.register([{ name: 'ORDERS', customClass: OtelClientMqtt, options: { url, protocolVersion: 5 } }]);
 * ```
 *
 * `send()`: the span starts when the Observable is subscribed (each subscription sends) and ends
 * when the last reply arrives, when an error reply arrives (ERROR, `error.type`), when sending
 * fails (broker unreachable, connection closed: ERROR), or when the subscriber unsubscribes: after
 * a reply that is a success (e.g. `firstValueFrom`), before any reply it is ERROR with `error.type`
 * `cancelled` (what an rxjs `timeout()` looks like from here). Replies are delivered in the
 * caller's context.
 *
 * `emit()`: the span ends when the driver reports the message published (ERROR when that fails).
 *
 * @publicApi
 */
export class OtelClientMqtt extends ClientMqtt {
  /** Type-only widening, for `customClass`: see {@link ClientStatusSubject}. */
  protected declare _status$: ClientStatusSubject;
  /** Requests in flight, on a Nest whose close() leaves them pending (Nest 11). */
  private readonly pendingRequests = pendingRequestsFor(this);
  /** The options as given (Nest keeps its copy in a protected field). */
  private readonly mqttOptions: MqttClientOptions;
  private readonly tracing: MessagingClientTracingOptions | undefined;
  /**
   * The context each packet is sent in. Nest publishes the first requests on a topic from the
   * driver's SUBACK callback (it subscribes to the reply topic first): kept by packet (the object
   * is the same from `publish` to the serializer) rather than read from the active context there,
   * so as not to depend on how the driver schedules its callbacks.
   */
  private readonly sendingIn = new WeakMap<object, Context>();
  /**
   * The context of the packet just serialized, for `mergePacketOptions`, which Nest calls right
   * after the serializer, synchronously, with the publish options only.
   */
  private serializedIn: Context | undefined;

  constructor(options: OtelClientMqttOptions = {}) {
    const { otel, ...mqttOptions } = options ?? {};
    super(mqttOptions);
    // Header and body capture options: a wrong one fails here, at bootstrap.
    messageCaptureOf(otel, 'OtelClientMqtt otel');
    this.mqttOptions = mqttOptions;
    this.tracing = otel;
    noteTracedTransport(this, 'MQTT client');
  }

  /**
   * Connects outside any request's context: the driver's socket callbacks (replies, SUBACKs,
   * status events) run in the context the connection was opened in, which would otherwise be the
   * context of whichever request happened to connect first.
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
    this.pendingRequests?.endAllClosed();
    return super.close();
  }

  /**
   * Nest's reply handler, with a catch: Nest 11's parses every message on a reply topic with no
   * try, so a message there that is not JSON (any peer can publish on `<topic>/reply`) would be an
   * unhandled rejection, which ends the process. Nest 12 reads it as a string itself.
   */
  override createResponseCallback(): (channel: string, buffer: Buffer) => any {
    const handle = super.createResponseCallback();
    return async (channel: string, buffer: Buffer) => {
      try {
        return await handle(channel, buffer);
      } catch (error) {
        diagLimited('warn', mqttReplyNotRead(channel), error);
        return undefined;
      }
    };
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

  protected override publish(partialPacket: ReadPacket, callback: (packet: WritePacket) => any): () => void {
    this.rememberContext(partialPacket);
    return super.publish(partialPacket, callback);
  }

  protected override dispatchEvent(packet: ReadPacket): Promise<any> {
    this.rememberContext(packet);
    return super.dispatchEvent(packet);
  }

  /**
   * Called by Nest's `publish` for each request: Nest's packet id is the message's id and, echoed
   * in the reply, its correlation id. (The MQTT packet identifier is no message id: it exists for
   * QoS 1 and 2 only, per connection, and is reused.)
   */
  protected override assignPacketId(packet: ReadPacket): ReadPacket & PacketId {
    const withId = super.assignPacketId(packet);
    const span = activeProducerSpan();
    if (span) {
      const id = String(withId.id);
      span.setAttribute(ATTR_MESSAGING_MESSAGE_ID, id);
      span.setAttribute(ATTR_MESSAGING_MESSAGE_CONVERSATION_ID, id);
    }
    return withId;
  }

  /**
   * Nest's publish options (the record's, with the `userProperties` option added by Nest), plus,
   * on MQTT 5, the context of the packet just serialized as user properties, in a copy: the
   * application's record options are never changed (an `MqttRecord` may be sent again).
   */
  protected override mergePacketOptions(requestOptions?: MqttRecordOptions): MqttRecordOptions | undefined {
    const merged = super.mergePacketOptions(requestOptions);
    const ctx = this.serializedIn;
    this.serializedIn = undefined;
    if (!ctx) {
      return merged;
    }
    try {
      const span = ctx.getValue(PRODUCER_SPAN) as Span | undefined;
      if (span) {
        span.setAttributes(addMqttDeliveryAttributes({}, merged?.qos ?? 0, merged?.retain ?? false));
      }
      if (!this.isMqtt5()) {
        return merged;
      }
      const userProperties = userPropertiesWithContext(merged?.properties?.userProperties, ctx);
      if (!userProperties) {
        return merged;
      }
      return { ...merged, properties: { ...merged?.properties, userProperties } };
    } catch (err) {
      diag.error(messageContextNotAdded('MQTT'), err);
      return merged;
    }
  }

  /**
   * Serializes in the packet's own context: below MQTT 5, the packet goes out with the context in
   * its `metadata` (the application's metadata entries kept, the packet object unchanged); the
   * PRODUCER span gets the payload's size.
   */
  protected override initializeSerializer(options: MqttClientOptions): void {
    super.initializeSerializer(options);
    // Runs inside super(): no field of this class exists yet; the wrapper reads them per call.
    const inner = this.serializer;
    this.serializer = {
      serialize: (packet: any, serializeOptions?: any) => {
        const ctx = this.contextOf(packet);
        const outgoing = ctx && !this.isMqtt5() ? this.withMetadata(packet, ctx) : packet;
        const serialized = inner.serialize(outgoing, serializeOptions);
        this.serializedIn = ctx;
        recordBodySize(ctx, serialized);
        return serialized;
      },
    };
  }

  private rememberContext(packet: unknown): void {
    if (packet !== null && typeof packet === 'object') {
      this.sendingIn.set(packet, context.active());
    }
  }

  /** The context `packet` was handed to Nest in, when it is ours to trace. */
  private contextOf(packet: unknown): Context | undefined {
    // Nest's constructor can serialize nothing, but a subclass might: fields may not exist yet.
    const ctx = packet !== null && typeof packet === 'object' ? this.sendingIn?.get(packet) : undefined;
    return ctx ?? undefined;
  }

  private withMetadata(packet: any, ctx: Context): unknown {
    try {
      if (packet === null || typeof packet !== 'object') {
        return packet;
      }
      const metadata = metadataWithContext(packet.metadata, ctx);
      return metadata ? { ...packet, metadata } : packet;
    } catch (err) {
      diag.error(messageContextNotAdded('MQTT'), err);
      return packet;
    }
  }

  private isMqtt5(): boolean {
    return mqttProtocolVersion(this.mqttClient, this.mqttOptions?.protocolVersion) === 5;
  }

  private startProducer(pattern: unknown, isEvent: boolean, data: unknown): Producer | undefined {
    try {
      const topic = this.normalizePattern(pattern as Parameters<ClientMqtt['normalizePattern']>[0]);
      const attributes = addMqttClientId(addAttributes({}, mqttServerAttributes(this.url)), this.mqttClient);
      const { span, ctx } = startProducerSpan(
        {
          system: MQTT_MESSAGING_SYSTEM,
          ...mqttDestination(topic),
          pattern: topic,
          isEvent,
          attributes,
          data,
        },
        this.tracing,
      );
      return { ctx: ctx.setValue(PRODUCER_SPAN, span), end: producerSpanEnder(span) };
    } catch (err) {
      diag.error(producerSpanStartFailed('MQTT'), err);
      return undefined;
    }
  }
}

function activeProducerSpan(): Span | undefined {
  return context.active().getValue(PRODUCER_SPAN) as Span | undefined;
}

function recordBodySize(ctx: Context | undefined, serialized: unknown): void {
  try {
    const span = ctx?.getValue(PRODUCER_SPAN) as Span | undefined;
    if (!span) {
      return;
    }
    const size =
      typeof serialized === 'string' ? Buffer.byteLength(serialized) : serialized instanceof Uint8Array ? serialized.byteLength : undefined;
    if (size !== undefined) {
      span.setAttribute(ATTR_MESSAGING_MESSAGE_BODY_SIZE, size);
    }
  } catch {
    // An attribute is never worth failing a send.
  }
}

function isNil(value: unknown): value is null | undefined {
  return value === null || value === undefined;
}
