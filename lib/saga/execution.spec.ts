import { context, createContextKey, ROOT_CONTEXT } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { defer, EMPTY, Observable, of } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { retryDelay, settle } from './execution.js';

const KEY = createContextKey('test');
const manager = new AsyncLocalStorageContextManager();
beforeAll(() => {
  context.setGlobalContextManager(manager.enable());
});
afterAll(() => {
  manager.disable();
  context.disable();
});

const timeoutError = () => new Error('too slow');

describe('settle()', () => {
  it('settles with a value, a Promise value, or the last value of an Observable', async () => {
    await expect(settle(ROOT_CONTEXT, () => 1, undefined, timeoutError)).resolves.toBe(1);
    await expect(settle(ROOT_CONTEXT, async () => 2, undefined, timeoutError)).resolves.toBe(2);
    await expect(settle(ROOT_CONTEXT, () => of(1, 2, 3), undefined, timeoutError)).resolves.toBe(3);
    await expect(settle(ROOT_CONTEXT, () => EMPTY, undefined, timeoutError)).resolves.toBeUndefined();
  });

  it('rejects with a throw, a rejection or an Observable error, unchanged', async () => {
    const error = new RangeError('x');
    await expect(
      settle(ROOT_CONTEXT, () => {
        throw error;
      }, undefined, timeoutError),
    ).rejects.toBe(error);
    await expect(settle(ROOT_CONTEXT, () => Promise.reject(error), undefined, timeoutError)).rejects.toBe(error);
    await expect(settle(ROOT_CONTEXT, () => new Observable(() => { throw error; }), undefined, timeoutError)).rejects.toBe(error);
  });

  it('calls the function and subscribes the Observable in the given context', async () => {
    const ctx = ROOT_CONTEXT.setValue(KEY, 'saga');
    const seen: unknown[] = [];
    await settle(ctx, () => {
      seen.push(context.active().getValue(KEY));
      return defer(() => of(seen.push(context.active().getValue(KEY))));
    }, undefined, timeoutError);
    expect(seen).toEqual(['saga', 'saga']);
  });

  it('times out, aborts the signal, unsubscribes, and ignores the late outcome', async () => {
    let signal: AbortSignal | undefined;
    let unsubscribed = false;
    const error = await settle(
      ROOT_CONTEXT,
      (s) => {
        signal = s;
        return new Observable(() => () => void (unsubscribed = true));
      },
      10,
      timeoutError,
    ).catch((e: unknown) => e);
    expect((error as Error).message).toBe('too slow');
    expect(signal?.aborted).toBe(true);
    expect(unsubscribed).toBe(true);

    let resolveLate!: (value: string) => void;
    const late = settle(ROOT_CONTEXT, () => new Promise<string>((resolve) => (resolveLate = resolve)), 10, timeoutError);
    await expect(late).rejects.toThrow('too slow');
    resolveLate('now');
  });
});

describe('retryDelay()', () => {
  it('is fixed, exponential, or computed, and capped', () => {
    expect(retryDelay(undefined, 1, null)).toBe(0);
    expect(retryDelay({ attempts: 3 }, 2, null)).toBe(0);
    expect([1, 2, 3].map((n) => retryDelay({ attempts: 4, delayMs: 10 }, n, null))).toEqual([10, 10, 10]);
    expect([1, 2, 3].map((n) => retryDelay({ attempts: 4, delayMs: 10, backoff: 'exponential' }, n, null))).toEqual([10, 20, 40]);
    expect([1, 2, 3].map((n) => retryDelay({ attempts: 4, delayMs: 10, backoff: 'exponential', maxDelayMs: 25 }, n, null))).toEqual([10, 20, 25]);
    expect(retryDelay({ attempts: 4, backoff: (n) => n * 7 }, 3, null)).toBe(21);
    expect(retryDelay({ attempts: 4, backoff: () => Number.NaN }, 1, null)).toBe(0);
    expect(
      retryDelay({ attempts: 4, delayMs: 5, backoff: () => { throw new Error('bad hook'); } }, 1, null),
    ).toBe(5);
  });
});
