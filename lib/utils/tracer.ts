import { trace, type Tracer, type TracerProvider } from '@opentelemetry/api';

/** Instrumentation scope name of every span this library starts. */
export const TRACER_NAME = 'otel-nest';

let cached: { provider: TracerProvider; tracer: Tracer } | undefined;

/**
 * The library's tracer. Cached per global provider: `trace.disable()` and a new registration
 * replace the global provider object, and then the tracer is looked up again, so a provider
 * registered (or replaced) after this module loads is the one that gets the spans. (A proxy
 * tracer obtained before any registration follows the first registration by itself.)
 */
export function getOtelNestTracer(): Tracer {
  const provider = trace.getTracerProvider();
  if (cached?.provider !== provider) {
    cached = { provider, tracer: provider.getTracer(TRACER_NAME) };
  }
  return cached.tracer;
}
