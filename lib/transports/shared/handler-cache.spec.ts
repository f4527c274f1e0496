import { describe, expect, it, vi } from 'vitest';
import { HandlerCache } from './handler-cache.js';

describe('HandlerCache', () => {
  it('calls the lookup once per pattern while the handler maps are unchanged', () => {
    const cache = new HandlerCache<string>();
    const load = vi.fn(() => 'handler');
    expect(cache.lookup('orders.get', 1, load)).toBe('handler');
    expect(cache.lookup('orders.get', 1, load)).toBe('handler');
    expect(load).toHaveBeenCalledTimes(1);
  });

  it('remembers "no handler" (null) too, so unknown patterns do not pay the lookup again', () => {
    const cache = new HandlerCache<string>();
    const load = vi.fn(() => null);
    expect(cache.lookup('unknown', 1, load)).toBeNull();
    expect(cache.lookup('unknown', 1, load)).toBeNull();
    expect(load).toHaveBeenCalledTimes(1);
  });

  it('starts over when the version (the size of the handler maps) changes, or on clear()', () => {
    const cache = new HandlerCache<string>();
    cache.lookup('a', 1, () => 'first');
    expect(cache.lookup('a', 2, () => 'second')).toBe('second');
    cache.clear();
    expect(cache.lookup('a', 2, () => 'third')).toBe('third');
  });

  it('never caches non-string patterns (object patterns are serialized by Nest per call)', () => {
    const cache = new HandlerCache<string>();
    const load = vi.fn(() => 'h');
    cache.lookup({ cmd: 'sum' }, 1, load);
    cache.lookup({ cmd: 'sum' }, 1, load);
    expect(load).toHaveBeenCalledTimes(2);
  });

  it('holds at most 512 patterns: patterns from the network cannot grow it without bound', () => {
    const cache = new HandlerCache<string>();
    for (let i = 0; i < 512; i++) {
      cache.lookup(`p${i}`, 1, () => null);
    }
    // Full: every one of the 512 is still cached.
    const again = vi.fn(() => null);
    cache.lookup('p0', 1, again);
    cache.lookup('p511', 1, again);
    expect(again).not.toHaveBeenCalled();
    // The 513th starts over: the old entries are gone.
    cache.lookup('p512', 1, () => null);
    cache.lookup('p0', 1, again);
    expect(again).toHaveBeenCalledTimes(1);
    const size = (cache as unknown as { entries: Map<string, unknown> }).entries.size;
    expect(size).toBeLessThanOrEqual(512);
  });
});
