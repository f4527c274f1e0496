import { describe, expect, it } from 'vitest';
import type { ViewerSpan } from './devtools.interfaces.js';
import { TraceStore } from './trace.store.js';

const BASE = 1_700_000_000_000_000_000n;

/** Trace ids from a short tag: `tid('a')` is 32 hex digits ending in "a". */
function tid(tag: string): string {
  return tag.padStart(32, '0');
}
function sid(tag: string): string {
  return tag.padStart(16, '0');
}

/** A span of trace `trace`; times in ms after BASE. */
function span(
  trace: string,
  id: string,
  fields: { parent?: string; name?: string; service?: string; start?: number; end?: number; error?: boolean; links?: Array<[string, string]> } = {},
): ViewerSpan {
  const start = fields.start ?? 0;
  const result: ViewerSpan = {
    traceId: tid(trace),
    spanId: sid(id),
    flags: 1,
    name: fields.name ?? `span ${id}`,
    kind: 1,
    startTimeUnixNano: (BASE + BigInt(start) * 1_000_000n).toString(),
    endTimeUnixNano: (BASE + BigInt(fields.end ?? start + 1) * 1_000_000n).toString(),
    attributes: {},
    status: { code: fields.error ? 2 : 0, message: '' },
    events: [],
    links: (fields.links ?? []).map(([linkTrace, linkSpan]) => ({ traceId: tid(linkTrace), spanId: sid(linkSpan), attributes: { why: 'test' } })),
    resource: { 'service.name': fields.service ?? 'svc' },
    service: fields.service ?? 'svc',
    scope: { name: 'spec' },
  };
  if (fields.parent) {
    result.parentSpanId = sid(fields.parent);
  }
  return result;
}

function names(store: TraceStore, trace: string): Array<[string, number, boolean]> {
  return store.get(tid(trace))!.rows.map((row) => [row.span.name, row.depth, row.parentMissing]);
}

describe('TraceStore', () => {
  it('groups spans by trace and summarizes each one', () => {
    const store = new TraceStore();
    const result = store.add([
      span('a', '2', { parent: '1', name: 'GET payments', service: 'gateway', start: 5, end: 40, error: true }),
      span('b', '9', { name: 'other trace', start: 100 }),
      span('a', '1', { name: 'POST /checkout', service: 'gateway', start: 0, end: 50 }),
      span('a', '3', { parent: '2', name: 'POST /charge', service: 'payments', start: 10, end: 60, error: true }),
    ]);
    expect(result).toEqual({ accepted: 4, rejected: 0, duplicates: 0 });
    expect(store.size).toBe(2);
    expect(store.summary(tid('a'))).toEqual({
      traceId: tid('a'),
      rootName: 'POST /checkout',
      rootService: 'gateway',
      rootMissing: false,
      services: ['gateway', 'payments'],
      spanCount: 3,
      droppedSpans: 0,
      startTimeUnixNano: BASE.toString(),
      endTimeUnixNano: (BASE + 60_000_000n).toString(),
      durationMs: 60,
      error: true,
      errorCount: 2,
      relatedTraceIds: [],
    });
    expect(store.summary(tid('b'))).toMatchObject({ spanCount: 1, error: false, errorCount: 0, durationMs: 1 });
    expect(store.summary(tid('c'))).toBeUndefined();
    expect(store.get(tid('c'))).toBeUndefined();
  });

  it('lists traces newest start first, whatever the arrival order', () => {
    const store = new TraceStore();
    store.add([span('a', '1', { start: 20 }), span('b', '1', { start: 30 }), span('c', '1', { start: 10 })]);
    expect(store.list().map((summary) => summary.traceId)).toEqual([tid('b'), tid('a'), tid('c')]);
  });

  it('evicts whole traces, the one that received a span least recently first', () => {
    const store = new TraceStore({ maxTraces: 2 });
    store.add([span('a', '1'), span('a', '2', { parent: '1' }), span('b', '1')]);
    // "a" receives a late span: "b" is now the stalest.
    store.add([span('a', '3', { parent: '1' })]);
    store.add([span('c', '1')]);
    expect(store.size).toBe(2);
    expect(store.list().map((summary) => summary.traceId).sort()).toEqual([tid('a'), tid('c')]);
    expect(store.spans(tid('a'))).toHaveLength(3);
    expect(store.spans(tid('b'))).toEqual([]);
  });

  it('bounds memory when one batch holds more traces than allowed', () => {
    const store = new TraceStore({ maxTraces: 3 });
    store.add(Array.from({ length: 50 }, (_, index) => span(index.toString(16), '1', { start: index })));
    expect(store.size).toBe(3);
    expect(store.list().map((summary) => summary.traceId)).toEqual([tid((49).toString(16)), tid((48).toString(16)), tid((47).toString(16))]);
  });

  it('caps the spans of one trace, counts the refused ones and ignores re-sent spans', () => {
    const store = new TraceStore({ maxSpansPerTrace: 3 });
    const first = store.add([span('a', '1'), span('a', '2', { parent: '1' }), span('a', '1')]);
    expect(first).toEqual({ accepted: 2, rejected: 0, duplicates: 1 });
    const second = store.add([span('a', '3', { parent: '1' }), span('a', '4', { parent: '1' }), span('a', '5', { parent: '1' })]);
    expect(second).toEqual({ accepted: 1, rejected: 2, duplicates: 0 });
    expect(store.summary(tid('a'))).toMatchObject({ spanCount: 3, droppedSpans: 2 });
    expect(store.get(tid('a'))!.rows).toHaveLength(3);
  });

  it('rebuilds the tree: parents before children, siblings by start time, depth by nesting', () => {
    const store = new TraceStore();
    store.add([
      span('a', '4', { parent: '2', name: 'grandchild', start: 3 }),
      span('a', '3', { parent: '1', name: 'second child', start: 20 }),
      span('a', '2', { parent: '1', name: 'first child', start: 2 }),
      span('a', '1', { name: 'root', start: 0, end: 30 }),
    ]);
    expect(names(store, 'a')).toEqual([
      ['root', 0, false],
      ['first child', 1, false],
      ['grandchild', 2, false],
      ['second child', 1, false],
    ]);
  });

  it('shows spans whose parent was not received as roots of their own, and names a stand-in root', () => {
    const store = new TraceStore();
    store.add([
      span('a', '2', { parent: 'f', name: 'orphan server', service: 'payments', start: 5 }),
      span('a', '3', { parent: '2', name: 'child of orphan', start: 6 }),
    ]);
    expect(names(store, 'a')).toEqual([
      ['orphan server', 0, true],
      ['child of orphan', 1, false],
    ]);
    expect(store.summary(tid('a'))).toMatchObject({ rootName: 'orphan server', rootService: 'payments', rootMissing: true });
    // The root arrives later: the tree is rebuilt under it.
    store.add([span('a', 'f', { name: 'root', start: 0, end: 10 })]);
    expect(names(store, 'a')).toEqual([
      ['root', 0, false],
      ['orphan server', 1, false],
      ['child of orphan', 2, false],
    ]);
    expect(store.summary(tid('a'))).toMatchObject({ rootName: 'root', rootMissing: false });
  });

  it('keeps every span of a parent cycle sent by a broken exporter', () => {
    const store = new TraceStore();
    store.add([span('a', '1', { parent: '2', name: 'x' }), span('a', '2', { parent: '1', name: 'y' }), span('a', '3', { parent: '3', name: 'self' })]);
    expect(store.get(tid('a'))!.rows.map((row) => row.span.name).sort()).toEqual(['self', 'x', 'y']);
  });

  it('orders a deep chain without recursion limits', () => {
    const store = new TraceStore();
    const chain = Array.from({ length: 2000 }, (_, index) =>
      span('a', (index + 1).toString(16), { parent: index === 0 ? undefined : index.toString(16), start: index }),
    );
    store.add(chain.reverse());
    const rows = store.get(tid('a'))!.rows;
    expect(rows).toHaveLength(2000);
    expect(rows.at(-1)!.depth).toBe(1999);
  });

  it('resolves links both ways, within a trace and across traces', () => {
    const store = new TraceStore();
    store.add([
      span('a', '1', { name: 'POST /checkout', service: 'gateway' }),
      span('a', '2', { parent: '1', name: 'retry', links: [['a', '1']] }),
      span('b', '1', { name: 'process payment.failed', service: 'notifier', start: 100, links: [['a', '1'], ['f', 'e']] }),
    ]);
    const rows = store.get(tid('a'))!.rows;
    const checkout = rows.find((row) => row.span.name === 'POST /checkout')!;
    expect(checkout.linkedFrom).toEqual([
      { traceId: tid('a'), spanId: sid('2'), sameTrace: true, found: true, name: 'retry', service: 'svc', attributes: { why: 'test' } },
      { traceId: tid('b'), spanId: sid('1'), sameTrace: false, found: true, name: 'process payment.failed', service: 'notifier', attributes: { why: 'test' } },
    ]);
    expect(rows.find((row) => row.span.name === 'retry')!.linksTo).toEqual([
      { traceId: tid('a'), spanId: sid('1'), sameTrace: true, found: true, name: 'POST /checkout', service: 'gateway', attributes: { why: 'test' } },
    ]);
    const consumer = store.get(tid('b'))!.rows[0]!;
    expect(consumer.linksTo).toEqual([
      { traceId: tid('a'), spanId: sid('1'), sameTrace: false, found: true, name: 'POST /checkout', service: 'gateway', attributes: { why: 'test' } },
      { traceId: tid('f'), spanId: sid('e'), sameTrace: false, found: false, attributes: { why: 'test' } },
    ]);
    // Related traces: stored ones only, in both directions; a trace's link to itself is not a relation.
    expect(store.summary(tid('a'))!.relatedTraceIds).toEqual([tid('b')]);
    expect(store.summary(tid('b'))!.relatedTraceIds).toEqual([tid('a')]);
  });

  it('forgets the relation when the linked trace is evicted', () => {
    const store = new TraceStore({ maxTraces: 2 });
    store.add([span('a', '1'), span('b', '1', { links: [['a', '1']] })]);
    expect(store.summary(tid('a'))!.relatedTraceIds).toEqual([tid('b')]);
    store.add([span('c', '1')]);
    expect(store.summary(tid('b'))!.relatedTraceIds).toEqual([]);
    expect(store.get(tid('b'))!.rows[0]!.linksTo[0]).toMatchObject({ found: false });
  });

  it('refreshes a cached summary when spans arrive', () => {
    const store = new TraceStore();
    store.add([span('a', '1', { end: 10 })]);
    expect(store.summary(tid('a'))).toMatchObject({ spanCount: 1, durationMs: 10, error: false });
    store.add([span('a', '2', { parent: '1', start: 5, end: 25, error: true, service: 'late' })]);
    expect(store.summary(tid('a'))).toMatchObject({ spanCount: 2, durationMs: 25, error: true, services: ['svc', 'late'] });
  });

  it('measures a span that ends before it starts as zero long', () => {
    const store = new TraceStore();
    store.add([span('a', '1', { start: 10, end: 2 })]);
    expect(store.summary(tid('a'))!.durationMs).toBe(0);
  });

  it('clears everything', () => {
    const store = new TraceStore();
    store.add([span('a', '1')]);
    store.clear();
    expect(store.size).toBe(0);
    expect(store.list()).toEqual([]);
  });

  it.each([0, -1, 1.5, Number.NaN])('refuses maxTraces %s', (maxTraces) => {
    expect(() => new TraceStore({ maxTraces })).toThrow(/maxTraces must be a positive integer/);
  });
});
