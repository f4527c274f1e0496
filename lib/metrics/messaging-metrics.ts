import type { Attributes, Span } from '@opentelemetry/api';
import {
  ATTR_MESSAGING_CONSUMER_GROUP_NAME,
  ATTR_MESSAGING_DESTINATION_NAME,
  ATTR_MESSAGING_DESTINATION_TEMPLATE,
  ATTR_MESSAGING_OPERATION_NAME,
  ATTR_MESSAGING_OPERATION_TYPE,
  ATTR_MESSAGING_SYSTEM,
} from '../semconv.js';
import { metricsRecordFailed } from '../otel.messages.js';
import { diagLimited } from '../utils/diag-limited.js';
import type { OtelNestInstruments } from './instruments.js';
import { attachSpanMeasurement, measureSpan, type SpanMeasurement } from './span-measurement.js';

/** The destination parts the metrics read (see MessageDestination in messaging-tracing.ts). */
interface Destination {
  destination: string;
  template?: string;
  temporary?: boolean;
  anonymous?: boolean;
}

/**
 * The low-cardinality attributes of the messaging metrics: system, operation, and the destination
 * only in a bounded form: its template (a wildcard subscription) when there is one, else its name
 * unless it is temporary or anonymous (reply inboxes, generated queues: one per conversation);
 * the Kafka consumer group when the transport knows it.
 */
export function messagingMetricAttributes(
  system: string,
  operation: 'process' | 'send',
  where: Destination,
  transportAttributes: Attributes | undefined,
  withOperationType: boolean,
): Attributes {
  const attributes: Attributes = {};
  attributes[ATTR_MESSAGING_SYSTEM] = system;
  attributes[ATTR_MESSAGING_OPERATION_NAME] = operation;
  if (withOperationType) {
    attributes[ATTR_MESSAGING_OPERATION_TYPE] = operation;
  }
  if (where.template !== undefined) {
    attributes[ATTR_MESSAGING_DESTINATION_TEMPLATE] = where.template;
  } else if (!where.temporary && !where.anonymous) {
    attributes[ATTR_MESSAGING_DESTINATION_NAME] = where.destination;
  }
  const group = transportAttributes?.[ATTR_MESSAGING_CONSUMER_GROUP_NAME];
  if (group !== undefined) {
    attributes[ATTR_MESSAGING_CONSUMER_GROUP_NAME] = group;
  }
  return attributes;
}

/**
 * A delivered message: counts it (`messaging.client.consumed.messages`, once per delivery: nothing
 * else of ours receives it) and measures its processing (`messaging.process.duration`).
 */
export function measureConsumer(
  instruments: OtelNestInstruments,
  span: Span,
  system: string,
  where: Destination,
  transportAttributes: Attributes | undefined,
): SpanMeasurement | undefined {
  try {
    const attributes = messagingMetricAttributes(system, 'process', where, transportAttributes, false);
    instruments.messagingConsumedMessages.add(1, attributes);
    return measureSpan(span, instruments.messagingProcessDuration, attributes);
  } catch (err) {
    diagLimited('error', metricsRecordFailed(), err);
    return undefined;
  }
}

/**
 * A message sent: `messaging.client.operation.duration` (the PRODUCER span's duration: for a
 * request-reply `send()` up to its last reply, as the span) and `messaging.client.sent.messages`,
 * both recorded when the span ends, with its `error.type`.
 */
export function measureProducer(
  instruments: OtelNestInstruments,
  span: Span,
  system: string,
  where: Destination,
  transportAttributes: Attributes | undefined,
): void {
  try {
    const attributes = messagingMetricAttributes(system, 'send', where, transportAttributes, true);
    attachSpanMeasurement(span, measureSpan(span, instruments.messagingOperationDuration, attributes, instruments.messagingSentMessages));
  } catch (err) {
    diagLimited('error', metricsRecordFailed(), err);
  }
}
