import { context, propagation, ROOT_CONTEXT, SpanKind, trace, type Context, type Span } from '@opentelemetry/api';
import { RPCType, setRPCMetadata, suppressTracing, type RPCMetadata } from '@opentelemetry/core';
import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { OtelModuleOptions } from '../interfaces/otel-module-options.interface.js';
import type { OtelSdkService } from '../sdk/otel-sdk.service.js';
import { startTestingSdk, type TestingSdk } from '../testing/testing-sdk.js';
import { TRACER_NAME } from '../utils/tracer.js';
import { getHttpRequestState, HttpServerInstrumentation } from './http-server.instrumentation.js';
import { nameHandlerSpan } from '../interceptors/handler-span.js';

const TRACE_ID = '0af7651916cd43dd8448eb211c80319c';
const PARENT_ID = 'b7ad6b7169203331';

type RequestHook = (req: unknown, res: unknown, done: (err?: unknown) => void) => unknown;
type RouteHook = (requestMethod: number, path: string) => void;

/** The two hooks of Nest's express adapter that the instrumentation uses, and nothing else. */
class FakeExpressAdapter {
  requestHook?: RequestHook;
  routeHook?: RouteHook;
  getType(): string {
    return 'express';
  }
  setOnRequestHook(hook: RequestHook): void {
    this.requestHook = hook;
  }
  getOnRouteTriggered(): RouteHook | undefined {
    return this.routeHook;
  }
  setOnRouteTriggered(hook: RouteHook): void {
    this.routeHook = hook;
  }
}

class FakeResponse extends EventEmitter {
  statusCode = 200;
  headersSent = false;
  writableFinished = false;
  getHeader(): undefined {
    return undefined;
  }
  /** What node does at the end of a response: 'finish', then 'close'. */
  complete(): void {
    this.headersSent = true;
    this.writableFinished = true;
    this.emit('finish');
    this.emit('close');
  }
}

function fakeRequest(headers: Record<string, string> = {}): IncomingMessage & { route?: { path: string } } {
  return { url: '/orders/7?x=1', method: 'GET', headers: { host: '127.0.0.1:3000', ...headers }, httpVersion: '1.1' } as never;
}

function install(options: OtelModuleOptions = {}): { adapter: FakeExpressAdapter; traced: string[] } {
  const adapter = new FakeExpressAdapter();
  const traced: string[] = [];
  const sdk = { addTraced: (what: string) => traced.push(what) } as unknown as OtelSdkService;
  new HttpServerInstrumentation(options, sdk, { httpAdapter: adapter } as never);
  return { adapter, traced };
}

/** Runs the request hook in `ctx` and resolves with the context the rest of the request runs in. */
function runRequestHook(adapter: FakeExpressAdapter, ctx: Context, req: IncomingMessage, res: FakeResponse): Context {
  let next: Context | undefined;
  context.with(ctx, () => adapter.requestHook!(req, res, () => (next = context.active())));
  expect(next).toBeDefined();
  return next!;
}

describe('HttpServerInstrumentation', () => {
  let sdk: TestingSdk;
  const tracer = () => trace.getTracer('@opentelemetry/instrumentation-http');

  beforeAll(() => {
    sdk = startTestingSdk();
  });
  afterEach(() => sdk.reset());
  afterAll(() => sdk.shutdown());

  /**
   * What instrumentation-http and instrumentation-express/-router leave active when Nest's
   * express adapter runs the request hook: instrumentation-http's SERVER span in the request's
   * context, with its RPC metadata, and a middleware span of express's on top.
   */
  function autoInstrumentedContext(): { server: Span; rpcMetadata: RPCMetadata; middleware: Span; ctx: Context } {
    const parent = propagation.extract(ROOT_CONTEXT, { traceparent: `00-${TRACE_ID}-${PARENT_ID}-01` });
    const server = tracer().startSpan('GET', { kind: SpanKind.SERVER }, parent);
    const rpcMetadata: RPCMetadata = { type: RPCType.HTTP, span: server };
    const requestContext = setRPCMetadata(trace.setSpan(parent, server), rpcMetadata);
    const middleware = tracer().startSpan('middleware - <anonymous>', {}, requestContext);
    return { server, rpcMetadata, middleware, ctx: trace.setSpan(requestContext, middleware) };
  }

  it("enriches instrumentation-http's SERVER span found in the RPC metadata, under express's middleware span", () => {
    const { adapter } = install({ http: { requestHeaders: ['X-Tenant'] } });
    const { server, rpcMetadata, middleware, ctx } = autoInstrumentedContext();
    const res = new FakeResponse();
    const next = runRequestHook(adapter, ctx, fakeRequest({ 'x-tenant': 'acme' }), res);

    // The request goes on in its SERVER span, with our state.
    expect(trace.getSpan(next)).toBe(server);
    expect(getHttpRequestState(next)).toMatchObject({ span: server, enriching: true });
    context.with(next, () => {
      adapter.routeHook!(0, '/orders/:id');
      // What the interceptor and the guard do with the handler Nest runs.
      nameHandlerSpan({ getType: () => 'http', getClass: () => ({ name: 'OrdersController' }), getHandler: () => ({ name: 'find' }) } as never);
      tracer().startSpan('user work').end();
    });
    // instrumentation-http names its span from this when the response closes.
    expect(rpcMetadata.route).toBe('/orders/:id');

    middleware.end();
    res.complete();
    server.end();
    const spans = sdk.getFinishedSpans();
    const servers = spans.filter((span) => span.kind === SpanKind.SERVER);
    expect(servers).toHaveLength(1);
    expect(servers[0]!.instrumentationScope.name).toBe('@opentelemetry/instrumentation-http');
    expect(servers[0]!.name).toBe('GET /orders/:id');
    expect(servers[0]!.attributes).toMatchObject({
      'http.route': '/orders/:id',
      'http.request.header.x-tenant': ['acme'],
      'nestjs.controller': 'OrdersController',
      'nestjs.handler': 'find',
    });
    const userWork = spans.find((span) => span.name === 'user work')!;
    expect(userWork.parentSpanContext?.spanId).toBe(server.spanContext().spanId);
    expect(spans.filter((span) => span.instrumentationScope.name === TRACER_NAME)).toHaveLength(0);
  });

  it("records the framework's route at 'finish', before instrumentation-http names its span at 'close'", () => {
    const { adapter } = install();
    const { server, rpcMetadata, ctx } = autoInstrumentedContext();
    const req = fakeRequest();
    const res = new FakeResponse();
    runRequestHook(adapter, ctx, req, res);
    req.route = { path: '/orders/:id' };
    let routeAtClose: string | undefined;
    // Added before ours, as instrumentation-http's listener is.
    res.prependListener('close', () => (routeAtClose = rpcMetadata.route));
    res.complete();
    server.end();
    expect(routeAtClose).toBe('/orders/:id');
  });

  it('starts its own SERVER span from the request headers when no other instrumentation made one', () => {
    const { adapter, traced } = install();
    const res = new FakeResponse();
    const next = runRequestHook(adapter, ROOT_CONTEXT, fakeRequest({ traceparent: `00-${TRACE_ID}-${PARENT_ID}-01` }), res);
    context.with(next, () => adapter.routeHook!(0, '/orders/:id'));
    res.complete();
    const [span] = sdk.getFinishedSpans();
    expect(span).toMatchObject({ name: 'GET /orders/:id', kind: SpanKind.SERVER });
    expect(span!.instrumentationScope.name).toBe(TRACER_NAME);
    expect(span!.spanContext().traceId).toBe(TRACE_ID);
    expect(span!.parentSpanContext?.spanId).toBe(PARENT_ID);
    expect(traced).toEqual(['HTTP server (express)']);
  });

  it('starts no span for a request instrumentation-http was told to ignore (suppressed tracing)', () => {
    const { adapter } = install();
    const res = new FakeResponse();
    const next = runRequestHook(adapter, suppressTracing(ROOT_CONTEXT), fakeRequest(), res);
    expect(getHttpRequestState(next)).toBeUndefined();
    res.complete();
    expect(sdk.getFinishedSpans()).toHaveLength(0);
  });
});
