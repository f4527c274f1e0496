import { diag } from '@opentelemetry/api';
import { processGlobal } from './process-global.js';

/** How often one kind of problem is logged at most. */
export const DIAG_INTERVAL_MS = 60_000;

interface Episode {
  /** When this kind was last logged. */
  last: number;
  /** Occurrences since then that were not logged. */
  suppressed: number;
}

const episodes = processGlobal('diag-episodes', () => new Map<string, Episode>());

/**
 * Logs a problem of otel-nest's own through `diag`, at most once per {@link DIAG_INTERVAL_MS} per
 * message text, so that a bad header on every message of a busy queue is one line a minute, not
 * one per message. The next line of the same text says how many were not logged in between.
 * For everything that can happen per request or per message. Never throws.
 */
export function diagLimited(level: 'error' | 'warn' | 'info', message: string, error?: unknown, now: number = Date.now()): void {
  try {
    const kind = `${level}:${message}`;
    const episode = episodes.get(kind);
    if (episode && now - episode.last < DIAG_INTERVAL_MS) {
      episode.suppressed++;
      return;
    }
    const suppressed = episode?.suppressed ?? 0;
    episodes.set(kind, { last: now, suppressed: 0 });
    const text = suppressed > 0 ? `${message} (${suppressed} more since the last report)` : message;
    if (error === undefined) {
      diag[level](text);
    } else {
      diag[level](text, error);
    }
  } catch {
    // A throwing diag logger must not reach the caller.
  }
}

/** Forgets every episode (tests). */
export function resetDiagLimited(): void {
  episodes.clear();
}
