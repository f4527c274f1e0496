/** At most this many patterns are remembered; past it the cache starts over (patterns can come from the network). */
const MAX_ENTRIES = 512;

/**
 * Remembers `Server#getHandlerByPattern` results per pattern string. Nest's lookup parses the
 * pattern as JSON first, and for a plain string pattern (`orders.get`) that is a thrown and
 * caught SyntaxError on every message: the most expensive step of a handler lookup, which Nest
 * and the tracer each do for every message.
 *
 * Handlers are registered before the server listens; the cache still starts over when one is
 * added (`addHandler`) or when the `version` passed to {@link get} changes (the size of the
 * server's handler maps, so a handler put into them directly is seen too).
 */
export class HandlerCache<H> {
  private readonly entries = new Map<string, H | null>();
  private version: number | undefined;

  /** The cached handler (`null` for "none"), or `undefined` when the pattern is not cached. */
  get(pattern: unknown, version: number): H | null | undefined {
    if (version !== this.version) {
      this.entries.clear();
      this.version = version;
      return undefined;
    }
    return typeof pattern === 'string' ? this.entries.get(pattern) : undefined;
  }

  /** Caches a lookup's result (`null` or a handler) and returns it unchanged. */
  set<T extends H | null>(pattern: unknown, handler: T): T {
    if (typeof pattern === 'string' && handler !== undefined) {
      if (this.entries.size >= MAX_ENTRIES) {
        this.entries.clear();
      }
      this.entries.set(pattern, handler);
    }
    return handler;
  }

  /** The cached handler for `pattern`, else `load()`'s result, cached. */
  lookup<T extends H | null>(pattern: unknown, version: number, load: () => T): T {
    const cached = this.get(pattern, version);
    return cached !== undefined ? (cached as T) : this.set(pattern, load());
  }

  clear(): void {
    this.entries.clear();
  }
}
