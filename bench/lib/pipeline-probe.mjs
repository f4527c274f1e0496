// Reads what the BatchSpanProcessor(s) of the registered provider did, without touching the
// per-span path: the processor reports drops and export results to its `_metrics` object (once per
// dropped span, once per export batch), and only those two methods are wrapped here. Internal
// fields of @opentelemetry/sdk-trace 2.x; `found: 0` says they moved.
import { trace } from '@opentelemetry/api';

export function probeBatchProcessors(provider) {
  const registered = provider ?? trace.getTracerProvider();
  const delegate = registered.getDelegate?.() ?? registered;
  const processors = delegate?._activeSpanProcessor?._spanProcessors ?? [];
  const batchers = processors.filter((p) => Array.isArray(p?._finishedSpans) && p._metrics);
  const counters = { dropped: 0, exportedSpans: 0, failedSpans: 0, failedExports: 0 };
  for (const bsp of batchers) {
    const metrics = bsp._metrics;
    const dropSpans = metrics.dropSpans.bind(metrics);
    metrics.dropSpans = (count) => {
      counters.dropped += count;
      return dropSpans(count);
    };
    const finishSpans = metrics.finishSpans.bind(metrics);
    metrics.finishSpans = (count, error) => {
      if (error) {
        counters.failedSpans += count;
        counters.failedExports += 1;
      } else {
        counters.exportedSpans += count;
      }
      return finishSpans(count, error);
    };
  }
  return {
    found: batchers.length,
    counters,
    queued: () => batchers.reduce((n, b) => n + b._finishedSpans.length, 0),
    maxQueueSize: batchers[0]?._maxQueueSize,
    flush: () => Promise.all(batchers.map((b) => b.forceFlush().catch(() => undefined))),
  };
}
