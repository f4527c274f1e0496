import type { Attributes, Counter, Histogram, Span } from '@opentelemetry/api';
import { metricsRecordFailed } from '../otel.messages.js';
import { ATTR_ERROR_TYPE } from '../semconv.js';
import { diagLimited } from '../utils/diag-limited.js';
import { elapsedSeconds, startMeasure } from './measure.js';

/**
 * The metric of one operation whose span is `span`, taken where the span starts and recorded where
 * it ends (right after `span.end()`, so that an SDK span's own duration is the value).
 */
export interface SpanMeasurement {
  readonly histogram: Histogram;
  /** The low-cardinality attributes known at start; never changed afterwards (the SDK may keep them). */
  readonly attributes: Attributes;
  /** See startMeasure. */
  readonly startedAt: number | undefined;
  /** Counted once at the end, with the same attributes (`messaging.client.sent.messages`). */
  readonly counter?: Counter;
}

export function measureSpan(span: Span, histogram: Histogram, attributes: Attributes, counter?: Counter): SpanMeasurement {
  return { histogram, attributes, startedAt: startMeasure(span), counter };
}

/** Records `measurement` (a no-op for undefined), with `error.type` and the attributes known only at the end. */
export function recordSpanMeasurement(
  measurement: SpanMeasurement | undefined,
  span: Span,
  errorType?: string,
  extra?: Attributes,
): void {
  if (measurement === undefined) {
    return;
  }
  try {
    let attributes = measurement.attributes;
    if (errorType !== undefined || extra !== undefined) {
      attributes = { ...attributes, ...extra };
      if (errorType !== undefined) {
        attributes[ATTR_ERROR_TYPE] = errorType;
      }
    }
    measurement.histogram.record(elapsedSeconds(span, measurement.startedAt), attributes);
    measurement.counter?.add(1, attributes);
  } catch (err) {
    diagLimited('error', metricsRecordFailed(), err);
  }
}

/** Measurements of spans that their enders find by the span (the PRODUCER spans of every transport). */
const bySpan = new WeakMap<Span, SpanMeasurement>();

export function attachSpanMeasurement(span: Span, measurement: SpanMeasurement): void {
  bySpan.set(span, measurement);
}

/** The measurement attached to `span`, forgotten (a span ends once). */
export function takeSpanMeasurement(span: Span): SpanMeasurement | undefined {
  const measurement = bySpan.get(span);
  if (measurement !== undefined) {
    bySpan.delete(span);
  }
  return measurement;
}
