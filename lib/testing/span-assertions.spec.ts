import { AssertionError } from 'node:assert';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type SpanContext } from '@opentelemetry/api';
import { TracerProvider, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
// Imported file by file: the barrel also loads OtelTestingModule, which needs the whole OtelModule.
import { expectSpan } from './span-assertions.js';
import { childrenOf, findSpan, findSpans, getSpan, traceOf } from './span-query.js';
import { SpanRecorder, spanRecorder } from './span-recorder.js';
import { spanTree } from './span-tree.js';

const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: spanRecorder.exporter })] });
const tracer = provider.getTracer('span-assertions.spec');

const REMOTE_PARENT: SpanContext = {
  traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
  spanId: '00f067aa0ba902b7',
  traceFlags: 1,
  isRemote: true,
};

interface Flow {
  spans: ReadableSpan[];
  server: ReadableSpan;
  load: ReadableSpan;
  send: ReadableSpan;
  process: ReadableSpan;
  remoteChild: ReadableSpan;
}

/**
 * GET /orders/:id (SERVER) with two children, `send` (PRODUCER) and `load` (INTERNAL, ERROR, an
 * event); `process` (CONSUMER) is the root of a second trace and links to `send`; `remote child`
 * has a remote parent that was never recorded.
 */
function recordFlow(): Flow {
  // Explicit start times: the SDK's clock has millisecond steps, and spans started in the same
  // millisecond would otherwise come out in end order.
  const base = Date.now();
  const at = (offsetMs: number): number => base + offsetMs;
  const server = tracer.startSpan(
    'GET /orders/:id',
    {
      kind: SpanKind.SERVER,
      startTime: at(0),
      attributes: { 'http.request.method': 'GET', 'http.route': '/orders/:id', 'http.response.status_code': 200 },
    },
    ROOT_CONTEXT,
  );
  const inServer = trace.setSpan(ROOT_CONTEXT, server);
  const send = tracer.startSpan(
    'send orders.created',
    { kind: SpanKind.PRODUCER, startTime: at(1), attributes: { 'messaging.system': 'nats', tags: ['a', 'b'] } },
    inServer,
  );
  send.end(at(2));
  const load = tracer.startSpan('OrdersService.load', { startTime: at(3) }, inServer);
  load.addEvent('cache.miss', { key: 'order:1' });
  load.setStatus({ code: SpanStatusCode.ERROR, message: 'order not found' });
  load.end(at(4));
  server.end(at(5));
  const process = tracer.startSpan(
    'process orders.created',
    {
      kind: SpanKind.CONSUMER,
      startTime: at(6),
      links: [{ context: send.spanContext(), attributes: { 'messaging.operation.type': 'process' } }],
    },
    ROOT_CONTEXT,
  );
  process.end(at(7));
  const remoteChild = tracer.startSpan(
    'remote child',
    { startTime: at(8) },
    trace.setSpanContext(ROOT_CONTEXT, REMOTE_PARENT),
  );
  remoteChild.end(at(9));

  const spans = spanRecorder.getFinishedSpans();
  return {
    spans,
    server: getSpan(spans, 'GET /orders/:id'),
    load: getSpan(spans, 'OrdersService.load'),
    send: getSpan(spans, 'send orders.created'),
    process: getSpan(spans, 'process orders.created'),
    remoteChild: getSpan(spans, 'remote child'),
  };
}

/** Runs `fn`, which must throw a node:assert AssertionError whose message matches every pattern. */
function expectAssertionError(fn: () => unknown, ...patterns: RegExp[]): AssertionError {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(AssertionError);
  for (const pattern of patterns) {
    expect((thrown as AssertionError).message).toMatch(pattern);
  }
  return thrown as AssertionError;
}

const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

beforeEach(() => {
  spanRecorder.reset();
});

afterAll(async () => {
  await provider.shutdown();
});

describe('span queries', () => {
  it('finds spans by name, RegExp, predicate and filter', () => {
    const { spans, server, send, process } = recordFlow();

    expect(findSpan(spans, 'GET /orders/:id')).toBe(server);
    expect(findSpan(spans, 'nope')).toBeUndefined();
    const global = /orders\.created$/g;
    expect(findSpans(spans, global)).toEqual([send, process]);
    expect(findSpans(spans, global)).toEqual([send, process]);
    expect(findSpans(spans, (span) => span.kind === SpanKind.CONSUMER)).toEqual([process]);
    expect(findSpans(spans, { name: /orders/, kind: SpanKind.PRODUCER, attributes: { tags: ['a', 'b'] } })).toEqual([
      send,
    ]);
    expect(findSpans(spans, { attributes: { tags: ['a'] } })).toEqual([]);
    expect(findSpans(spans, { traceId: process.spanContext().traceId })).toEqual([process]);
  });

  it('getSpan throws an AssertionError with the tree unless exactly one span matches', () => {
    const { spans } = recordFlow();

    expectAssertionError(() => getSpan(spans, 'missing'), /exactly one span named "missing", found 0/, /GET \/orders\/:id \[SERVER\]/);
    expectAssertionError(() => getSpan(spans, /orders\.created/), /found 2/, /process orders\.created \[CONSUMER\]/);
  });

  it('traceOf and childrenOf follow trace and span ids', () => {
    const { spans, server, load, send, process } = recordFlow();

    expect(traceOf(spans, load)).toEqual([server, send, load]);
    expect(traceOf(spans, process.spanContext())).toEqual([process]);
    expect(childrenOf(spans, server)).toEqual([send, load]);
    expect(childrenOf(spans, send)).toEqual([]);
  });
});

describe('spanTree', () => {
  it('prints one indented block per trace, with kind, status, attributes, events and links', () => {
    const { spans, server, process, remoteChild, load } = recordFlow();

    expect(spanTree(spans, { mark: load })).toBe(
      [
        `trace ${server.spanContext().traceId}`,
        '  GET /orders/:id [SERVER] UNSET {http.request.method="GET", http.route="/orders/:id", http.response.status_code=200}',
        '    send orders.created [PRODUCER] UNSET {messaging.system="nats", tags=["a","b"]}',
        '    OrdersService.load [INTERNAL] ERROR "order not found" events=cache.miss  <--',
        `trace ${process.spanContext().traceId}`,
        '  process orders.created [CONSUMER] UNSET links=1',
        `trace ${remoteChild.spanContext().traceId}`,
        `  remote child [INTERNAL] UNSET (parent ${REMOTE_PARENT.spanId} remote, not recorded)`,
      ].join('\n'),
    );
    expect(spanTree([])).toBe('(no spans)');
  });

  it('shortens long values and many attributes', () => {
    const span = tracer.startSpan('wide', {
      attributes: { a: 'x'.repeat(100), b: 1, c: 2, d: 3 },
    });
    span.end();

    expect(spanTree(spanRecorder.getFinishedSpans(), { maxAttributes: 2 })).toContain(
      `wide [INTERNAL] UNSET {a="${'x'.repeat(38)}…, b=1, +2 more}`,
    );
  });
});

describe('expectSpan', () => {
  it('passes on a correct chain of assertions', () => {
    const { spans, server, load, send, process, remoteChild } = recordFlow();

    expectSpan(server, spans)
      .toHaveName('GET /orders/:id')
      .toHaveName(/^GET /)
      .toHaveKind(SpanKind.SERVER)
      .toBeRoot()
      .toHaveAttributes({ 'http.route': '/orders/:id', 'http.response.status_code': 200 })
      .toNotHaveAttribute('error.type')
      .toHaveStatus(SpanStatusCode.UNSET);
    expectSpan(load, spans)
      .toHaveParent(server)
      .toHaveParent(server.spanContext())
      .toHaveParent('GET /orders/:id')
      .toHaveParent(/^GET/)
      .toBeInTraceOf(send)
      .toHaveStatus(SpanStatusCode.ERROR)
      .toHaveStatus(SpanStatusCode.ERROR, 'order not found')
      .toHaveStatus(SpanStatusCode.ERROR, /not found/)
      .toHaveEvent('cache.miss')
      .toHaveEvent('cache.miss', { key: 'order:1' });
    expectSpan(send, spans).toHaveAttributes({ tags: ['a', 'b'] });
    expectSpan(process, spans)
      .toBeRoot()
      .toLinkTo(send)
      .toLinkTo(send.spanContext(), { 'messaging.operation.type': 'process' });
    expectSpan(remoteChild, spans).toHaveParent(REMOTE_PARENT).toBeInTraceOf(REMOTE_PARENT);
  });

  it('reads the recorder when no spans are given', () => {
    const { load } = recordFlow();

    expectSpan(load).toHaveParent('GET /orders/:id');
    expectAssertionError(() => expectSpan(load).toHaveParent('other'), /the parent is "GET \/orders\/:id"/);
  });

  it('fails with the span tree of the traces involved, the subject marked', () => {
    const { spans, load, server, process } = recordFlow();

    const error = expectAssertionError(
      () => expectSpan(load, spans).toHaveKind(SpanKind.CLIENT),
      /Expected kind CLIENT, got INTERNAL\./,
      new RegExp(`Span: OrdersService\\.load \\[INTERNAL\\].*span ${load.spanContext().spanId}\\)`),
      new RegExp(`trace ${server.spanContext().traceId}\\n  GET /orders/:id \\[SERVER\\]`),
      /OrdersService\.load \[INTERNAL\] ERROR "order not found" events=cache\.miss {2}<--/,
    );
    expect(error.message).not.toContain('process orders.created');
    expect(error.actual).toBe('INTERNAL');
    expect(error.expected).toBe('CLIENT');

    // The other span's trace is shown too when the assertion is about it.
    expectAssertionError(
      () => expectSpan(load, spans).toBeInTraceOf(process),
      new RegExp(`in the trace of "process orders\\.created" \\(trace ${process.spanContext().traceId}`),
      /process orders\.created \[CONSUMER\]/,
    );
  });

  it('fails on a wrong name', () => {
    const { spans, server } = recordFlow();

    expectAssertionError(() => expectSpan(server, spans).toHaveName('GET /orders'), /Expected span name "GET \/orders", got "GET \/orders\/:id"/);
    expectAssertionError(() => expectSpan(server, spans).toHaveName(/^POST/), /Expected span name \/\^POST\//);
  });

  it('fails on a wrong kind', () => {
    const { spans, send } = recordFlow();

    expectAssertionError(() => expectSpan(send, spans).toHaveKind(SpanKind.CONSUMER), /Expected kind CONSUMER, got PRODUCER/);
  });

  it('fails on a wrong parent: other span, other trace, root, unrecorded parent, other name', () => {
    const { spans, server, load, send, process, remoteChild } = recordFlow();

    // Same trace, but a sibling is not the parent.
    expectAssertionError(
      () => expectSpan(load, spans).toHaveParent(send),
      new RegExp(`parent to be "send orders\\.created" .*but the parent is span ${escape(server.spanContext().spanId)}`),
    );
    // A span in another trace can never be the parent, even with a matching span id.
    expectAssertionError(
      () =>
        expectSpan(load, spans).toHaveParent({ ...server.spanContext(), traceId: process.spanContext().traceId }),
      /but the span is in another trace/,
    );
    expectAssertionError(() => expectSpan(server, spans).toHaveParent(send), /but the parent is none \(the span is a root\)/);
    expectAssertionError(() => expectSpan(server, spans).toHaveParent('anything'), /but the span is a root/);
    expectAssertionError(
      () => expectSpan(remoteChild, spans).toHaveParent('GET /orders/:id'),
      new RegExp(`the parent \\(span ${REMOTE_PARENT.spanId}, remote\\) is not among the recorded spans`),
    );
    expectAssertionError(() => expectSpan(load, spans).toHaveParent(/^POST/), /named \/\^POST\/, but the parent is "GET \/orders\/:id"/);
  });

  it('fails toBeRoot on a child, including a child of a remote parent', () => {
    const { spans, load, server, remoteChild } = recordFlow();

    expectAssertionError(
      () => expectSpan(load, spans).toBeRoot(),
      new RegExp(`Expected a root span, but it has parent span ${server.spanContext().spanId}\\.`),
    );
    expectAssertionError(() => expectSpan(remoteChild, spans).toBeRoot(), /\(remote\)/);
  });

  it('fails toBeInTraceOf across traces', () => {
    const { spans, send, process } = recordFlow();

    expectAssertionError(
      () => expectSpan(process, spans).toBeInTraceOf(send),
      new RegExp(`but it is in trace ${process.spanContext().traceId}`),
    );
  });

  it('fails toLinkTo without the link or with other link attributes', () => {
    const { spans, server, send, process } = recordFlow();

    expectAssertionError(() => expectSpan(process, spans).toLinkTo(server), /Expected a link to "GET \/orders\/:id"/, new RegExp(send.spanContext().spanId));
    expectAssertionError(() => expectSpan(server, spans).toLinkTo(send), /the span's links: none/);
    // Same span id in another trace is not the linked span.
    expectAssertionError(
      () => expectSpan(process, spans).toLinkTo({ ...send.spanContext(), traceId: process.spanContext().traceId }),
      /Expected a link to/,
    );
    expectAssertionError(
      () => expectSpan(process, spans).toLinkTo(send, { 'messaging.operation.type': 'receive' }),
      /to have attributes \{"messaging\.operation\.type":"receive"\}, got \{"messaging\.operation\.type":"process"\}/,
    );
  });

  it('fails toHaveAttributes on a different, missing or not deep-equal value', () => {
    const { spans, server, send } = recordFlow();

    const error = expectAssertionError(
      () => expectSpan(server, spans).toHaveAttributes({ 'http.response.status_code': 404, 'http.route': '/orders/:id' }),
      /http\.response\.status_code: expected 404, got 200/,
    );
    expect(error.message).not.toMatch(/http\.route: /);
    expect(error.actual).toEqual({ 'http.response.status_code': 200 });
    expect(error.expected).toEqual({ 'http.response.status_code': 404 });
    expectAssertionError(() => expectSpan(server, spans).toHaveAttributes({ 'error.type': 'Error' }), /error\.type: expected "Error", but it is missing/);
    // Deep equality is strict: a number is not its string, an array must match element by element.
    expectAssertionError(() => expectSpan(server, spans).toHaveAttributes({ 'http.response.status_code': '200' }), /expected "200", got 200/);
    expectAssertionError(() => expectSpan(send, spans).toHaveAttributes({ tags: ['a'] }), /tags: expected \["a"\], got \["a","b"\]/);
  });

  it('fails toNotHaveAttribute when the attribute is there', () => {
    const { spans, server } = recordFlow();

    expectAssertionError(() => expectSpan(server, spans).toNotHaveAttribute('http.route'), /Expected no attribute http\.route, got "\/orders\/:id"/);
  });

  it('fails toHaveStatus on another code or message', () => {
    const { spans, server, load } = recordFlow();

    expectAssertionError(() => expectSpan(server, spans).toHaveStatus(SpanStatusCode.ERROR), /Expected status ERROR, got UNSET\./);
    expectAssertionError(() => expectSpan(load, spans).toHaveStatus(SpanStatusCode.OK), /Expected status OK, got ERROR "order not found"/);
    expectAssertionError(
      () => expectSpan(load, spans).toHaveStatus(SpanStatusCode.ERROR, 'timeout'),
      /Expected status ERROR "timeout", got ERROR "order not found"/,
    );
    expectAssertionError(() => expectSpan(server, spans).toHaveStatus(SpanStatusCode.UNSET, /x/), /Expected status UNSET \/x\/, got UNSET\./);
  });

  it('fails toHaveEvent without the event or with other event attributes', () => {
    const { spans, server, load } = recordFlow();

    expectAssertionError(() => expectSpan(server, spans).toHaveEvent('exception'), /Expected an event "exception"; the span's events: none/);
    expectAssertionError(() => expectSpan(load, spans).toHaveEvent('exception'), /the span's events: cache\.miss/);
    expectAssertionError(
      () => expectSpan(load, spans).toHaveEvent('cache.miss', { key: 'order:2' }),
      /to have attributes \{"key":"order:2"\}, got \{"key":"order:1"\}/,
    );
  });

  it('fails on a missing span', () => {
    const { spans } = recordFlow();

    expectAssertionError(() => expectSpan(findSpan(spans, 'missing'), spans), /Expected a span, got undefined\./, /GET \/orders\/:id/);
  });
});

describe('SpanRecorder', () => {
  it('is one process-wide store: every instance sees the same spans, reset clears them', () => {
    const other = new SpanRecorder();
    tracer.startSpan('one').end();

    expect(other.exporter).toBe(spanRecorder.exporter);
    expect(other.getFinishedSpans().map((span) => span.name)).toEqual(['one']);
    other.reset();
    expect(spanRecorder.getFinishedSpans()).toEqual([]);
  });

  it('returns a copy of the spans', () => {
    tracer.startSpan('one').end();
    const spans = spanRecorder.getFinishedSpans();
    spans.length = 0;

    expect(spanRecorder.getFinishedSpans()).toHaveLength(1);
  });

  it('keeps recording after a provider that exports into it is shut down (one app closed, the next starts)', async () => {
    const closed = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: spanRecorder.exporter })] });
    closed.getTracer('closed').startSpan('before shutdown').end();
    await closed.shutdown();
    tracer.startSpan('after shutdown').end();

    expect(spanRecorder.getFinishedSpans().map((span) => span.name)).toEqual(['before shutdown', 'after shutdown']);
  });

  it('waitForSpans resolves once the count is reached, with spans that end later', async () => {
    setTimeout(() => tracer.startSpan('late 1').end(), 20);
    setTimeout(() => tracer.startSpan('late 2').end(), 40);

    const spans = await spanRecorder.waitForSpans(2, { timeoutMs: 2000 });
    expect(spans.map((span) => span.name)).toEqual(['late 1', 'late 2']);
  });

  it('waitForSpans accepts a predicate; a predicate that throws means "not yet"', async () => {
    setTimeout(() => tracer.startSpan('late').end(), 20);

    const spans = await spanRecorder.waitForSpans((all) => getSpan(all, 'late') !== undefined, { timeoutMs: 2000 });
    expect(spans.map((span) => span.name)).toEqual(['late']);
  });

  it('waitForSpan resolves with the matching span', async () => {
    setTimeout(() => {
      tracer.startSpan('noise').end();
      tracer.startSpan('process orders.created', { kind: SpanKind.CONSUMER }).end();
    }, 20);

    const span = await spanRecorder.waitForSpan({ name: /orders/, kind: SpanKind.CONSUMER }, { timeoutMs: 2000 });
    expect(span.name).toBe('process orders.created');
  });

  it('waitForSpans times out with an AssertionError that shows the spans it has as a tree', async () => {
    const parent = tracer.startSpan('parent', { kind: SpanKind.SERVER });
    tracer.startSpan('child', {}, trace.setSpan(ROOT_CONTEXT, parent)).end();
    parent.end();

    const error = await spanRecorder.waitForSpans(3, { timeoutMs: 50 }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(AssertionError);
    expect((error as Error).message).toBe(
      [
        'Timed out after 50 ms waiting for at least 3 finished span(s); 2 finished span(s):',
        `trace ${parent.spanContext().traceId}`,
        '  parent [SERVER] UNSET',
        '    child [INTERNAL] UNSET',
      ].join('\n'),
    );

    const fromPredicate = await spanRecorder
      .waitForSpans((all) => getSpan(all, 'missing') !== undefined, { timeoutMs: 50 })
      .catch((caught: unknown) => caught);
    expect(fromPredicate).toBeInstanceOf(AssertionError);
    expect((fromPredicate as Error).message).toMatch(/waiting for the span predicate to hold; 2 finished span\(s\):\ntrace /);
    expect((fromPredicate as Error).message).toMatch(/Last check failed with: Expected exactly one span named "missing", found 0/);

    await expect(spanRecorder.waitForSpan('missing', { timeoutMs: 50 })).rejects.toThrow(
      /waiting for a span named "missing"; 2 finished span\(s\)/,
    );
  });
});
