// Memory and GC figures of a process under load, for the RSS question of issue 14: how much the
// JS heap allocates per request (V8 GCProfiler: the heap used before each GC minus the heap used
// after the previous one), how often the young and the old generation are collected, and how big
// the young generation has grown (V8 sizes it from the allocation rate, up to
// --max-semi-space-size): RSS that is GC headroom, not retained memory.
import { GCProfiler, getHeapSpaceStatistics } from 'node:v8';

const MB = 1024 * 1024;

export function memoryTracker() {
  let profiler = new GCProfiler();
  profiler.start();
  let lastUsed = process.memoryUsage().heapUsed;
  const totals = { allocatedBytes: 0, scavenges: 0, markSweeps: 0, gcUs: 0 };
  /** Folds the GCs since the last call into the totals (restarts the profiler). */
  const collect = () => {
    const { statistics } = profiler.stop();
    profiler = new GCProfiler();
    profiler.start();
    for (const gc of statistics) {
      totals.allocatedBytes += Math.max(0, gc.beforeGC.heapStatistics.usedHeapSize - lastUsed);
      lastUsed = gc.afterGC.heapStatistics.usedHeapSize;
      totals.gcUs += gc.cost;
      if (gc.gcType === 'Scavenge' || gc.gcType === 'MinorMarkSweep') totals.scavenges++;
      else if (gc.gcType === 'MarkSweepCompact') totals.markSweeps++;
    }
    const used = process.memoryUsage().heapUsed;
    totals.allocatedBytes += Math.max(0, used - lastUsed);
    lastUsed = used;
    return { ...totals };
  };
  return {
    /** Cumulative since start: allocated bytes, scavenges, mark-sweeps, GC pause µs. */
    mark: collect,
    /** Sizes now, then after a full GC (needs --expose-gc for the second part). */
    snapshot() {
      const spaces = Object.fromEntries(getHeapSpaceStatistics().map((s) => [s.space_name, s]));
      const before = process.memoryUsage();
      globalThis.gc?.();
      const after = process.memoryUsage();
      collect();
      return {
        rss: before.rss,
        heapTotal: before.heapTotal,
        heapUsed: before.heapUsed,
        external: before.external + before.arrayBuffers,
        newSpaceMB: (spaces.new_space?.space_size ?? 0) / MB,
        oldSpaceMB: (spaces.old_space?.space_size ?? 0) / MB,
        rssAfterGc: after.rss,
        heapTotalAfterGc: after.heapTotal,
        heapUsedAfterGc: after.heapUsed,
      };
    },
  };
}
