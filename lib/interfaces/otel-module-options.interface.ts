import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Attributes, MeterProvider, Span, TextMapPropagator } from '@opentelemetry/api';
import type { PushMetricExporter, ViewOptions } from '@opentelemetry/sdk-metrics';
import type { Sampler, SpanExporter, SpanLimits, SpanProcessor } from '@opentelemetry/sdk-trace';
import type { RuleBasedSamplerOptions } from '../sdk/sampling-rules.js';
import type { RequestIdOptions } from '../propagation/request-id.propagator.js';
import type { BuiltinRedactionPattern } from '../redaction/redaction-rules.js';
import type { BaggagePolicyOptions } from '../propagation/baggage-policy.js';

/** A propagator this module knows by name (the values of `OTEL_PROPAGATORS`). */
export type PropagatorName = 'tracecontext' | 'baggage' | 'b3' | 'b3multi' | 'none';

/** Sampler names as in `OTEL_TRACES_SAMPLER`. */
export type SamplerName =
  | 'always_on'
  | 'always_off'
  | 'traceidratio'
  | 'parentbased_always_on'
  | 'parentbased_always_off'
  | 'parentbased_traceidratio';

/** OTLP over HTTP (JSON), the default exporter. */
export interface OtlpHttpExporterOptions {
  /**
   * Full traces URL. Default: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else
   * `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`, else `http://localhost:4318/v1/traces`.
   */
  url?: string;
  /**
   * Extra HTTP headers (e.g. an API key). Default: `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS`, else none.
   * Merged per header name: these win over the traces variable, which wins over the generic one.
   */
  headers?: Record<string, string>;
  /** Export request timeout in ms (> 0). Default: `OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT`, else 10000. */
  timeoutMillis?: number;
}

/**
 * Where spans go. `'otlp'` (default) or an {@link OtlpHttpExporterOptions} object sends OTLP/HTTP;
 * `'console'` prints spans; `'none'` keeps tracing (context, propagation) but exports nothing;
 * any `SpanExporter` instance is used as is. Default: `OTEL_TRACES_EXPORTER`, else `'otlp'`.
 */
export type ExporterOption = 'otlp' | 'console' | 'none' | OtlpHttpExporterOptions | SpanExporter;

/**
 * BatchSpanProcessor settings; each defaults to its `OTEL_BSP_*` variable, else the SDK default.
 * All are positive integers, and `maxExportBatchSize` must not exceed `maxQueueSize`.
 */
export interface BatchOptions {
  /** Spans kept in memory before new ones are dropped. Default 2048 (`OTEL_BSP_MAX_QUEUE_SIZE`). */
  maxQueueSize?: number;
  /** Spans per export request. Default 512 (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`). */
  maxExportBatchSize?: number;
  /** Delay between two exports, in ms. Default 5000 (`OTEL_BSP_SCHEDULE_DELAY`). */
  scheduledDelayMillis?: number;
  /** Time allowed for one export, in ms. Default 30000 (`OTEL_BSP_EXPORT_TIMEOUT`). */
  exportTimeoutMillis?: number;
}

/**
 * Which spans are sampled. A `Sampler` instance is used as is; a name follows `OTEL_TRACES_SAMPLER`
 * (the two ratio names take their ratio from `OTEL_TRACES_SAMPLER_ARG`, else 1.0);
 * `{ ratio }` (0 to 1) is `ParentBased(TraceIdRatioBased(ratio))` (or unparented with `parentBased: false`);
 * `{ rules, default, defaults }` is a {@link RuleBasedSampler}: rules on protocol, method, route
 * template and message pattern decide the entry spans (parent-based unless `absolute`), the
 * {@link DEFAULT_SAMPLING_RULES} (health, readiness, metrics) follow unless `defaults: false`, and
 * `default` (if not given: `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`, else
 * `parentbased_always_on`) decides the rest.
 * Default: `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`, else `parentbased_always_on` (no
 * rules, not even the default ones: they apply only when `{ rules }` is given).
 */
export type SamplerOption = Sampler | SamplerName | { ratio: number; parentBased?: boolean } | RuleBasedSamplerOptions;

/** The Prometheus scrape endpoint of `@opentelemetry/exporter-prometheus` (an optional peer: install it to use this). */
export interface PrometheusExporterOptions {
  /** Port of the scrape endpoint, 1 to 65535. Default: `OTEL_EXPORTER_PROMETHEUS_PORT`, else 9464. */
  port?: number;
  /** Interface it listens on. Default: `OTEL_EXPORTER_PROMETHEUS_HOST`, else `localhost` (use `0.0.0.0` in a container). */
  host?: string;
  /** Path of the scrape endpoint. Default `/metrics`. */
  endpoint?: string;
}

/**
 * Where metrics go. `'otlp'` (or an {@link OtlpHttpExporterOptions} object) pushes OTLP/HTTP (JSON) every
 * `interval`; `'prometheus'` (or `{ prometheus: {...} }`) serves a scrape endpoint; `'console'` prints
 * them; `'none'` turns metrics off; any `PushMetricExporter` instance is used as is.
 * Default: `OTEL_METRICS_EXPORTER`, else `'otlp'`.
 */
export type MetricsExporterOption =
  | 'otlp'
  | 'prometheus'
  | 'console'
  | 'none'
  | OtlpHttpExporterOptions
  | { prometheus: PrometheusExporterOptions }
  | PushMetricExporter;

/** The RED metrics (request rate, errors, duration) recorded by the hooks that make the spans. */
export interface MetricsOptions {
  /**
   * See {@link MetricsExporterOption}. OTLP goes to `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`, else the
   * collector of an explicit traces `exporter.url` (`/v1/traces` replaced by `/v1/metrics`, its headers
   * too), else `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/metrics`, else `http://localhost:4318/v1/metrics`.
   * Headers and timeout: `OTEL_EXPORTER_OTLP_(METRICS_)HEADERS` / `_TIMEOUT`, as for traces.
   * Default: `OTEL_METRICS_EXPORTER`, else `'otlp'`.
   */
  exporter?: MetricsExporterOption;
  /** Milliseconds between two pushes (OTLP, console, a given exporter). Default: `OTEL_METRIC_EXPORT_INTERVAL`, else 60000. */
  interval?: number;
  /** Time allowed for one push, in ms; at most `interval`. Default: `OTEL_METRIC_EXPORT_TIMEOUT`, else 30000 (capped at `interval`). */
  exportTimeoutMillis?: number;
  /** The SDK's views (rename, drop, re-bucket instruments, filter attributes). Default none. */
  views?: ViewOptions[];
  /**
   * Record into this provider instead of one otel-nest makes (`exporter`, `interval` and `views` then do not
   * apply; the provider is yours to shut down). Without it, a meter provider registered globally
   * (`metrics.setGlobalMeterProvider`, e.g. by your NodeSDK) is adopted the same way. Default: none.
   */
  meterProvider?: MeterProvider;
}

/** What an HTTP `requestHook` is told. */
export interface HttpRequestHookInfo {
  /** Node's request (for fastify, its `raw` request). */
  request: IncomingMessage;
}

/** What an HTTP `responseHook` is told. */
export interface HttpResponseHookInfo extends HttpRequestHookInfo {
  /** Node's response (for fastify, its `raw` response). */
  response: ServerResponse;
  /** The route template (`/orders/:id`), when one matched. */
  route?: string;
}

/** HTTP server tracing (express and fastify). */
export interface HttpServerTracingOptions {
  /** Default `true`. */
  enabled?: boolean;
  /**
   * Requests whose path (without query) matches are not traced: exact strings or RegExps.
   * Default: none. Typical: `['/health', /^\/metrics/]`.
   */
  ignorePaths?: Array<string | RegExp>;
  /**
   * Request headers recorded as `http.request.header.<name>` (lower-case names, allow-list).
   * Names are matched without case; `*` in a name is a wildcard (`'x-*'`), and a name starting with
   * `!` excludes what it matches, whatever the order (`['x-*', '!x-internal-*']`). Values are then
   * redacted like every attribute (`authorization` arrives as `[REDACTED]` unless `redact: false`).
   * Default: none (the semantic conventions make header capture opt-in).
   */
  requestHeaders?: string[];
  /** Response headers recorded as `http.response.header.<name>`, as {@link requestHeaders}. Default: none. */
  responseHeaders?: string[];
  /**
   * Opt-in body capture: `true` is `{ request: true, response: true }`. Default: off.
   * See {@link HttpBodyCaptureOptions}.
   */
  captureBody?: boolean | HttpBodyCaptureOptions;
  /**
   * Called with the SERVER span (recording spans only) when the request arrives, before any
   * middleware: add attributes from the request. A hook that throws is logged and ignored. Default none.
   */
  requestHook?: (span: Span, info: HttpRequestHookInfo) => void;
  /** Called with the SERVER span just before it ends, when the response is complete or the connection closed. Default none. */
  responseHook?: (span: Span, info: HttpResponseHookInfo) => void;
  /**
   * Requests for which it returns true are not traced (as with `ignorePaths`), e.g.
   * `(req) => req.headers['user-agent']?.startsWith('kube-probe') === true`. A predicate that
   * throws is logged and the request traced. Default none.
   */
  ignore?: (request: IncomingMessage) => boolean;
}

/**
 * HTTP body capture: the request body as the framework parsed it (`req.body` after Nest's body
 * parser; the stream is never read) as `nestjs.http.request.body.content`, and the handler's response
 * value as `nestjs.http.response.body.content` (seen by the global interceptor, so not with
 * `globalInterceptor: false`). Only for text content types; never for Buffers, streams or binary
 * types. The values of sensitive keys in a JSON or form body are masked before recording (the
 * `redact` keys; off with `redact: false`); the text then goes through redaction like any attribute.
 */
export interface HttpBodyCaptureOptions {
  /** Record request bodies. Default `false`. */
  request?: boolean;
  /** Record response bodies. Default `false`. */
  response?: boolean;
  /**
   * At most this many UTF-8 bytes per body (cut on a character boundary); a cut body also gets
   * `nestjs.http.request.body.truncated` / `nestjs.http.response.body.truncated` = `true`.
   * A positive integer. Default `2048`.
   */
  maxBytes?: number;
  /**
   * Content types whose bodies are recorded, without parameters; `type/*` is a wildcard.
   * Default `['application/json', 'text/*', 'application/x-www-form-urlencoded']`.
   */
  contentTypes?: string[];
}

/**
 * The `redact` option. Each list is compared without case and without `-`/`_`, with a key's last
 * `.` segment and that segment's word suffixes (`password` masks `app.user.password`,
 * `userPassword` and `http.request.header.x-password`).
 */
export interface RedactionOptions {
  /**
   * Keys whose values are masked, replacing the built-in list. Default: password, passwd, pwd,
   * secret, token, access_token, refresh_token, id_token, api_key, apikey, x-api-key, authorization,
   * proxy-authorization, cookie, set-cookie, credit_card, card_number, cvv, cvc, ssn, private_key,
   * client_secret, session_id.
   */
  keys?: string[];
  /** Keys masked in addition to `keys` (or to the built-in list). Default none. */
  extraKeys?: string[];
  /**
   * Query parameters whose values are masked in `url.full`, `url.query`, `http.url` and
   * `http.target`, the rest of the URL kept. Default: the keys, plus sig, signature,
   * AWSAccessKeyId, X-Amz-Credential, X-Amz-Security-Token, X-Amz-Signature, X-Goog-Signature.
   */
  queryParams?: string[];
  /**
   * Value patterns masked inside any string attribute, event attribute and the status message:
   * built-in names (`'bearer'`, `'jwt'`, `'aws-access-key'`, `'private-key'`, `'card-number'`)
   * or your own RegExps (which run on every string value; the built-ins only after a cheap
   * precheck). `[]` turns value patterns off. Default: all built-ins.
   */
  patterns?: Array<BuiltinRedactionPattern | RegExp>;
  /** What replaces a masked value or match. Default `'[REDACTED]'`. */
  replacement?: string;
}

/** Outgoing HTTP tracing. */
export interface HttpClientTracingOptions {
  /** CLIENT spans and context headers for global `fetch` (undici). Default `true`. */
  fetch?: boolean;
  /** CLIENT spans and context headers for `@nestjs/axios` `HttpService`. Default `true`. */
  httpService?: boolean;
}

/**
 * Spans for the guards, pipes, interceptors and exception filters that run for a request or a
 * message (`enhancerSpans`). Each kind is on unless set to `false`.
 */
export interface EnhancerSpansOptions {
  /** `guard <Class>` spans around `canActivate` (until its Promise or Observable settles). Default `true`. */
  guards?: boolean;
  /** `pipe <Class>` spans around `transform`, one per argument the pipe transforms. Default `true`. */
  pipes?: boolean;
  /**
   * `interceptor <Class>` spans from the call of `intercept` until the Observable it returns
   * completes, errors or is unsubscribed: the interceptor and everything it wraps. Default `true`.
   */
  interceptors?: boolean;
  /** `filter <Class>` spans around an exception filter's `catch`. Default `true`. */
  filters?: boolean;
  /**
   * More calls than this of one enhancer under one request or message span (calls that follow each
   * other without a turn of the event loop in between) are collapsed: only the `keepSlowest` slowest
   * (and every failed call) keep a span. `false` never collapses. Default `10`.
   */
  collapseAbove?: number | false;
  /** How many spans a collapsed group keeps, the slowest; at most `collapseAbove`. Default `3`. */
  keepSlowest?: number;
}

/**
 * Options of {@link OtelModule.forRoot}. Every option is optional. Explicit options win over the
 * `OTEL_*` variables, which win over the defaults. A wrong explicit option (or an unknown key)
 * throws `OtelConfigError` at bootstrap; a wrong variable is a logged warning and falls back.
 *
 * The SDK options (`serviceName` to `spanProcessors`) cannot change an SDK that already runs in
 * this process (started by `otel-nest/register` or an earlier `forRoot`): they are then ignored,
 * with a warning that names them.
 */
export interface OtelModuleOptions {
  /**
   * `service.name`. Default: `resourceAttributes['service.name']`, else `OTEL_SERVICE_NAME`, else
   * `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, else `unknown_service:<argv0>` (e.g. `unknown_service:node`).
   */
  serviceName?: string;
  /** `service.version`. Default: `resourceAttributes['service.version']`, else `service.version` in `OTEL_RESOURCE_ATTRIBUTES`, else unset. */
  serviceVersion?: string;
  /** Extra resource attributes, merged over `OTEL_RESOURCE_ATTRIBUTES`. Default `{}`. */
  resourceAttributes?: Attributes;
  /** See {@link ExporterOption}. Default `'otlp'` (or `OTEL_TRACES_EXPORTER`). */
  exporter?: ExporterOption;
  /** Batching; `false` exports each span when it ends (SimpleSpanProcessor: tests, short scripts). Default: batching on. */
  batch?: BatchOptions | false;
  /** See {@link SamplerOption}. Default `parentbased_always_on` (or `OTEL_TRACES_SAMPLER`). */
  sampler?: SamplerOption;
  /**
   * SDK span limits (attribute count/length, events, links), non-negative integers. Default per field:
   * `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT` / `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT` (else no limit),
   * `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT` / `OTEL_ATTRIBUTE_COUNT_LIMIT`, `OTEL_SPAN_EVENT_COUNT_LIMIT`,
   * `OTEL_SPAN_LINK_COUNT_LIMIT`, `OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT`, `OTEL_LINK_ATTRIBUTE_COUNT_LIMIT` (else 128).
   */
  spanLimits?: SpanLimits;
  /**
   * Propagators, in order; or any `TextMapPropagator`. Default: `OTEL_PROPAGATORS`, else
   * `['tracecontext', 'baggage']`. Add `'b3'` / `'b3multi'` for meshes that use them. Jaeger's `uber-trace-id`
   * is not built in (`@opentelemetry/propagator-jaeger` has no SDK 3 release): pass a propagator instance.
   * `['none']` (alone) turns propagation off.
   */
  propagators?: PropagatorName[] | TextMapPropagator;
  /** Extra span processors added after the exporter's (e.g. a redaction processor). Default none. */
  spanProcessors?: SpanProcessor[];
  /**
   * Redaction of secrets before export, ON by default: attribute and event values under sensitive
   * keys, sensitive query parameters in URLs, and bearer tokens, JWTs, AWS access keys, PEM private
   * keys and card numbers anywhere in a string (see {@link RedactionOptions} and
   * `RedactionSpanProcessor`). It runs after `spanProcessors`, right before the export. `false`
   * turns it off; an object changes the rules. Applies also to an SDK started by
   * `otel-nest/register`; with your own SDK, add `RedactionSpanProcessor` to it. Default `true`.
   */
  redact?: boolean | RedactionOptions;
  /**
   * Baggage keys copied onto every span started in this process as attributes of the same name
   * (e.g. `['tenant.id', 'user.id']`). An attribute given to `startSpan` wins. Applies also to an SDK
   * started by `otel-nest/register`; with your own SDK, add `BaggageAttributesSpanProcessor` to it. Default none.
   */
  baggageToAttributes?: string[];
  /**
   * What of a caller's baggage enters this process, per channel where a remote context is read (the
   * HTTP server, the gRPC server, every traced transport server, and other instrumentations'
   * extracts through the registered propagator): `inbound: 'accept' | 'drop' | { allow: [...] }`,
   * `channels: { http: 'drop', ... }`, `maxMembers`, `maxBytes`. Baggage the application itself sets
   * is never filtered and goes out as usual. Default: accept, at most 64 members and 8192 bytes
   * (the W3C Baggage limits). See {@link BaggagePolicyOptions}.
   */
  baggage?: BaggagePolicyOptions;
  /**
   * The `x-request-id` bridge, opt-in: `true` (the defaults) or a {@link RequestIdOptions} object.
   * An incoming `x-request-id` (else `x-correlation-id`) is recorded as `nestjs.request_id` on the
   * SERVER or CONSUMER span that receives it, kept in the context (`getRequestId()`, and
   * `request_id` in the log lines of `OtelConsoleLogger`, `otelPinoMixin`, `otelWinstonFormat`), and
   * written on every outgoing HTTP call, gRPC call and message. Values that are not 1 to 200 visible
   * ASCII characters are ignored. `generate: true` makes an id (a UUID) when none comes. An SDK option
   * (it adds a propagator and a span processor). Default off.
   */
  requestId?: boolean | RequestIdOptions;
  /**
   * RED metrics of every HTTP request, gRPC call and message (sampled or not), recorded where the spans
   * are made: `true` (OTLP/HTTP to the traces collector), `false`, or {@link MetricsOptions}.
   * Default: off, unless `OTEL_METRICS_EXPORTER` is set (to anything but `none`), which turns them on
   * with that exporter. Off loads none of the metrics packages.
   */
  metrics?: boolean | MetricsOptions;
  /** HTTP server spans; `false` turns them off. Default on. */
  http?: boolean | HttpServerTracingOptions;
  /** Outgoing HTTP spans; `false` turns both off. Default both on. */
  httpClient?: boolean | HttpClientTracingOptions;
  /**
   * Spans for guards, pipes, interceptors and exception filters, opt-in: `true` (every kind) or
   * {@link EnhancerSpansOptions}. They need Nest's `instrument` option, which only the application
   * can pass: `NestFactory.create(AppModule, { instrument: otelInstrument() })` (Nest 11.1.4 or later).
   * Spans are made only under a recording HTTP SERVER or transport CONSUMER span. Default `false`.
   */
  enhancerSpans?: boolean | EnhancerSpansOptions;
  /** Log the one-line startup summary and the warnings. Default `true`. */
  logSummary?: boolean;
  /**
   * Turn the SDK off (no provider is registered; spans are non-recording, the app runs untouched).
   * Default: `OTEL_SDK_DISABLED === 'true'`.
   */
  disabled?: boolean;
}
