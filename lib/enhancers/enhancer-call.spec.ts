import type { Span } from '@opentelemetry/api';
import { describe, expect, it } from 'vitest';
import { CollapseWindow, type FinishedCall } from './enhancer-call.js';

/** A span that records what the window does to it. */
function fakeSpan(name: string): Span & { ended?: number; attributes: Record<string, unknown> } {
  const span = {
    name,
    attributes: {} as Record<string, unknown>,
    ended: undefined as number | undefined,
    setAttribute(key: string, value: unknown) {
      span.attributes[key] = value;
      return span;
    },
    end(time?: number) {
      span.ended = time;
    },
  };
  return span as unknown as Span & { ended?: number; attributes: Record<string, unknown> };
}

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

function runCalls(window: CollapseWindow, durations: number[], failed: number[] = []) {
  const spans = durations.map((_, i) => fakeSpan(`call ${i}`));
  durations.forEach(() => window.started());
  durations.forEach((duration, i) => {
    const call: FinishedCall = { span: spans[i]!, endedAt: 1000 + i, duration, failed: failed.includes(i) };
    window.ended(call);
  });
  return spans;
}

describe('CollapseWindow', () => {
  it('at or below the threshold, every span ends, at its own end time, without collapse attributes', async () => {
    const window = new CollapseWindow({ collapseAbove: 3, keepSlowest: 1 });
    const spans = runCalls(window, [5, 1, 9]);
    expect(spans.map((span) => span.ended)).toEqual([undefined, undefined, undefined]);
    await nextTurn();
    expect(spans.map((span) => span.ended)).toEqual([1000, 1001, 1002]);
    expect(spans.map((span) => span.attributes)).toEqual([{}, {}, {}]);
  });

  it('above it, only the slowest keepSlowest and every failed call end, with the counts; the others are never ended', async () => {
    const window = new CollapseWindow({ collapseAbove: 3, keepSlowest: 2 });
    const spans = runCalls(window, [5, 1, 9, 2, 7, 0.5], [5]);
    await nextTurn();
    expect(spans.map((span) => span.ended)).toEqual([undefined, undefined, 1002, undefined, 1004, 1005]);
    for (const kept of [spans[2]!, spans[4]!, spans[5]!]) {
      expect(kept.attributes).toEqual({ 'nestjs.enhancer.calls': 6, 'nestjs.enhancer.collapsed': 3 });
    }
  });

  it('stays open while a call of the group still runs, and starts afresh after closing', async () => {
    const window = new CollapseWindow({ collapseAbove: 1, keepSlowest: 1 });
    window.started();
    window.started();
    const fast = fakeSpan('fast');
    const slow = fakeSpan('slow');
    window.ended({ span: fast, endedAt: 1, duration: 1, failed: false });
    await nextTurn();
    expect(fast.ended).toBeUndefined();
    window.ended({ span: slow, endedAt: 2, duration: 50, failed: false });
    await nextTurn();
    expect([fast.ended, slow.ended]).toEqual([undefined, 2]);
    expect(slow.attributes).toEqual({ 'nestjs.enhancer.calls': 2, 'nestjs.enhancer.collapsed': 1 });
    const later = runCalls(window, [3]);
    await nextTurn();
    expect(later[0]!.ended).toBe(1000);
    expect(later[0]!.attributes).toEqual({});
  });
});
