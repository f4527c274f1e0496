import { ServerMqtt, type MessageHandler, type MqttContext, type MqttOptions, type ReadPacket, type WritePacket } from '@nestjs/microservices';
import { context, createContextKey, diag, ROOT_CONTEXT, type Attributes } from '@opentelemetry/api';
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
import { getConsumerState, type IncomingMessageDescription, type MessagingServerTracingOptions } from '../shared/messaging-tracing.js';
import { noteTracedTransport } from '../../utils/traced-transport.js';
import { messageCaptureOf } from '../shared/message-capture.js';
import { replyContextNotAdded } from '../../otel.messages.js';
import {
  addMqttClientId,
  addMqttDeliveryAttributes,
  MQTT_MESSAGING_SYSTEM,
  mqttDestination,
  mqttProtocolVersion,
  mqttServerAttributes,
  mqttSharedSubscription,
} from './mqtt.attributes.js';
import { mqttIncomingCarrier, userPropertiesWithContext } from './mqtt.carrier.js';

/** Options of {@link OtelServerMqtt}: Nest's MQTT options, plus `otel`. */
export type OtelServerMqttOptions = Required<MqttOptions>['options'] & {
  /** When the producer's context is the parent of a handler's span, or a link. Default: see {@link MessagingServerTracingOptions}. */
  otel?: MessagingServerTracingOptions;
};

type MqttServerOptions = Required<MqttOptions>['options'];
type StartHook = Parameters<ServerMqtt['setOnProcessingStartHook']>[0];
type EndHook = Parameters<ServerMqtt['setOnProcessingEndHook']>[0];

/** The parts of the driver's PUBLISH packet read here. */
interface MqttPacketLike {
  qos?: unknown;
  retain?: unknown;
  properties?: { userProperties?: unknown };
}

/** What `handleMessage` knows and the processing hooks do not. */
interface IncomingMqttMessage {
  /** Bytes of the payload as published. */
  size?: number;
  /** The `metadata` of Nest's JSON packet, where a producer without user properties (MQTT 3.1.1) puts its context. */
  metadata?: unknown;
  /** Nest's packet id, for a request. */
  requestId?: unknown;
}

/** What the server knows of the filter a handler is registered under. */
interface Subscription_ {
  /** The key the handler is registered under (`nestjs.pattern`). */
  pattern: string;
  /** The topic filter, a shared subscription's `$share/{group}/` removed. */
  filter: string;
  /** The shared subscription's group. */
  group?: string;
}

// Set around `handleMessage`, so that the deserializer and the start hook, which run in its async
// flow, see the message they belong to.
const INCOMING_MQTT_MESSAGE = createContextKey('otel-nest incoming MQTT message');

/**
 * Nest's `ServerMqtt` with a CONSUMER span `process {topic}` (`process {filter}` for a handler
 * registered under a wildcard filter, e.g. `process orders/+/get`) around each message's whole
 * handler pipeline (guards, interceptors, pipes, handler, and the Observable it returns),
 * continuing or linking the producer's context read from the message's MQTT 5 user properties
 * (`traceparent`, `tracestate`, `baggage`), else from the `metadata` of Nest's JSON packet (what
 * {@link OtelClientMqtt} sends on MQTT 3.1.1). On MQTT 5, replies carry the consumer's context in
 * their user properties; below 5 they go out as Nest sends them (a Nest client reads a reply with
 * an extra envelope field as a foreign payload).
 *
 * ```ts
 * app.connectMicroservice({ strategy: new OtelServerMqtt({ url: 'mqtt://localhost:1883', protocolVersion: 5 }) });
 * ```
 *
 * `@MessagePattern` handlers are children of the producer span; `@EventPattern` handlers start a
 * new trace linked to it. Change it per server with `otel`, or per handler with
 * `@Traced({ consume })` / `@EventPattern(pattern, { otelConsume })`.
 *
 * @publicApi
 */
export class OtelServerMqtt extends ServerMqtt {
  private readonly consumerTracer: ConsumerTracer<MqttContext>;
  private readonly mqttOptions: MqttServerOptions;
  private readonly handlerCache = new HandlerCache<MessageHandler>();
  private readonly subscriptionCache = new HandlerCache<Subscription_>();

  constructor(options: OtelServerMqttOptions = {}) {
    const { otel, ...mqttOptions } = options ?? {};
    super(mqttOptions);
    // Header and body capture options: a wrong one fails here, at bootstrap.
    messageCaptureOf(otel, 'OtelServerMqtt otel');
    noteTracedTransport(this, 'MQTT server');
    this.mqttOptions = mqttOptions;
    this.consumerTracer = new ConsumerTracer<MqttContext>(this, (ctx) => this.describe(ctx), otel);
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

  /** Nest's lookup, cached per topic: Nest, the tracer and `describe` each look up every message's handler. */
  override getHandlerByPattern(pattern: string): MessageHandler | null {
    // Nest's constructor can call this before this class's fields exist.
    return this.handlerCache
      ? this.handlerCache.lookup(pattern, this.getHandlers().size, () => super.getHandlerByPattern(pattern))
      : super.getHandlerByPattern(pattern);
  }

  override addHandler(...args: Parameters<ServerMqtt['addHandler']>): void {
    super.addHandler(...args);
    this.handlerCache?.clear();
    this.subscriptionCache?.clear();
  }

  override handleMessage(channel: string, buffer: Buffer, pub: any, originalPacket?: Record<string, any>): Promise<any> {
    const message: IncomingMqttMessage = { size: Buffer.isBuffer(buffer) ? buffer.length : undefined };
    // Each message starts from the root context, not from the one the connection was opened in.
    return context.with(ROOT_CONTEXT.setValue(INCOMING_MQTT_MESSAGE, message), () =>
      super.handleMessage(channel, buffer, pub, originalPacket),
    );
  }

  override handleEvent(pattern: string, packet: ReadPacket, ctx: MqttContext): Promise<any> {
    this.consumerTracer.markEvent(ctx);
    return super.handleEvent(pattern, packet, ctx);
  }

  /**
   * Called for requests only, before processing starts. Nest publishes each reply through the
   * driver client given here: a stand-in for it adds the consumer's context to the reply's user
   * properties (MQTT 5). Each reply goes through `publishReply`: Nest 11 runs the end hook inside
   * every reply's publish, and the span must last until the reply stream settles (see `send`).
   */
  override getPublisher(client: any, ctx: MqttContext, id: string): any {
    const publish = super.getPublisher(this.replyClient(client), ctx, id);
    return (response: any) => this.consumerTracer.publishReply(ctx, response, () => publish(response));
  }

  /** A request's span ends when its reply stream settles, as Nest 12.1 runs the end hook. */
  override send(stream$: Observable<any>, respond: (data: WritePacket) => Promise<unknown> | void): Subscription {
    return super.send(this.consumerTracer.watchReply(stream$, true), respond);
  }

  /** Keeps what the tracer needs of each deserialized packet: its id and `metadata`. */
  protected override initializeDeserializer(options: MqttServerOptions): void {
    super.initializeDeserializer(options);
    // Runs inside super(): no field of this class exists yet.
    const inner = this.deserializer;
    this.deserializer = {
      deserialize: (value: any, deserializeOptions?: Record<string, any>) => {
        const packet = inner.deserialize(value, deserializeOptions);
        if (isThenable(packet)) {
          return packet.then((resolved) => {
            keepPacket(value, resolved);
            return resolved;
          });
        }
        keepPacket(value, packet);
        return packet;
      },
    };
  }

  /** `client`, with `publish` adding the active consumer's context to the publish options. */
  private replyClient(client: any): any {
    if (client === null || typeof client !== 'object' || typeof client.publish !== 'function') {
      return client;
    }
    const stand = Object.create(client) as { publish: (...args: any[]) => any };
    stand.publish = (topic: string, message: unknown, options?: any, callback?: unknown) =>
      client.publish(topic, message, this.replyOptions(options), callback);
    return stand;
  }

  /**
   * The reply's publish options with the consumer's context in its user properties (MQTT 5 only),
   * in a copy. Nest publishes the reply while the handler's context is active; outside a traced
   * message (e.g. the "no handler" reply) nothing is added, so no unrelated context is ever sent.
   */
  private replyOptions(options: any): any {
    try {
      const active = context.active();
      if (!getConsumerState(active) || mqttProtocolVersion(this.mqttClient, this.mqttOptions.protocolVersion) !== 5) {
        return options;
      }
      const own = options !== null && typeof options === 'object' ? options : {};
      const userProperties = userPropertiesWithContext(own.properties?.userProperties, active);
      return userProperties ? { ...own, properties: { ...own.properties, userProperties } } : options;
    } catch (err) {
      diag.error(replyContextNotAdded('MQTT'), err);
      return options;
    }
  }

  /** The registered filter `topic` matched, as Nest matches it (cached per topic). */
  private subscriptionOf(topic: string): Subscription_ | null {
    return this.subscriptionCache.lookup(topic, this.getHandlers().size, () => {
      const route = this.getRouteFromPattern(topic);
      if (this.getHandlers().has(route)) {
        return { pattern: route, filter: route };
      }
      for (const key of this.getHandlers().keys()) {
        const filter = this.removeHandlerKeySharedPrefix(key);
        if (this.matchMqttPattern(filter, route)) {
          return { pattern: key, filter, group: mqttSharedSubscription(key)?.group };
        }
      }
      return null;
    });
  }

  private describe(ctx: MqttContext): IncomingMessageDescription<unknown> | undefined {
    if (typeof ctx?.getTopic !== 'function') {
      return undefined;
    }
    const topic = String(ctx.getTopic());
    const packet = (ctx.getPacket() ?? {}) as MqttPacketLike;
    const message = context.active().getValue(INCOMING_MQTT_MESSAGE) as IncomingMqttMessage | undefined;
    const subscription = this.subscriptionOf(topic);
    const attributes: Attributes = addAttributes({}, mqttServerAttributes(this.url));
    addMqttClientId(attributes, this.mqttClient);
    if (subscription?.group) {
      attributes[ATTR_MESSAGING_CONSUMER_GROUP_NAME] = subscription.group;
    }
    const requestId = message?.requestId;
    if ((typeof requestId === 'string' && requestId) || typeof requestId === 'number') {
      attributes[ATTR_MESSAGING_MESSAGE_ID] = String(requestId);
      attributes[ATTR_MESSAGING_MESSAGE_CONVERSATION_ID] = String(requestId);
    }
    if (message?.size !== undefined) {
      attributes[ATTR_MESSAGING_MESSAGE_BODY_SIZE] = message.size;
    }
    addMqttDeliveryAttributes(attributes, packet.qos, packet.retain);
    const { carrier, getter } = mqttIncomingCarrier(packet.properties?.userProperties, message?.metadata);
    return {
      system: MQTT_MESSAGING_SYSTEM,
      ...mqttDestination(topic, subscription?.filter),
      pattern: subscription?.pattern ?? topic,
      carrier,
      getter,
      attributes,
    };
  }
}

/** Notes the deserialized packet's id and `metadata` (the wire's, else the deserializer's) on the message in flight. */
function keepPacket(raw: unknown, packet: unknown): void {
  try {
    const message = context.active().getValue(INCOMING_MQTT_MESSAGE) as IncomingMqttMessage | undefined;
    if (!message) {
      return;
    }
    const deserialized = packet !== null && typeof packet === 'object' ? (packet as { id?: unknown; metadata?: unknown }) : undefined;
    const wire = raw !== null && typeof raw === 'object' ? (raw as { metadata?: unknown }) : undefined;
    message.requestId = deserialized?.id;
    message.metadata = deserialized?.metadata ?? wire?.metadata;
  } catch {
    // Only tracing needs it: the message goes on.
  }
}

function isThenable(value: unknown): value is Promise<unknown> {
  return value !== null && typeof value === 'object' && typeof (value as Promise<unknown>).then === 'function';
}
