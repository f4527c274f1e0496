import {
  context,
  SpanKind,
  SpanStatusCode,
  trace,
  createContextKey,
  type Attributes,
  type Context,
  type Span,
} from '@opentelemetry/api';
import { getRPCMetadata, isTracingSuppressed, RPCType, type RPCMetadata } from '@opentelemetry/core';
import { isWrapped } from '@opentelemetry/instrumentation';
import { Inject, Injectable, Optional, type OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { OTEL_MODULE_OPTIONS } from '../otel.module-definition.js';
import { OtelSdkService } from '../sdk/otel-sdk.service.js';
import type { HttpServerTracingOptions, OtelModuleOptions } from '../interfaces/otel-module-options.interface.js';
import {
  ATTR_ERROR_TYPE,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_HTTP_ROUTE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_URL_PATH,
  ATTR_URL_SCHEME,
} from '../semconv.js';
import { existingRequestHook } from '../nest-compat.js';
import { extractContext } from '../propagation/carrier.js';
import { callSpanHook, isIgnoredBy } from '../utils/user-hook.js';
import { recordError } from '../utils/record-error.js';
import { getOtelNestTracer } from '../utils/tracer.js';
import {
  hasBody,
  httpSpanName,
  httpMethod,
  requestDetailAttributes,
  samplingAttributes,
} from './http-attributes.js';
import { diagLimited } from '../utils/diag-limited.js';
import { HttpRouteTemplates, routeAtStart } from './http-route-templates.js';
import { elapsedSeconds, startMeasure } from '../metrics/measure.js';
import { activeInstruments } from '../metrics/metrics-state.js';
import type { OtelNestInstruments } from '../metrics/instruments.js';
import { metricsRecordFailed } from '../otel.messages.js';
import { captureBodies, captureRequestHeaders, captureResponseHeaders, compileHttpCapture, type HttpCapture, type ReplyHeaders } from './http-capture.js';
import { httpRouteNotRecorded, httpServerSpanEndFailed, httpServerSpanStartFailed } from '../otel.messages.js';

/** What we know about one request while it runs; stored in its context. */
export interface HttpRequestState {
  readonly span: Span;
  /** The method as reported (`GET`, `_OTHER`). */
  readonly method: string;
  /** True when the SERVER span belongs to another instrumentation (instrumentation-http) and we only enrich it. */
  readonly enriching: boolean;
  /** instrumentation-http's record of the request, when enriching: it names its span from `route`. */
  readonly rpcMetadata?: RPCMetadata;
  route?: string;
  /** The error a handler threw, kept so that a 5xx answer can record it once with its type. */
  error?: unknown;
  ended: boolean;
  /** The RED metrics of this request, while metrics are on (sampled or not). */
  measurement?: HttpServerMeasurement;
  /** `http.captureBody.response`: the global interceptor keeps the handler's value in `responseBody`. */
  captureResponseBody?: boolean;
  responseBody?: unknown;
}

/** What the metrics of one request need at its end. */
interface HttpServerMeasurement {
  readonly instruments: OtelNestInstruments;
  /** `http.request.method` and `url.scheme`: the attributes of `http.server.active_requests`. */
  readonly attributes: Attributes;
  /** See startMeasure: undefined when the span's own duration is the measurement. */
  readonly startedAt: number | undefined;
}

const HTTP_REQUEST_STATE = createContextKey('otel-nest http request state');

/** The state of the HTTP request whose context is active, if any. */
export function getHttpRequestState(ctx: Context = context.active()): HttpRequestState | undefined {
  return ctx.getValue(HTTP_REQUEST_STATE) as HttpRequestState | undefined;
}

/** The parts of a fastify reply read here: its headers, and the request (for its matched route). */
interface FastifyReplyLike {
  request?: unknown;
  getHeader?(name: string): number | string | string[] | undefined;
}

type RequestHook = (req: unknown, res: unknown, done: (err?: unknown) => void) => unknown;
type RouteTriggeredHook = (requestMethod: number, path: string) => void;

interface HookableAdapter {
  getType?(): string;
  setOnRequestHook?(hook: RequestHook): void;
  getOnRouteTriggered?(): RouteTriggeredHook | undefined;
  setOnRouteTriggered?(hook: RouteTriggeredHook): void;
}

/** Marks adapters we already hooked, so that two OtelModule imports never trace a request twice. */
const HOOKED = Symbol.for('otel-nest.http.hooked');

/**
 * instrumentation-http's record of the request whose context `ctx` is: it starts the SERVER span
 * before the framework sees the request and stores it, as RPC metadata, in the context it runs the
 * request in. The key is a `Symbol.for` key, so any copy of `@opentelemetry/core` finds it, and
 * the express and router instrumentations keep it in the contexts of the middleware spans they
 * start, so it is found even when one of those is the active span.
 */
function httpRpcMetadata(ctx: Context): RPCMetadata | undefined {
  const rpcMetadata = getRPCMetadata(ctx);
  return rpcMetadata?.type === RPCType.HTTP && rpcMetadata.span ? rpcMetadata : undefined;
}

/** True when instrumentation-http (or another wrapper that marks itself the same way) traces incoming requests. */
export function httpServerIsInstrumented(): boolean {
  try {
    // `isWrapped` is @opentelemetry/instrumentation's own test for its wrappers.
    return isWrapped(process.getBuiltinModule('node:http').Server.prototype.emit);
  } catch {
    return false;
  }
}

/** Resolved HTTP server options. */
export interface ResolvedHttpServerOptions {
  enabled: boolean;
  ignorePaths: Array<string | RegExp>;
  requestHeaders: string[];
  responseHeaders: string[];
  requestHook?: HttpServerTracingOptions['requestHook'];
  responseHook?: HttpServerTracingOptions['responseHook'];
  ignore?: HttpServerTracingOptions['ignore'];
}

export function resolveHttpServerOptions(option: OtelModuleOptions['http']): ResolvedHttpServerOptions {
  const given: HttpServerTracingOptions = typeof option === 'object' && option !== null ? option : {};
  return {
    enabled: option === false ? false : given.enabled !== false,
    ignorePaths: given.ignorePaths ?? [],
    requestHeaders: (given.requestHeaders ?? []).map(h => h.toLowerCase()),
    responseHeaders: (given.responseHeaders ?? []).map(h => h.toLowerCase()),
    requestHook: given.requestHook,
    responseHook: given.responseHook,
    ignore: given.ignore,
  };
}

/**
 * One SERVER span per HTTP request, through the hooks Nest's HTTP adapters offer (express and
 * fastify, Nest 11 and 12): `setOnRequestHook` starts the span before any middleware, guard or
 * body parser and runs the rest of the request in its context; the route template comes from
 * `setOnRouteTriggered` (falling back to the framework's matched route); the span ends when the
 * response closes. Nothing in Nest, express or fastify is patched.
 */
@Injectable()
export class HttpServerInstrumentation implements OnModuleInit {
  private readonly options: ResolvedHttpServerOptions;
  /** Header allow-lists (globs, exclusions) and body capture, compiled once. */
  private readonly capture: HttpCapture;
  private installed = false;

  constructor(
    @Inject(OTEL_MODULE_OPTIONS) moduleOptions: OtelModuleOptions,
    private readonly sdk: OtelSdkService,
    @Optional() private readonly adapterHost?: HttpAdapterHost,
    @Optional() private readonly routeTemplates?: HttpRouteTemplates,
  ) {
    this.options = resolveHttpServerOptions(moduleOptions.http);
    this.capture = compileHttpCapture(typeof moduleOptions.http === 'object' && moduleOptions.http !== null ? moduleOptions.http : {});
    if (!this.options.enabled || !adapterHost) {
      return;
    }
    // The route hook is read when routes are registered, which happens before onModuleInit, so
    // install as soon as the adapter exists (at once with NestFactory, later with @nestjs/testing).
    const init$ = (adapterHost as { init$?: { subscribe(fn: () => void): unknown } }).init$;
    if (init$) {
      init$.subscribe(() => this.install());
    } else if (adapterHost.httpAdapter) {
      this.install();
    }
  }

  onModuleInit(): void {
    if (this.options.enabled) {
      this.install();
    }
  }

  /** True once the request hook is in place on this application's HTTP adapter. */
  get isInstalled(): boolean {
    return this.installed;
  }

  private install(): void {
    if (this.installed) {
      return;
    }
    const adapter = this.adapterHost?.httpAdapter as unknown as (HookableAdapter & Record<symbol, boolean>) | undefined;
    if (!adapter || typeof adapter.setOnRequestHook !== 'function') {
      return;
    }
    this.installed = true;
    const isFastify = adapter.getType?.() === 'fastify';
    const framework = isFastify ? 'fastify' : 'express';
    // What the request hook will find is only certain per request; a wrapped Server#emit says
    // instrumentation-http is there and will own the SERVER spans.
    this.sdk.addTraced(
      httpServerIsInstrumented()
        ? `HTTP server (${framework}, enriching instrumentation-http's SERVER spans)`
        : `HTTP server (${framework})`,
    );
    if (adapter[HOOKED]) {
      return;
    }
    adapter[HOOKED] = true;
    const previousRequestHook = existingRequestHook(adapter);

    adapter.setOnRequestHook((req, res, done) => {
      const next = previousRequestHook
        ? (err?: unknown) => (err ? done(err) : previousRequestHook.call(adapter, req, res, done))
        : done;
      let ctx: Context | undefined;
      try {
        ctx = this.onRequest(
          (isFastify ? (req as { raw: IncomingMessage }).raw : req) as IncomingMessage,
          (isFastify ? (res as { raw: ServerResponse }).raw : res) as ServerResponse,
          isFastify ? (res as FastifyReplyLike) : undefined,
        );
      } catch (err) {
        diagLimited('error', httpServerSpanStartFailed(), err);
      }
      return ctx ? context.with(ctx, next) : next();
    });

    const previousRouteHook = adapter.getOnRouteTriggered?.();
    adapter.setOnRouteTriggered?.((requestMethod, path) => {
      try {
        const state = getHttpRequestState();
        if (state) {
          setRoute(state, path);
        }
      } catch (err) {
        diagLimited('error', httpRouteNotRecorded(), err);
      }
      previousRouteHook?.(requestMethod, path);
    });
  }

  /** Starts (or adopts) the SERVER span; returns the context the request must run in. */
  private onRequest(req: IncomingMessage, res: ServerResponse, fastifyReply: FastifyReplyLike | undefined): Context | undefined {
    if (this.options.ignorePaths.length > 0 && this.isIgnored(req.url ?? '/')) {
      return undefined;
    }
    if (this.options.ignore && isIgnoredBy('http.ignore predicate', this.options.ignore, req)) {
      return undefined;
    }
    const method = httpMethod(req.method);
    const active = context.active();
    if (isTracingSuppressed(active)) {
      // instrumentation-http's ignoreIncomingRequestHook said not to trace this request.
      return undefined;
    }
    // instrumentation-http already made the SERVER span for this request: enrich it, never add a
    // second. The active span is not a reliable sign of it: instrumentation-express and -router
    // wrap the middleware that runs this hook in spans of their own.
    const rpcMetadata = httpRpcMetadata(active);
    const enriching = rpcMetadata !== undefined;
    // instrumentation-http records the HTTP server metrics of the requests whose spans it owns.
    const instruments = enriching ? undefined : activeInstruments();

    let span: Span;
    let ctx: Context;
    let startRoute: string | undefined;
    if (rpcMetadata) {
      span = rpcMetadata.span;
      // The request goes on under its SERVER span, whatever middleware span is active here.
      ctx = trace.setSpan(active, span);
      if (!this.capture.requestHeaders.empty && span.isRecording()) {
        span.setAttributes(captureRequestHeaders(req, this.capture.requestHeaders));
      }
    } else {
      // Only the request's own headers count: a fresh root context means nothing can leak in from
      // whatever context happened to be active, and bad headers simply yield a new trace.
      const parent = extractContext(req.headers, undefined, undefined, 'http');
      // Samplers see the attributes the conventions require at start, `http.route` included
      // (before the router ran: see routeAtStart); the rest is only worth computing for a span that records.
      const attributes = samplingAttributes(req, method);
      startRoute = routeAtStart(this.routeTemplates, req.method, attributes[ATTR_URL_PATH] as string, fastifyReply?.request);
      if (startRoute !== undefined) {
        attributes[ATTR_HTTP_ROUTE] = startRoute;
      }
      span = getOtelNestTracer().startSpan(httpSpanName(method, startRoute), { kind: SpanKind.SERVER, attributes }, parent);
      ctx = trace.setSpan(parent, span);
      if (!span.isRecording()) {
        if (instruments !== undefined) {
          return this.measureUnsampled(ctx, span, method, req, res, fastifyReply, instruments);
        }
        // Unsampled: the request only carries the span context on (outgoing calls continue the
        // trace, unsampled). Nothing is recorded, so there is no state to keep and nothing to end
        // (`end()` on a non-recording span does nothing).
        if (hasBody(req)) {
          context.bind(ctx, req);
        }
        return ctx;
      }
      span.setAttributes(captureRequestHeaders(req, this.capture.requestHeaders, requestDetailAttributes(req, [])));
    }
    callSpanHook('http.requestHook', this.options.requestHook, span, { request: req });
    const state: HttpRequestState = rpcMetadata
      ? { span, method, enriching, rpcMetadata, ended: false }
      : { span, method, enriching, ended: false };
    state.route = startRoute;
    ctx = ctx.setValue(HTTP_REQUEST_STATE, state);
    if (instruments !== undefined) {
      state.measurement = beginMeasurement(instruments, span, method, req);
    }
    if (this.capture.body?.response) {
      state.captureResponseBody = true;
    }

    // Body parsers (and multer and the like) continue the request from the request stream's
    // events, which would otherwise run outside its context. Binding patches the emitter's
    // methods, which costs on every request, so it is done only when a body is coming.
    if (hasBody(req)) {
      context.bind(ctx, req);
    }
    if (enriching) {
      // instrumentation-http names and ends its span on 'close', from a listener added before
      // this one; 'finish' comes first. An aborted response has no 'finish': its owner ends it as is.
      // `on`, not `once`: each event comes once per response, and `once` allocates a wrapper per request.
      res.on('finish', () => this.onEnrichedFinish(state, req, res, fastifyReply));
    } else {
      res.on('close', () => this.onClose(state, req, res, fastifyReply));
    }
    return ctx;
  }

  /** Completes instrumentation-http's SERVER span with what we know; its owner sets the status and ends it. */
  private onEnrichedFinish(state: HttpRequestState, req: IncomingMessage, res: ServerResponse, fastifyReply: FastifyReplyLike | undefined): void {
    if (state.ended) {
      return;
    }
    state.ended = true;
    try {
      if (!state.span.isRecording()) {
        return;
      }
      if (!state.route) {
        const route = frameworkRoute(req, fastifyReply?.request);
        if (route) {
          setRoute(state, route);
        }
      }
      this.setResponseHeaders(state.span, res, fastifyReply);
      if (this.capture.body) {
        captureBodies(state, this.capture.body, req, res, fastifyReply?.request, fastifyReply as ReplyHeaders | undefined);
      }
      if (res.statusCode >= 500 && state.error !== undefined) {
        recordError(state.span, state.error, String(res.statusCode));
      }
      callSpanHook('http.responseHook', this.options.responseHook, state.span, { request: req, response: res, route: state.route });
    } catch (err) {
      diagLimited('error', httpServerSpanEndFailed(), err);
    }
  }

  private onClose(state: HttpRequestState, req: IncomingMessage, res: ServerResponse, fastifyReply: FastifyReplyLike | undefined): void {
    if (state.ended) {
      return;
    }
    state.ended = true;
    try {
      if (!state.route) {
        const route = frameworkRoute(req, fastifyReply?.request);
        if (route) {
          setRoute(state, route);
        }
      }
      const { span } = state;
      const status = res.statusCode;
      if (res.headersSent || res.writableFinished) {
        span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status);
      }
      this.setResponseHeaders(span, res, fastifyReply);
      if (this.capture.body) {
        // Once the response is complete: the parsed request body and the response's content type are known.
        captureBodies(state, this.capture.body, req, res, fastifyReply?.request, fastifyReply as ReplyHeaders | undefined);
      }
      if (!res.writableFinished) {
        // The connection closed before the response was complete (client abort, socket error).
        span.setAttribute(ATTR_ERROR_TYPE, res.headersSent ? String(status) : '_OTHER');
        span.setStatus({ code: SpanStatusCode.ERROR, message: 'The connection closed before the response was complete.' });
      } else if (status >= 500) {
        // Server spans: 5xx is an error, 4xx is the client's problem and leaves the status unset.
        if (state.error !== undefined) {
          recordError(span, state.error, String(status));
        } else {
          span.setAttribute(ATTR_ERROR_TYPE, String(status));
          span.setStatus({ code: SpanStatusCode.ERROR });
        }
      }
      callSpanHook('http.responseHook', this.options.responseHook, span, { request: req, response: res, route: state.route });
    } catch (err) {
      diagLimited('error', httpServerSpanEndFailed(), err);
    } finally {
      state.span.end();
      if (state.measurement) {
        endMeasurement(state, res);
      }
    }
  }

  /**
   * An unsampled request while metrics are on: no span to fill, but a state for the route hook to
   * name the route in, and the close listener that records its duration.
   */
  private measureUnsampled(
    ctx: Context,
    span: Span,
    method: string,
    req: IncomingMessage,
    res: ServerResponse,
    fastifyReply: FastifyReplyLike | undefined,
    instruments: OtelNestInstruments,
  ): Context {
    const state: HttpRequestState = { span, method, enriching: false, ended: false };
    state.measurement = beginMeasurement(instruments, span, method, req);
    const measured = ctx.setValue(HTTP_REQUEST_STATE, state);
    if (hasBody(req)) {
      context.bind(measured, req);
    }
    res.on('close', () => {
      if (state.ended) {
        return;
      }
      state.ended = true;
      if (!state.route) {
        state.route = frameworkRoute(req, fastifyReply?.request);
      }
      endMeasurement(state, res);
    });
    return measured;
  }

  private setResponseHeaders(span: Span, res: ServerResponse, fastifyReply: FastifyReplyLike | undefined): void {
    // fastify hands its headers to writeHead() at send time: they are not on the raw response
    // unless something set them there, so its reply is asked too.
    captureResponseHeaders(span, res, fastifyReply as ReplyHeaders | undefined, this.capture.responseHeaders);
  }

  private isIgnored(url: string): boolean {
    const queryAt = url.indexOf('?');
    const path = queryAt < 0 ? url : url.slice(0, queryAt);
    return this.options.ignorePaths.some(rule => (typeof rule === 'string' ? rule === path : rule.test(path)));
  }
}

/** Counts the request as active and notes what its duration needs. */
function beginMeasurement(instruments: OtelNestInstruments, span: Span, method: string, req: IncomingMessage): HttpServerMeasurement | undefined {
  try {
    const attributes: Attributes = {};
    attributes[ATTR_HTTP_REQUEST_METHOD] = method;
    attributes[ATTR_URL_SCHEME] = (req.socket as { encrypted?: boolean } | undefined)?.encrypted === true ? 'https' : 'http';
    instruments.httpServerActiveRequests.add(1, attributes);
    return { instruments, attributes, startedAt: startMeasure(span) };
  } catch (err) {
    diagLimited('error', metricsRecordFailed(), err);
    return undefined;
  }
}

/**
 * Records `http.server.request.duration` (after the span ended: its duration is the measurement)
 * and takes the request off `http.server.active_requests`. Status and `error.type` as on the span:
 * 5xx, or a response cut short (`_OTHER` before any header was sent).
 */
function endMeasurement(state: HttpRequestState, res: ServerResponse): void {
  const measurement = state.measurement!;
  state.measurement = undefined;
  try {
    const { instruments, attributes: active } = measurement;
    instruments.httpServerActiveRequests.add(-1, active);
    const attributes: Attributes = { ...active };
    if (state.route) {
      attributes[ATTR_HTTP_ROUTE] = state.route;
    }
    const status = res.statusCode;
    const sent = res.headersSent || res.writableFinished;
    if (sent) {
      attributes[ATTR_HTTP_RESPONSE_STATUS_CODE] = status;
    }
    if (!res.writableFinished) {
      attributes[ATTR_ERROR_TYPE] = res.headersSent ? String(status) : '_OTHER';
    } else if (status >= 500) {
      attributes[ATTR_ERROR_TYPE] = String(status);
    }
    instruments.httpServerDuration.record(elapsedSeconds(state.span, measurement.startedAt), attributes);
  } catch (err) {
    diagLimited('error', metricsRecordFailed(), err);
  }
}

/** Sets `http.route` and the `{method} {route}` name, on our span or on the one we enrich. */
export function setRoute(state: HttpRequestState, route: string): void {
  state.route = route;
  state.span.setAttribute(ATTR_HTTP_ROUTE, route);
  state.span.updateName(httpSpanName(state.method, route));
  if (state.rpcMetadata) {
    // When the response closes, instrumentation-http sets `http.route` from this and renames its
    // span `{request.method} {route}`, over the name given here. express and router instrumentations
    // write it on every layer they enter; the route hook runs in the handler's layer, after them.
    state.rpcMetadata.route = route;
  }
}

/** The route template the framework matched: express `req.route.path`, fastify `routeOptions.url`. */
function frameworkRoute(req: IncomingMessage, fastifyRequest: unknown): string | undefined {
  const fastifyRoute = (fastifyRequest as { routeOptions?: { url?: string } } | undefined)?.routeOptions?.url;
  if (typeof fastifyRoute === 'string' && fastifyRoute) {
    return fastifyRoute;
  }
  const expressRoute = (req as { route?: { path?: unknown } }).route?.path;
  return typeof expressRoute === 'string' && expressRoute ? expressRoute : undefined;
}
