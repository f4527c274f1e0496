import type { Span } from '@opentelemetry/api';

/** The timing an SDK span keeps (sdk-trace's Span: `startTime`, and once ended `duration`, as HrTime). */
interface TimedSpan {
  readonly startTime?: unknown;
  readonly duration?: unknown;
}

function isHrTime(value: unknown): value is [number, number] {
  return Array.isArray(value) && value.length === 2 && typeof value[0] === 'number' && typeof value[1] === 'number';
}

/**
 * What {@link elapsedSeconds} needs to time an operation whose span is `span`: nothing for a
 * recording SDK span (its own start and end are the measurement, so no clock is read here), else a
 * `performance.now()` reading (an unsampled request's span keeps no time).
 */
export function startMeasure(span: Span): number | undefined {
  return span.isRecording() && isHrTime((span as TimedSpan).startTime) ? undefined : performance.now();
}

/**
 * Seconds the operation took: the ended span's own duration when {@link startMeasure} relied on it
 * (call after `span.end()`), else the time since the reading it took.
 */
export function elapsedSeconds(span: Span, startedAt: number | undefined): number {
  if (startedAt !== undefined) {
    return (performance.now() - startedAt) / 1000;
  }
  const duration = (span as TimedSpan).duration;
  if (isHrTime(duration) && duration[0] >= 0) {
    return duration[0] + duration[1] / 1e9;
  }
  // Not ended yet: from its start to now.
  const start = (span as TimedSpan).startTime as [number, number];
  return (performance.timeOrigin + performance.now()) / 1000 - (start[0] + start[1] / 1e9);
}
