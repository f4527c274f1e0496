import {
  INVALID_SPAN_CONTEXT,
  context,
  createContextKey,
  diag,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Link,
  type Span,
  type TextMapGetter,
} from '@opentelemetry/api';
import {
  ATTR_ERROR_TYPE,
  ATTR_MESSAGING_DESTINATION_ANONYMOUS,
  ATTR_MESSAGING_DESTINATION_NAME,
  ATTR_MESSAGING_DESTINATION_TEMPLATE,
  ATTR_MESSAGING_DESTINATION_TEMPORARY,
  ATTR_MESSAGING_OPERATION_NAME,
  ATTR_MESSAGING_OPERATION_TYPE,
  ATTR_MESSAGING_SYSTEM,
  ATTR_NESTJS_HANDLER_TYPE,
  ATTR_NESTJS_PATTERN,
} from '../../semconv.js';
import { addAttributes } from '../../utils/attributes.js';
import { errorTypeOf, recordError } from '../../utils/record-error.js';
import { extractContext } from '../../propagation/carrier.js';
import { getRequestId, setRequestId } from '../../propagation/request-id.propagator.js';
import { getOtelNestTracer } from '../../utils/tracer.js';
import { producerSpanNotCompleted } from '../../otel.messages.js';
import { activeInstruments } from '../../metrics/metrics-state.js';
import { measureConsumer, measureProducer } from '../../metrics/messaging-metrics.js';
import { recordSpanMeasurement, takeSpanMeasurement, type SpanMeasurement } from '../../metrics/span-measurement.js';
import { captureMessageBody, captureMessageHeaders, messageCaptureOf, type MessageCapture, type MessageCaptureOptions } from './message-capture.js';
import { callSpanHook, isIgnoredBy, type SpanHook } from '../../utils/user-hook.js';

/**
 * How a consumer span relates to the producer's context that came with the message (the one type
 * behind `@Traced({ consume })`, `@EventPattern(p, { otelConsume })` and the servers' `otel` option):
 * - `parent`: the consumer span is a child of the producer span (one trace);
 * - `link`: the consumer span starts a new trace and links to the producer span (the messaging
 *   semantic conventions' default for asynchronous messages);
 * - `parent+link`: child of the producer span, plus a link to it (for backends that show only links).
 * Baggage travels in every case.
 */
export type ConsumePolicy = 'parent' | 'link' | 'parent+link';

/** Key under which `@Traced({ consume })` (or `@EventPattern(p, { otelConsume })`) stores a handler's policy in Nest's pattern extras. */
export const OTEL_CONSUME_EXTRA = 'otelConsume';

/** What the consume hooks and `ignore` of a traced transport server are told about a message. */
export interface ConsumeInfo {
  /** `messaging.system` (`nats`, `rabbitmq`, `kafka`, ...). */
  system: string;
  /** The Nest pattern the handler is registered under. */
  pattern: string;
  /** `messaging.destination.name`: the subject, queue, topic or channel it came from. */
  destination: string;
  /** True for `@EventPattern` handlers, false for request-reply. */
  isEvent: boolean;
  /** Nest's transport context for the message (`NatsContext`, `RmqContext`, `KafkaContext`, ...): headers, raw message. */
  context: unknown;
}

/** What `replyHook` is told when a message's processing has ended. */
export interface ReplyInfo extends ConsumeInfo {
  /** The error the handler pipeline ended with (thrown, or an error reply), if any. */
  error?: unknown;
}

/** What the publish hook and `ignore` of a traced transport client are told about a message. */
export interface PublishInfo {
  system: string;
  pattern: string;
  destination: string;
  /** True for `emit()`, false for `send()`. */
  isEvent: boolean;
  /** The payload as given to `send()` / `emit()` (before serialization). */
  data: unknown;
}

/** Tracing options every traced transport server accepts under `otel` in its options. */
export interface MessagingServerTracingOptions extends MessageCaptureOptions {
  /** Policy for `@EventPattern` handlers. Default `'link'`. */
  eventConsume?: ConsumePolicy;
  /** Policy for `@MessagePattern` (request-reply) handlers. Default `'parent'`. */
  messageConsume?: ConsumePolicy;
  /**
   * Called with the CONSUMER span (recording spans only) before the handler pipeline runs: add
   * attributes from the message. A hook that throws is logged and ignored. Default none.
   */
  consumeHook?: SpanHook<ConsumeInfo>;
  /** Called with the CONSUMER span just before it ends (after the reply, or the error). Default none. */
  replyHook?: SpanHook<ReplyInfo>;
  /** Messages for which it returns true get no span (their handler still runs). Default none. */
  ignore?: (info: ConsumeInfo) => boolean;
}

/** Tracing options every traced transport client accepts under `otel` in its options. */
export interface MessagingClientTracingOptions extends MessageCaptureOptions {
  /** Called with the PRODUCER span (recording spans only) before the message is sent. Default none. */
  publishHook?: SpanHook<PublishInfo>;
  /**
   * Messages for which it returns true get no PRODUCER span; they still carry the caller's
   * context, so the consumer continues the caller's trace. Default none.
   */
  ignore?: (info: PublishInfo) => boolean;
}

const POLICIES: readonly ConsumePolicy[] = ['parent', 'link', 'parent+link'];

export function isConsumePolicy(value: unknown): value is ConsumePolicy {
  return POLICIES.includes(value as ConsumePolicy);
}

/** The policy for one handler: its own (pattern extras), else the server's default for its kind. */
export function resolveConsumePolicy(
  handler: { extras?: Record<string, unknown> } | null | undefined,
  isEvent: boolean,
  options: MessagingServerTracingOptions | undefined,
): ConsumePolicy {
  const own = handler?.extras?.[OTEL_CONSUME_EXTRA];
  if (isConsumePolicy(own)) {
    return own;
  }
  return isEvent ? (options?.eventConsume ?? 'link') : (options?.messageConsume ?? 'parent');
}

/** Where a message goes or comes from, as the messaging semantic conventions describe it. */
export interface MessageDestination {
  /** `messaging.destination.name`. */
  destination: string;
  /**
   * `messaging.destination.template`: the low-cardinality pattern the destination matched (a
   * wildcard subscription). When set, the span is named after it rather than after `destination`.
   */
  template?: string;
  /** `messaging.destination.temporary` (set only when true): a reply inbox, an exclusive queue. */
  temporary?: boolean;
  /** `messaging.destination.anonymous` (set only when true): a generated name (`_INBOX.…`, `amq.gen-…`). */
  anonymous?: boolean;
}

/**
 * The span name `{operation} {destination}` of the messaging conventions: the template when there is
 * one, else the destination name unless it is temporary or anonymous (such names are generated per
 * conversation, unbounded), else the operation alone.
 */
export function messagingSpanName(operation: string, where: MessageDestination): string {
  const named = where.template ?? (where.temporary || where.anonymous ? undefined : where.destination);
  return named ? `${operation} ${named}` : operation;
}

function addDestination(attributes: Attributes, where: MessageDestination): void {
  attributes[ATTR_MESSAGING_DESTINATION_NAME] = where.destination;
  if (where.template !== undefined) {
    attributes[ATTR_MESSAGING_DESTINATION_TEMPLATE] = where.template;
  }
  if (where.temporary) {
    attributes[ATTR_MESSAGING_DESTINATION_TEMPORARY] = true;
  }
  if (where.anonymous) {
    attributes[ATTR_MESSAGING_DESTINATION_ANONYMOUS] = true;
  }
}

/** What a transport knows about an incoming message. */
export interface IncomingMessageDescription<C> extends MessageDestination {
  /** `messaging.system`: `nats`, `rabbitmq`, `kafka`. */
  system: string;
  /** The Nest pattern the handler is registered under. */
  pattern: string;
  /** The headers that carry the producer's context, and how to read them. */
  carrier: C;
  getter: TextMapGetter<C>;
  /** Transport-specific attributes (message id, conversation id, body size, partition, ...). */
  attributes?: Attributes;
}

/** What we keep for one message while its handler pipeline runs. */
export interface ConsumerState {
  readonly span: Span;
  readonly isEvent: boolean;
  /** The first error seen (handler, pipe, interceptor, or an error reply); recorded once at the end. */
  error?: unknown;
  ended: boolean;
  /** The server's body capture, until the handler's data is recorded (see handler-span.ts). */
  capture?: MessageCapture;
  /** The server's reply hook and what it is told, when it has one. */
  reply?: { hook: SpanHook<ReplyInfo>; info: ConsumeInfo };
  /** The span's metric (`messaging.process.duration`; an RPC server duration for a transport that says RPC), while metrics are on. */
  measurement?: SpanMeasurement;
}

const CONSUMER_STATE = createContextKey('otel-nest messaging consumer state');

/** The state of the message being processed in the active context, if any. */
export function getConsumerState(ctx: Context = context.active()): ConsumerState | undefined {
  return ctx.getValue(CONSUMER_STATE) as ConsumerState | undefined;
}

/**
 * `ctx` with `state` as the request being processed, for a transport that starts and ends its
 * spans itself (gRPC's SERVER spans): Nest's interceptor then names the handler on the span and
 * keeps the handler's error in `state.error`, as for the messaging transports.
 */
export function withConsumerState(ctx: Context, state: ConsumerState): Context {
  return ctx.setValue(CONSUMER_STATE, state);
}

/** The channel name of the inbound baggage policy for a `messaging.system` value. */
function baggageChannelOf(system: string): string {
  return BAGGAGE_CHANNEL_OF_SYSTEM[system] ?? system;
}

/** `messaging.system` values whose baggage channel name differs (the others are the same). */
const BAGGAGE_CHANNEL_OF_SYSTEM: Record<string, string> = { rabbitmq: 'rmq', nestjs_tcp: 'tcp' };

/**
 * Starts the CONSUMER span `process {destination}` (see {@link messagingSpanName}) for one message. Bad or missing headers give a
 * fresh root trace: extraction starts from ROOT_CONTEXT, so nothing of the current context leaks in.
 * Returns the span and the context the handler pipeline must run in.
 */
export function startConsumerSpan<C>(
  message: IncomingMessageDescription<C>,
  isEvent: boolean,
  policy: ConsumePolicy,
  hooks?: Pick<MessagingServerTracingOptions, 'consumeHook' | 'replyHook' | 'captureHeaders' | 'captureBody'>,
  transportContext?: unknown,
): { state: ConsumerState; ctx: Context } {
  const extracted = extractContext(message.carrier, message.getter, ROOT_CONTEXT, baggageChannelOf(message.system));
  const producer = trace.getSpanContext(extracted);
  const links: Link[] = [];
  let parent: Context = extracted;
  if (producer && policy !== 'parent') {
    links.push({ context: producer });
  }
  if (policy === 'link') {
    // A new trace, but the producer's baggage (tenant, user, saga id) still applies.
    const baggage = propagation.getBaggage(extracted);
    parent = baggage ? propagation.setBaggage(ROOT_CONTEXT, baggage) : ROOT_CONTEXT;
    // So does the request id of the requestId bridge: it correlates across traces.
    const requestId = getRequestId(extracted);
    if (requestId !== undefined) {
      parent = setRequestId(parent, requestId);
    }
  }
  // Plain property writes: cheaper per message than an object literal with computed keys and a spread.
  const attributes: Attributes = {};
  attributes[ATTR_MESSAGING_SYSTEM] = message.system;
  attributes[ATTR_MESSAGING_OPERATION_NAME] = 'process';
  attributes[ATTR_MESSAGING_OPERATION_TYPE] = 'process';
  addDestination(attributes, message);
  attributes[ATTR_NESTJS_PATTERN] = message.pattern;
  attributes[ATTR_NESTJS_HANDLER_TYPE] = isEvent ? 'event' : 'message';
  addAttributes(attributes, message.attributes);
  const capture = messageCaptureOf(hooks);
  captureMessageHeaders(capture, message.carrier, message.getter, attributes);
  const span = getOtelNestTracer().startSpan(
    messagingSpanName('process', message),
    { kind: SpanKind.CONSUMER, links, attributes },
    parent,
  );
  const state: ConsumerState = { span, isEvent, ended: false };
  const instruments = activeInstruments();
  if (instruments !== undefined) {
    state.measurement = measureConsumer(instruments, span, message.system, message, message.attributes);
  }
  if (capture?.bodyMaxBytes !== undefined && span.isRecording()) {
    state.capture = capture;
  }
  if (hooks && (hooks.consumeHook || hooks.replyHook) && span.isRecording()) {
    const info = consumeInfo(message, isEvent, transportContext);
    callSpanHook('consumeHook', hooks.consumeHook, span, info);
    if (hooks.replyHook) {
      state.reply = { hook: hooks.replyHook, info };
    }
  }
  return { state, ctx: trace.setSpan(parent, span).setValue(CONSUMER_STATE, state) };
}

/** What the consume hooks and `ignore` are told about `message`. */
export function consumeInfo(message: IncomingMessageDescription<unknown>, isEvent: boolean, transportContext: unknown): ConsumeInfo {
  return {
    system: message.system,
    pattern: message.pattern,
    destination: message.destination,
    isEvent,
    context: transportContext,
  };
}

/** Ends a consumer span once; a recorded error makes it ERROR with `error.type`. */
export function endConsumerSpan(state: ConsumerState): void {
  if (state.ended) {
    return;
  }
  state.ended = true;
  try {
    if (state.reply) {
      callSpanHook('replyHook', state.reply.hook, state.span, { ...state.reply.info, error: state.error });
    }
    if (state.error !== undefined) {
      recordError(state.span, state.error, rpcErrorType(state.error));
    }
  } finally {
    state.span.end();
    if (state.measurement !== undefined) {
      recordSpanMeasurement(state.measurement, state.span, state.error !== undefined ? rpcErrorType(state.error) : undefined);
    }
  }
}

/**
 * `error.type` of a failed message: the exception class, or for the plain objects Nest sends back
 * over the wire (`{ status: 'error', message }`) the `name` they carry, else `_OTHER`.
 */
export function rpcErrorType(error: unknown): string {
  if (error !== null && typeof error === 'object' && !(error instanceof Error)) {
    const name = (error as { name?: unknown }).name;
    if (typeof name === 'string' && name) {
      return name;
    }
  }
  return errorTypeOf(error);
}

/** What a transport knows about an outgoing message. */
export interface OutgoingMessageDescription extends MessageDestination {
  system: string;
  pattern: string;
  /** `message` for `send()` (request-reply), `event` for `emit()`. */
  isEvent: boolean;
  attributes?: Attributes;
  /** The payload, for the client's `publishHook` / `ignore` (see {@link MessagingClientTracingOptions}). */
  data?: unknown;
}

/**
 * Starts the PRODUCER span `send {destination}` as a child of the active context. Returns the span
 * and the context to inject into the message (so the consumer's parent or link is this span).
 */
export function startProducerSpan(
  message: OutgoingMessageDescription,
  hooks?: MessagingClientTracingOptions,
): { span: Span; ctx: Context } {
  const active = context.active();
  const info = hooks && (hooks.publishHook || hooks.ignore) ? publishInfo(message) : undefined;
  if (info && isIgnoredBy('client ignore predicate', hooks!.ignore, info)) {
    // No span of ours: a non-recording stand-in (ending it does nothing), and the caller's context goes out.
    return { span: trace.wrapSpanContext(trace.getSpanContext(active) ?? INVALID_SPAN_CONTEXT), ctx: active };
  }
  const attributes: Attributes = {};
  attributes[ATTR_MESSAGING_SYSTEM] = message.system;
  attributes[ATTR_MESSAGING_OPERATION_NAME] = 'send';
  attributes[ATTR_MESSAGING_OPERATION_TYPE] = 'send';
  addDestination(attributes, message);
  attributes[ATTR_NESTJS_PATTERN] = message.pattern;
  attributes[ATTR_NESTJS_HANDLER_TYPE] = message.isEvent ? 'event' : 'message';
  addAttributes(attributes, message.attributes);
  const span = getOtelNestTracer().startSpan(messagingSpanName('send', message), { kind: SpanKind.PRODUCER, attributes }, active);
  const instruments = activeInstruments();
  if (instruments !== undefined) {
    measureProducer(instruments, span, message.system, message, message.attributes);
  }
  if (info) {
    callSpanHook('publishHook', hooks!.publishHook, span, info);
  }
  if (hooks?.captureBody && span.isRecording()) {
    captureMessageBody(messageCaptureOf(hooks), message.data, span);
  }
  return { span, ctx: trace.setSpan(active, span) };
}

function publishInfo(message: OutgoingMessageDescription): PublishInfo {
  return {
    system: message.system,
    pattern: message.pattern,
    destination: message.destination,
    isEvent: message.isEvent,
    data: message.data,
  };
}

/**
 * Ends a producer span exactly once. Returns a function to call with the outcome: no argument for
 * success, an error (or error reply) for failure, or `{ timeout: true }`-like values through
 * `errorType` for cancellations.
 */
export function producerSpanEnder(span: Span): (error?: unknown, errorType?: string) => void {
  let ended = false;
  return (error?: unknown, errorType?: string) => {
    if (ended) {
      return;
    }
    ended = true;
    try {
      if (error !== undefined) {
        recordError(span, error, errorType ?? rpcErrorType(error));
      } else if (errorType !== undefined) {
        span.setAttribute(ATTR_ERROR_TYPE, errorType);
        span.setStatus({ code: SpanStatusCode.ERROR });
      }
    } catch (err) {
      diag.error(producerSpanNotCompleted(), err);
    } finally {
      span.end();
      if (activeInstruments() !== undefined) {
        recordSpanMeasurement(takeSpanMeasurement(span), span, error !== undefined ? (errorType ?? rpcErrorType(error)) : errorType);
      }
    }
  };
}

export { injectContext } from '../../propagation/carrier.js';

/** Size in bytes of a payload as sent (`messaging.message.body.size`), when it can be known cheaply. */
export function bodySize(data: unknown): number | undefined {
  if (data === undefined || data === null) {
    return undefined;
  }
  if (typeof data === 'string') {
    return Buffer.byteLength(data);
  }
  if (data instanceof Uint8Array) {
    return data.byteLength;
  }
  return undefined;
}
