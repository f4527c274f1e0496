import {
  context,
  diag,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  createContextKey,
  type Context,
  type Span,
} from '@opentelemetry/api';
import { getRPCMetadata, RPCType } from '@opentelemetry/core';
import { Inject, Injectable, Optional, type OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { OTEL_MODULE_OPTIONS } from '../otel.module-definition.js';
import { OtelSdkService } from '../sdk/otel-sdk.service.js';
import type { HttpServerTracingOptions, OtelModuleOptions } from '../interfaces/otel-module-options.interface.js';
import {
  ATTR_ERROR_TYPE,
  ATTR_HTTP_RESPONSE_HEADER_PREFIX,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_HTTP_ROUTE,
  ATTR_NESTJS_CONTROLLER,
  ATTR_NESTJS_HANDLER,
} from '../semconv.js';
import { recordError } from '../utils/record-error.js';
import { getOtelNestTracer } from '../utils/tracer.js';
import { hasBody, httpSpanName, normalizeMethod, requestAttributes, samplingAttributes } from './http-attributes.js';

/** What we know about one request while it runs; stored in its context. */
export interface HttpRequestState {
  readonly span: Span;
  /** The method as reported (`GET`, `_OTHER`). */
  readonly method: string;
  /** True when the SERVER span belongs to another instrumentation (instrumentation-http) and we only enrich it. */
  readonly enriching: boolean;
  route?: string;
  /** The error a handler threw, kept so that a 5xx answer can record it once with its type. */
  error?: unknown;
  ended: boolean;
}

const HTTP_REQUEST_STATE = createContextKey('otel-nest http request state');

/** The state of the HTTP request whose context is active, if any. */
export function getHttpRequestState(ctx: Context = context.active()): HttpRequestState | undefined {
  return ctx.getValue(HTTP_REQUEST_STATE) as HttpRequestState | undefined;
}

type RequestHook = (req: unknown, res: unknown, done: (err?: unknown) => void) => unknown;
type RouteTriggeredHook = (requestMethod: number, path: string) => void;

interface HookableAdapter {
  getType?(): string;
  setOnRequestHook?(hook: RequestHook): void;
  getOnRouteTriggered?(): RouteTriggeredHook | undefined;
  setOnRouteTriggered?(hook: RouteTriggeredHook): void;
  onRequestHook?: RequestHook;
}

/** Marks adapters we already hooked, so that two OtelModule imports never trace a request twice. */
const HOOKED = Symbol.for('otel-nest.http.hooked');

/** Resolved HTTP server options. */
export interface ResolvedHttpServerOptions {
  enabled: boolean;
  ignorePaths: Array<string | RegExp>;
  requestHeaders: string[];
  responseHeaders: string[];
}

export function resolveHttpServerOptions(option: OtelModuleOptions['http']): ResolvedHttpServerOptions {
  const given: HttpServerTracingOptions = typeof option === 'object' && option !== null ? option : {};
  return {
    enabled: option === false ? false : given.enabled !== false,
    ignorePaths: given.ignorePaths ?? [],
    requestHeaders: (given.requestHeaders ?? []).map(h => h.toLowerCase()),
    responseHeaders: (given.responseHeaders ?? []).map(h => h.toLowerCase()),
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
  private installed = false;

  constructor(
    @Inject(OTEL_MODULE_OPTIONS) moduleOptions: OtelModuleOptions,
    private readonly sdk: OtelSdkService,
    @Optional() private readonly adapterHost?: HttpAdapterHost,
  ) {
    this.options = resolveHttpServerOptions(moduleOptions.http);
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
    this.sdk.addTraced(`HTTP server (${isFastify ? 'fastify' : 'express'})`);
    if (adapter[HOOKED]) {
      return;
    }
    adapter[HOOKED] = true;
    const previousRequestHook = adapter.onRequestHook;

    adapter.setOnRequestHook((req, res, done) => {
      const next = previousRequestHook
        ? (err?: unknown) => (err ? done(err) : previousRequestHook.call(adapter, req, res, done))
        : done;
      let ctx: Context | undefined;
      try {
        ctx = this.onRequest(
          (isFastify ? (req as { raw: IncomingMessage }).raw : req) as IncomingMessage,
          (isFastify ? (res as { raw: ServerResponse }).raw : res) as ServerResponse,
          isFastify ? req : undefined,
        );
      } catch (err) {
        diag.error('otel-nest: could not start the HTTP server span; the request goes on untraced.', err);
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
        diag.error('otel-nest: could not record the HTTP route.', err);
      }
      previousRouteHook?.(requestMethod, path);
    });
  }

  /** Starts (or adopts) the SERVER span; returns the context the request must run in. */
  private onRequest(req: IncomingMessage, res: ServerResponse, fastifyRequest: unknown): Context | undefined {
    const path = (req.url ?? '/').split('?', 1)[0]!;
    if (this.isIgnored(path)) {
      return undefined;
    }
    const { method } = normalizeMethod(req.method);
    const active = context.active();
    const upstream = trace.getSpan(active);
    // instrumentation-http already made a SERVER span for this request: enrich it, never add a second.
    const enriching = upstream !== undefined && (upstream as { kind?: SpanKind }).kind === SpanKind.SERVER;

    let span: Span;
    let ctx: Context;
    if (enriching) {
      span = upstream;
      ctx = active;
    } else {
      // Only the request's own headers count: a fresh root context means nothing can leak in from
      // whatever context happened to be active, and bad headers simply yield a new trace.
      const parent = propagation.extract(ROOT_CONTEXT, req.headers);
      // Samplers see the attributes the conventions require at start; the rest is only worth
      // computing for a span that records.
      span = getOtelNestTracer().startSpan(
        httpSpanName(method),
        { kind: SpanKind.SERVER, attributes: samplingAttributes(req) },
        parent,
      );
      if (span.isRecording()) {
        span.setAttributes(requestAttributes(req, this.options.requestHeaders));
      }
      ctx = trace.setSpan(parent, span);
    }
    const state: HttpRequestState = { span, method, enriching, ended: false };
    ctx = ctx.setValue(HTTP_REQUEST_STATE, state);

    // Body parsers (and multer and the like) continue the request from the request stream's
    // events, which would otherwise run outside its context. Binding patches the emitter's
    // methods, which costs on every request, so it is done only when a body is coming.
    if (hasBody(req)) {
      context.bind(ctx, req);
    }
    res.once('close', () => this.onClose(state, req, res, fastifyRequest));
    return ctx;
  }

  private onClose(state: HttpRequestState, req: IncomingMessage, res: ServerResponse, fastifyRequest: unknown): void {
    if (state.ended) {
      return;
    }
    state.ended = true;
    try {
      if (!state.route) {
        const route = frameworkRoute(req, fastifyRequest);
        if (route) {
          setRoute(state, route);
        }
      }
      if (state.enriching) {
        // The owner of the span sets status and ends it.
        return;
      }
      const { span } = state;
      const status = res.statusCode;
      if (res.headersSent || res.writableFinished) {
        span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status);
      }
      for (const name of this.options.responseHeaders) {
        const value = res.getHeader(name);
        if (value !== undefined) {
          span.setAttribute(
            ATTR_HTTP_RESPONSE_HEADER_PREFIX + name,
            Array.isArray(value) ? value.map(String) : [String(value)],
          );
        }
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
    } catch (err) {
      diag.error('otel-nest: could not complete the HTTP server span.', err);
    } finally {
      if (!state.enriching) {
        state.span.end();
      }
    }
  }

  private isIgnored(path: string): boolean {
    return this.options.ignorePaths.some(rule => (typeof rule === 'string' ? rule === path : rule.test(path)));
  }
}

/** Sets `http.route` and the `{method} {route}` name, on our span or on the one we enrich. */
export function setRoute(state: HttpRequestState, route: string): void {
  state.route = route;
  state.span.setAttribute(ATTR_HTTP_ROUTE, route);
  state.span.updateName(httpSpanName(state.method, route));
  if (state.enriching) {
    // instrumentation-http names its span from this when the request ends.
    const rpcMetadata = getRPCMetadata(context.active());
    if (rpcMetadata?.type === RPCType.HTTP) {
      rpcMetadata.route = route;
    }
  }
}

/** Records which controller method handled the request. */
export function setHandler(state: HttpRequestState, controller: string, handler: string): void {
  state.span.setAttribute(ATTR_NESTJS_CONTROLLER, controller);
  state.span.setAttribute(ATTR_NESTJS_HANDLER, handler);
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
