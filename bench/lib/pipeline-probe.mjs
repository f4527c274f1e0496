// Reads what the BatchSpanProcessor(s) of the registered provider did, without touching the
// per-span path. otel-nest's processor (CappedBatchSpanProcessor) counts drops and export results
// itself, in its public `exportHealth`: read from there. Any other BatchSpanProcessor (the contrib
// stack, E) reports them to its `_metrics` object (once per dropped span, once per export batch),
// and only those two methods are wrapped. Internal fields of @opentelemetry/sdk-trace 3.x;
// `found: 0` says they moved.
import { trace } from '@opentelemetry/api';

export function probeBatchProcessors(provider) {
  const registered = provider ?? trace.getTracerProvider();
  const delegate = registered.getDelegate?.() ?? registered;
  const processors = delegate?._activeSpanProcessor?._spanProcessors ?? [];
  const batchers = processors.filter((p) => Array.isArray(p?._finishedSpans) && p._metrics);
  const health = batchers.map((b) => b.exportHealth).filter((h) => typeof h?.snapshot === 'function');
  if (health.length > 0) {
    const sum = (read) => health.reduce((n, h) => n + read(h.snapshot()), 0);
    return {
      found: batchers.length,
      counters: {
        get dropped() {
          return sum((s) => s.droppedQueueFull);
        },
        get exportedSpans() {
          return sum((s) => s.exportedSpans);
        },
        get failedSpans() {
          return sum((s) => s.droppedInFailedExports);
        },
        get failedExports() {
          return sum((s) => s.failedExports);
        },
      },
      queued: () => sum((s) => s.queued),
      maxQueueSize: batchers[0]?._maxQueueSize,
      flush: () => Promise.all(batchers.map((b) => b.forceFlush().catch(() => undefined))),
    };
  }
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
