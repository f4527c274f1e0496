import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  TracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace';

/** An in-process SDK for unit tests that need real spans but no Nest application. */
export interface TestingSdk {
  /** Receives every span as it ends. */
  readonly exporter: InMemorySpanExporter;
  readonly provider: TracerProvider;
  getFinishedSpans(): ReadableSpan[];
  reset(): void;
  /** Shuts the provider down and unregisters everything this SDK registered. */
  shutdown(): Promise<void>;
}

/**
 * Registers a real SDK for unit tests of code that uses `@opentelemetry/api` directly (`@Traced`
 * methods, `TraceService`, sagas): a provider exporting synchronously to its own in-memory
 * exporter, the AsyncLocalStorage context manager, and the W3C TraceContext + Baggage propagators.
 * Call it in `beforeAll` and `shutdown()` in `afterAll`. For Nest applications use
 * `OtelTestingModule` instead.
 */
export function startTestingSdk(options: { exporter?: InMemorySpanExporter } = {}): TestingSdk {
  const exporter = options.exporter ?? new InMemorySpanExporter();
  const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  const contextManager = new AsyncLocalStorageContextManager().enable();
  trace.setGlobalTracerProvider(provider);
  context.setGlobalContextManager(contextManager);
  propagation.setGlobalPropagator(
    new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }),
  );
  return {
    exporter,
    provider,
    getFinishedSpans: () => exporter.getFinishedSpans(),
    reset: () => exporter.reset(),
    async shutdown() {
      await provider.shutdown();
      contextManager.disable();
      trace.disable();
      context.disable();
      propagation.disable();
    },
  };
}
