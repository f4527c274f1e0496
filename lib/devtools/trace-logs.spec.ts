import { describe, expect, it } from 'vitest';
import type { ViewerLogRecord, ViewerSpan } from './devtools.interfaces.js';
import { TraceStore } from './trace.store.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const OTHER = '0af7651916cd43dd8448eb211c80319c';

function span(traceId: string, spanId: string): ViewerSpan {
  return {
    traceId,
    spanId,
    flags: 1,
    name: 'GET /orders',
    kind: 2,
    startTimeUnixNano: '1000000000',
    endTimeUnixNano: '2000000000',
    attributes: {},
    status: { code: 0, message: '' },
    events: [],
    links: [],
    resource: { 'service.name': 'gateway' },
    service: 'gateway',
    scope: { name: 'otel-nest' },
  };
}

function line(traceId: string, body: string, time: string, extra: Partial<ViewerLogRecord> = {}): ViewerLogRecord {
  return { traceId, timeUnixNano: time, service: 'gateway', severity: 'LOG', body, ...extra };
}

describe('TraceStore log lines', () => {
  it('keeps lines with the trace their id names, oldest first, and shows them in the trace detail', () => {
    const store = new TraceStore();
    // Lines usually arrive before their trace's spans are exported.
    expect(store.addLogs([line(TRACE, 'second', '20', { spanId: '00F067AA0BA902B7' }), line(TRACE, 'first', '10'), line(OTHER, 'other', '5')])).toBe(3);
    store.add([span(TRACE, '00f067aa0ba902b7')]);
    const detail = store.get(TRACE)!;
    expect(detail.logs.map((log) => log.body)).toEqual(['first', 'second']);
    expect(detail.logs[1]!.spanId).toBe('00f067aa0ba902b7');
    expect(store.logs(OTHER).map((log) => log.body)).toEqual(['other']);
  });

  it('ignores lines without a valid trace id or body, drops a malformed span id and time, bounds lines per trace and traces', () => {
    const store = new TraceStore({ maxTraces: 2, maxLogsPerTrace: 2 });
    const kept = store.addLogs([
      line('not-a-trace-id', 'x', '1'),
      { ...line(TRACE, 'x', '1'), body: 42 as unknown as string },
      line(TRACE, 'a', 'soon', { spanId: 'zz' }),
      line(TRACE, 'b', '2'),
      line(TRACE, 'c', '3'),
    ]);
    expect(kept).toBe(2);
    expect(store.logs(TRACE)).toEqual([
      { traceId: TRACE, timeUnixNano: '0', service: 'gateway', severity: 'LOG', body: 'a' },
      { traceId: TRACE, timeUnixNano: '2', service: 'gateway', severity: 'LOG', body: 'b' },
    ]);
    store.addLogs([line(OTHER, 'o', '1'), line('1'.repeat(32), 'n', '1')]);
    // The stalest trace's lines went first.
    expect(store.logs(TRACE)).toEqual([]);
    expect(store.logs(OTHER)).toHaveLength(1);
  });

  it('clear() forgets the lines too; a trace without lines has none', () => {
    const store = new TraceStore();
    store.add([span(TRACE, '00f067aa0ba902b7')]);
    expect(store.get(TRACE)!.logs).toEqual([]);
    store.addLogs([line(TRACE, 'a', '1')]);
    store.clear();
    expect(store.logs(TRACE)).toEqual([]);
  });
});
