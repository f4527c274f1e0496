import { trace, type Tracer } from '@opentelemetry/api';

/** Instrumentation scope name of every span this library starts. */
export const TRACER_NAME = 'otel-nest';

/**
 * The library's tracer. Looked up on every call rather than cached at import time, so a provider
 * registered (or replaced) after this module loads is the one that gets the spans.
 */
export function getOtelNestTracer(): Tracer {
  return trace.getTracer(TRACER_NAME);
}
