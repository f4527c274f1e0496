/**
 * Every sentence otel-nest shows to a user: errors thrown at bootstrap, warnings about the
 * environment, and the startup summary. Each one says what is wrong and how to fix it.
 */

/** Prefix of everything otel-nest logs or throws, so users can search their logs for it. */
export const MESSAGE_PREFIX = 'otel-nest:';

/** A short, log-safe description of a value a user gave us ("got ..."). */
export function describeValue(value: unknown): string {
  if (value === null) {
    return 'null';
  }
  if (value === undefined) {
    return 'undefined';
  }
  if (typeof value === 'string') {
    const shown = value.length > 60 ? `${value.slice(0, 57)}...` : value;
    return JSON.stringify(shown);
  }
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') {
    return String(value);
  }
  if (typeof value === 'function') {
    return 'a function';
  }
  if (Array.isArray(value)) {
    return 'an array';
  }
  if (typeof value === 'object') {
    const name = (value as object).constructor?.name;
    return name && name !== 'Object' ? `an instance of ${name}` : 'an object';
  }
  return typeof value;
}

function quoteList(values: readonly string[]): string {
  return values.map((v) => `"${v}"`).join(', ');
}

// ---------------------------------------------------------------------------------------------
// Configuration errors (thrown as OtelConfigError at bootstrap)
// ---------------------------------------------------------------------------------------------

/**
 * A mistake in the options given to `OtelModule.forRoot()`, thrown at bootstrap. The message says
 * what is wrong and how to fix it. Problems in `OTEL_*` variables are warnings instead.
 */
export class OtelConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OtelConfigError';
  }
}

/** What each option must be, and an example of a correct value. Keys are option paths. */
const OPTION_HINTS = {
  options: {
    expected: 'an object',
    example: "OtelModule.forRoot({ serviceName: 'orders' })",
  },
  serviceName: { expected: 'a non-empty string', example: "{ serviceName: 'orders' }" },
  serviceVersion: { expected: 'a non-empty string', example: "{ serviceVersion: '1.4.2' }" },
  resourceAttributes: {
    expected: 'an object of attribute values',
    example: "{ resourceAttributes: { 'deployment.environment.name': 'production' } }",
  },
  'resourceAttributes.*': {
    expected: 'a string, a number, a boolean, or an array of one of these',
    example: "{ resourceAttributes: { 'service.namespace': 'shop' } }",
  },
  'resourceAttributes.service.*': {
    expected: 'a non-empty string',
    example: "{ serviceName: 'orders', serviceVersion: '1.4.2' }",
  },
  exporter: {
    expected: "'otlp', 'console', 'none', an OTLP options object or a SpanExporter",
    example: "{ exporter: 'console' } or { exporter: { url: 'http://collector:4318/v1/traces' } }",
  },
  'exporter.url': {
    expected: 'an http:// or https:// URL',
    example: "{ exporter: { url: 'http://localhost:4318/v1/traces' } }",
  },
  'exporter.headers': {
    expected: 'an object of string values',
    example: "{ exporter: { headers: { 'x-api-key': process.env.API_KEY ?? '' } } }",
  },
  'exporter.headers.*': {
    expected: 'a string',
    example: "{ exporter: { headers: { 'x-api-key': String(key) } } }",
  },
  'exporter.timeoutMillis': {
    expected: 'a positive number of milliseconds',
    example: '{ exporter: { timeoutMillis: 10000 } }',
  },
  batch: {
    expected: 'false or an object of BatchSpanProcessor settings',
    example: '{ batch: { scheduledDelayMillis: 1000 } } or { batch: false }',
  },
  'batch.*': { expected: 'a positive integer', example: '{ batch: { maxQueueSize: 2048, maxExportBatchSize: 512 } }' },
  sampler: {
    expected:
      "one of 'always_on', 'always_off', 'traceidratio', 'parentbased_always_on', " +
      "'parentbased_always_off', 'parentbased_traceidratio', an object { ratio }, an object { rules, default } or a Sampler instance",
    example: "{ sampler: { ratio: 0.25 } } or { sampler: { rules: [{ route: '/orders/*', sample: 0.1 }] } }",
  },
  'sampler.ratio': { expected: 'a number between 0 and 1', example: '{ sampler: { ratio: 0.25 } }' },
  'sampler.parentBased': { expected: 'a boolean', example: '{ sampler: { ratio: 0.25, parentBased: false } }' },
  spanLimits: { expected: 'an object', example: '{ spanLimits: { attributeCountLimit: 64 } }' },
  'spanLimits.*': {
    expected: 'a non-negative integer (or Infinity)',
    example: '{ spanLimits: { eventCountLimit: 64 } }',
  },
  propagators: {
    expected:
      "an array of 'tracecontext', 'baggage', 'b3', 'b3multi' or 'none', or a TextMapPropagator (for Jaeger's uber-trace-id, a CompositePropagator holding a JaegerPropagator)",
    example: "{ propagators: ['tracecontext', 'baggage', 'b3'] }",
  },
  'propagators.*': {
    expected: "one of 'tracecontext', 'baggage', 'b3', 'b3multi', 'none' (jaeger is not built in: pass a TextMapPropagator instance)",
    example: "{ propagators: ['tracecontext', 'baggage'] }",
  },
  spanProcessors: {
    expected: 'an array of SpanProcessor instances',
    example: '{ spanProcessors: [new MyRedactionProcessor()] }',
  },
  'spanProcessors.*': {
    expected: 'a SpanProcessor (an object with onStart, onEnd, forceFlush and shutdown methods)',
    example: '{ spanProcessors: [new MyRedactionProcessor()] }',
  },
  baggageToAttributes: {
    expected: 'an array of baggage keys',
    example: "{ baggageToAttributes: ['tenant.id', 'user.id'] }",
  },
  'baggageToAttributes.*': { expected: 'a non-empty string', example: "{ baggageToAttributes: ['tenant.id'] }" },
  'http.hook': {
    expected: 'a function',
    example: "{ http: { requestHook: (span, { request }) => span.setAttribute('app.tenant', String(request.headers['x-tenant'])) } }",
  },
  baggage: {
    expected: 'an options object',
    example: "{ baggage: { inbound: { allow: ['tenant.id', 'user.*'] }, maxMembers: 16 } }",
  },
  'baggage.inbound': {
    expected: "'accept', 'drop' or { allow: [keys] } (a key may use * as a wildcard, or be a RegExp)",
    example: "{ baggage: { inbound: { allow: ['tenant.id', 'user.*'] } } }",
  },
  'baggage.inbound.allow.*': {
    expected: 'a non-empty string or a RegExp',
    example: "{ baggage: { inbound: { allow: ['tenant.id', /^user\\./] } } }",
  },
  'baggage.channels': {
    expected: "an object of channel rules (http, grpc, nats, rmq, kafka, tcp, redis, mqtt)",
    example: "{ baggage: { channels: { http: 'drop' } } }",
  },
  'baggage.maxMembers': { expected: 'a positive integer', example: '{ baggage: { maxMembers: 16 } }' },
  'baggage.maxBytes': { expected: 'a positive integer', example: '{ baggage: { maxBytes: 2048 } }' },
  requestId: {
    expected: 'a boolean or an options object',
    example: "{ requestId: true } or { requestId: { header: 'x-request-id', generate: true } }",
  },
  'requestId.header': { expected: 'an HTTP header name (a token such as x-request-id)', example: "{ requestId: { header: 'x-request-id' } }" },
  'requestId.alternatives': { expected: 'an array of HTTP header names', example: "{ requestId: { alternatives: ['x-correlation-id'] } }" },
  'requestId.alternatives.*': { expected: 'an HTTP header name (a token such as x-correlation-id)', example: "{ requestId: { alternatives: ['x-correlation-id'] } }" },
  'requestId.generate': { expected: 'a boolean', example: '{ requestId: { generate: true } }' },
  'requestId.attribute': { expected: 'a non-empty string', example: "{ requestId: { attribute: 'nestjs.request_id' } }" },
  'requestId.propagate': { expected: 'a boolean', example: '{ requestId: { propagate: false } }' },
  http: {
    expected: 'a boolean or an options object',
    example: "{ http: { ignorePaths: ['/health'] } } or { http: false }",
  },
  httpClient: {
    expected: 'a boolean or an options object',
    example: '{ httpClient: { fetch: false } } or { httpClient: false }',
  },
  logSummary: { expected: 'a boolean', example: '{ logSummary: false }' },
  disabled: { expected: 'a boolean', example: "{ disabled: process.env.NODE_ENV === 'test' }" },
} as const satisfies Record<string, { expected: string; example: string }>;

/** A key of the option hint table: an option path, `*` standing for any key or index. */
export type OptionHintKey = keyof typeof OPTION_HINTS;

/**
 * `otel-nest: "sampler.ratio" must be a number between 0 and 1, got 1.5. Use e.g. { sampler: { ratio: 0.25 } }.`
 * `path` is what the user wrote (`propagators[2]`); `hint` selects the expectation and example.
 */
export function invalidOption(hint: OptionHintKey, path: string, got: unknown): string {
  const { expected, example } = OPTION_HINTS[hint];
  return `${MESSAGE_PREFIX} "${path}" must be ${expected}, got ${describeValue(got)}. Use e.g. ${example}.`;
}

/**
 * Like {@link invalidOption}, for options whose expectation is given by the caller (the nested
 * `redact`, `http.captureBody` and transport `otel` options).
 */
export function invalidOptionValue(path: string, expected: string, example: string, got: unknown): string {
  return `${MESSAGE_PREFIX} "${path}" must be ${expected}, got ${describeValue(got)}. Use e.g. ${example}.`;
}

/** Unknown keys in an options object; `suggestions` maps a wrong key to the one probably meant. */
export function unknownOptions(
  where: string,
  unknown: readonly string[],
  known: readonly string[],
  suggestions: ReadonlyMap<string, string>,
): string {
  const listed = unknown
    .map((key) => (suggestions.has(key) ? `"${key}" (did you mean "${suggestions.get(key)}"?)` : `"${key}"`))
    .join(', ');
  const noun = unknown.length === 1 ? 'option' : 'options';
  return (
    `${MESSAGE_PREFIX} unknown ${noun} ${listed} in ${where}. ` +
    `Known options: ${known.join(', ')}. Fix the spelling or remove ${unknown.length === 1 ? 'it' : 'them'}.`
  );
}

export function batchSizeAboveQueueSize(maxExportBatchSize: number, maxQueueSize: number): string {
  return (
    `${MESSAGE_PREFIX} "batch.maxExportBatchSize" (${maxExportBatchSize}) must not be larger than ` +
    `"batch.maxQueueSize" (${maxQueueSize}). Use e.g. { batch: { maxQueueSize: ${Math.max(maxQueueSize, maxExportBatchSize)}, ` +
    `maxExportBatchSize: ${Math.min(maxQueueSize, maxExportBatchSize)} } }.`
  );
}

export function propagatorNoneCombined(names: readonly string[]): string {
  return (
    `${MESSAGE_PREFIX} "propagators" lists 'none' together with other propagators (${quoteList(names)}). ` +
    `Use { propagators: ['none'] } alone to turn propagation off, or list only the propagators you want.`
  );
}

export function exporterWithoutShutdown(got: unknown): string {
  return (
    `${MESSAGE_PREFIX} "exporter" has an export() method but no shutdown() method, got ${describeValue(got)}. ` +
    'A SpanExporter needs both; add shutdown() (it may return Promise.resolve()).'
  );
}

// ---------------------------------------------------------------------------------------------
// Environment warnings (reported, never thrown: a bad variable must not stop the application)
// ---------------------------------------------------------------------------------------------

export function envInvalidBoolean(name: string, raw: string): string {
  return (
    `${MESSAGE_PREFIX} ${name}=${JSON.stringify(raw)} is neither 'true' nor 'false'; it is read as false. ` +
    `Set ${name}=true or ${name}=false.`
  );
}

export function envInvalidInteger(name: string, raw: string, minimum: number, fallback: string): string {
  const expected = minimum > 0 ? 'a positive integer' : 'a non-negative integer';
  return `${MESSAGE_PREFIX} ${name}=${JSON.stringify(raw)} is not ${expected}; it is ignored and ${fallback} is used.`;
}

export function envBatchSizeAboveQueueSize(maxExportBatchSize: number, maxQueueSize: number): string {
  return (
    `${MESSAGE_PREFIX} the export batch size (${maxExportBatchSize}, OTEL_BSP_MAX_EXPORT_BATCH_SIZE) is larger than ` +
    `the queue size (${maxQueueSize}, OTEL_BSP_MAX_QUEUE_SIZE); ${maxQueueSize} is used. ` +
    'Set OTEL_BSP_MAX_EXPORT_BATCH_SIZE to at most OTEL_BSP_MAX_QUEUE_SIZE.'
  );
}

export function envUnknownSampler(raw: string, supported: readonly string[], used: string): string {
  return (
    `${MESSAGE_PREFIX} OTEL_TRACES_SAMPLER=${JSON.stringify(raw)} is not supported by otel-nest ` +
    `(supported: ${supported.join(', ')}); "${used}" is used.`
  );
}

export function envInvalidSamplerArg(raw: string, sampler: string): string {
  return (
    `${MESSAGE_PREFIX} OTEL_TRACES_SAMPLER_ARG=${JSON.stringify(raw)} is not a number between 0 and 1; ` +
    `${sampler} samples with ratio 1.0. Use e.g. OTEL_TRACES_SAMPLER_ARG=0.25.`
  );
}

export function envUnsupportedExporters(raw: string, unsupported: readonly string[], used: string): string {
  return (
    `${MESSAGE_PREFIX} OTEL_TRACES_EXPORTER=${JSON.stringify(raw)}: ${quoteList(unsupported)} ` +
    `${unsupported.length === 1 ? 'is' : 'are'} not supported by otel-nest (supported: otlp, console, none); ` +
    `"${used}" is used. To export elsewhere, pass a SpanExporter as { exporter }.`
  );
}

export function envSeveralExporters(raw: string, used: string): string {
  return (
    `${MESSAGE_PREFIX} OTEL_TRACES_EXPORTER=${JSON.stringify(raw)} lists several exporters; otel-nest uses one, ` +
    `"${used}". To export to several, pass one as { exporter } and add a processor for the others in { spanProcessors }.`
  );
}

export function envUnsupportedPropagators(raw: string, unsupported: readonly string[], used: readonly string[]): string {
  return (
    `${MESSAGE_PREFIX} OTEL_PROPAGATORS=${JSON.stringify(raw)}: ${quoteList(unsupported)} ` +
    `${unsupported.length === 1 ? 'is' : 'are'} not supported by otel-nest and skipped ` +
    `(supported: tracecontext, baggage, b3, b3multi, none); propagators used: ${used.join(', ') || 'none'}.` +
    (unsupported.includes('jaeger')
      ? ' For jaeger, install @opentelemetry/propagator-jaeger and pass { propagators: new CompositePropagator({ propagators: [..., new JaegerPropagator()] }) }.'
      : '')
  );
}

export function envPropagatorNoneCombined(raw: string): string {
  return (
    `${MESSAGE_PREFIX} OTEL_PROPAGATORS=${JSON.stringify(raw)} lists 'none' together with other propagators; ` +
    "'none' wins and no context is propagated. Remove 'none' to propagate."
  );
}

export function envInvalidUrl(name: string, raw: string, used: string): string {
  return (
    `${MESSAGE_PREFIX} ${name}=${JSON.stringify(raw)} is not an http:// or https:// URL; it is ignored and ` +
    `${used} is used.`
  );
}

export function envUnsupportedProtocol(name: string, raw: string): string {
  return (
    `${MESSAGE_PREFIX} ${name}=${JSON.stringify(raw)} is not supported: otel-nest exports OTLP over HTTP ` +
    '(JSON, usually port 4318). Point OTEL_EXPORTER_OTLP_ENDPOINT at the collector\'s HTTP receiver, or pass ' +
    'your own gRPC SpanExporter as { exporter }.'
  );
}

export function envInvalidResourceAttributes(entry: string): string {
  return (
    `${MESSAGE_PREFIX} OTEL_RESOURCE_ATTRIBUTES is ignored as a whole, as the OpenTelemetry specification asks: ` +
    `the entry ${describeValue(entry)} is not a valid key=value pair with percent-encoded key and value. ` +
    "Use key1=value1,key2=value2 and percent-encode ',' and '=' (e.g. team=a%2Cb)."
  );
}

/** Never includes the header value: OTLP headers usually carry credentials. */
export function envInvalidHeader(name: string, index: number, key: string | undefined): string {
  const which = key ? `the entry #${index + 1} ("${key}")` : `the entry #${index + 1}`;
  return (
    `${MESSAGE_PREFIX} ${name}: ${which} is not a valid key=value pair or cannot be percent-decoded; it is ` +
    'skipped. Use key1=value1,key2=value2, e.g. x-api-key=secret.'
  );
}

// ---------------------------------------------------------------------------------------------
// SDK lifecycle
// ---------------------------------------------------------------------------------------------

const ENV_HINT_BY_OPTION: Readonly<Record<string, string>> = {
  serviceName: 'OTEL_SERVICE_NAME',
  serviceVersion: 'OTEL_RESOURCE_ATTRIBUTES=service.version=...',
  resourceAttributes: 'OTEL_RESOURCE_ATTRIBUTES',
  exporter: 'OTEL_TRACES_EXPORTER / OTEL_EXPORTER_OTLP_ENDPOINT',
  batch: 'OTEL_BSP_*',
  sampler: 'OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG',
  spanLimits: 'OTEL_SPAN_*_LIMIT',
  propagators: 'OTEL_PROPAGATORS',
};

/** forRoot() options that the provider started by `otel-nest/register` cannot take any more. */
export function sdkStartedByPreload(options: readonly string[]): string {
  const vars = options.map((o) => ENV_HINT_BY_OPTION[o]).filter((v): v is string => v !== undefined);
  const envHint = vars.length > 0 ? ` Set them with environment variables (${[...new Set(vars)].join(', ')})` : ' Configure them';
  return (
    `${MESSAGE_PREFIX} the OpenTelemetry SDK was already started by otel-nest/register, so ${quoteList(options)} ` +
    `given to OtelModule.forRoot() cannot change it and ${options.length === 1 ? 'is' : 'are'} ignored.` +
    `${envHint} for the preload, or drop --import otel-nest/register.`
  );
}

/** A later forRoot() in the same process asked for a different SDK than the running one. */
export function sdkReusedWithDifferentOptions(options: readonly string[], runningServiceName: string): string {
  return (
    `${MESSAGE_PREFIX} another OtelModule.forRoot() in this process already started the OpenTelemetry SDK ` +
    `(service "${runningServiceName}"); ${quoteList(options)} given here ${options.length === 1 ? 'differs' : 'differ'} ` +
    'and cannot change it, so spans of this application use the running SDK. Give every application in one ' +
    'process the same SDK options, or run them in separate processes.'
  );
}

export function foreignProviderIgnoresOptions(options: readonly string[]): string {
  return (
    `${MESSAGE_PREFIX} a tracer provider not started by otel-nest is already registered (your own NodeSDK?); ` +
    `otel-nest uses it as is and ignores ${quoteList(options)}. Configure ${options.length === 1 ? 'it' : 'them'} ` +
    'on your SDK, or remove it and let OtelModule start one.'
  );
}

export function foreignProviderBaggage(keys: readonly string[]): string {
  const list = keys.map((k) => `'${k}'`).join(', ');
  return (
    `${MESSAGE_PREFIX} "baggageToAttributes" needs a span processor, and the tracer provider was started by your ` +
    `own SDK. Add new BaggageAttributesSpanProcessor([${list}]) (from 'otel-nest') to its spanProcessors.`
  );
}

export function foreignProviderWithoutContextManager(): string {
  return (
    `${MESSAGE_PREFIX} your own tracer provider is registered but no context manager is, so spans will not ` +
    'nest and context is lost across await. Register one, e.g. provider.register() or ' +
    'context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable()).'
  );
}

export function propagatorAlreadyRegistered(): string {
  return (
    `${MESSAGE_PREFIX} a global propagator was already registered by someone else and is kept; the "propagators" ` +
    'of otel-nest are not used. Register only one propagator per process.'
  );
}

export function disabledByOption(): string {
  return '{ disabled: true }';
}

export function disabledByEnv(): string {
  return 'OTEL_SDK_DISABLED=true';
}

/** Describes the parts of a provider otel-nest did not create (the application's own SDK). */
export const FOREIGN_SDK_DESCRIPTION = "set by the application's own SDK";

export function baggageKeysIgnored(keys: unknown): string {
  return (
    `${MESSAGE_PREFIX} BaggageAttributesSpanProcessor takes an array of non-empty baggage keys, got ` +
    `${describeValue(keys)}; the other values are ignored. Use e.g. ['tenant.id', 'user.id'].`
  );
}

export function baggageCopyFailed(): string {
  return `${MESSAGE_PREFIX} BaggageAttributesSpanProcessor could not copy baggage onto a span; the span goes on without it.`;
}

export function sdkFlushFailed(): string {
  return `${MESSAGE_PREFIX} flushing spans failed; some spans may not have been exported.`;
}

export function sdkShutdownFailed(): string {
  return `${MESSAGE_PREFIX} shutting the OpenTelemetry SDK down failed; some spans may not have been exported.`;
}

export function preloadFailed(): string {
  return (
    `${MESSAGE_PREFIX} otel-nest/register could not start the OpenTelemetry SDK; the application runs without ` +
    'tracing. Check the OTEL_* environment variables.'
  );
}

// ---------------------------------------------------------------------------------------------
// Runtime problems of the tracing core (sdk, http, decorators, propagation, utils): logged through
// `diag`, and the request goes on
// ---------------------------------------------------------------------------------------------

export function tracedTransportsNotListed(): string {
  return `${MESSAGE_PREFIX} could not list the traced transports for the startup summary.`;
}

export function headerValueNotSendable(key: string): string {
  return `${MESSAGE_PREFIX} not sending the "${key}" header: its value is not a valid header value.`;
}

export function headerWriteFailed(key: string): string {
  return `${MESSAGE_PREFIX} could not write the "${key}" header; the message goes out without it.`;
}

/** `what`: `request` (a propagator of ours called by anyone) or `message` (our own inject). */
export function propagatorInjectFailed(what: 'request' | 'message'): string {
  return `${MESSAGE_PREFIX} the propagator failed to write trace context; the ${what} goes out without it.`;
}

export function mqttReplyNotRead(topic: string): string {
  return `${MESSAGE_PREFIX} a message on the MQTT reply topic ${JSON.stringify(topic.slice(0, 200))} could not be read (not a Nest reply); it is ignored.`;
}

export function userHookFailed(name: string): string {
  return `${MESSAGE_PREFIX} the ${name} threw; it is ignored and the request goes on.`;
}

export function inboundBaggageTrimmed(channel: string, received: number, kept: number): string {
  return `${MESSAGE_PREFIX} inbound baggage through ${channel}: kept ${kept} of ${received} members (the baggage policy).`;
}

export function propagatorExtractFailed(): string {
  return `${MESSAGE_PREFIX} the propagator failed to read trace context; starting a new trace.`;
}

export function httpServerSpanStartFailed(): string {
  return `${MESSAGE_PREFIX} could not start the HTTP server span; the request goes on untraced.`;
}

export function httpRouteNotRecorded(): string {
  return `${MESSAGE_PREFIX} could not record the HTTP route.`;
}

export function ruleSamplerFailed(): string {
  return `${MESSAGE_PREFIX} the rule sampler's default sampler threw; the span follows its parent (sampled when it has none).`;
}

export function httpRouteTemplatesFailed(): string {
  return `${MESSAGE_PREFIX} could not read the application's route templates; HTTP spans get their route when the handler runs, after the sampling decision.`;
}

export function httpServerSpanEndFailed(): string {
  return `${MESSAGE_PREFIX} could not complete the HTTP server span.`;
}

export function fetchAlreadyInstrumented(): string {
  return `${MESSAGE_PREFIX} fetch is already instrumented by another subscriber; not adding a second one.`;
}

export function axiosSpanStartFailed(): string {
  return `${MESSAGE_PREFIX} could not start the axios CLIENT span; the request goes on untraced.`;
}

export function httpServiceNotInstrumented(): string {
  return `${MESSAGE_PREFIX} could not instrument HttpService instances.`;
}

/** Thrown (as a TypeError) when the application's classes are declared. */
export function tracedNotAMethod(qualifiedName: string): string {
  return (
    `${MESSAGE_PREFIX} @Traced() can only decorate methods and classes, and ${qualifiedName} is not a method. ` +
    'Move @Traced to a method, or trace the code with TraceService.withSpan().'
  );
}

export function tracedSpanStartFailed(qualifiedName: string): string {
  return `${MESSAGE_PREFIX} @Traced could not start a span for ${qualifiedName}; it runs untraced.`;
}

/** `what`: the option whose function threw (`attributes`, `links`, ...). */
export function tracedOptionThrew(what: string, qualifiedName: string): string {
  return `${MESSAGE_PREFIX} the @Traced ${what} function of ${qualifiedName} threw; the span starts without them.`;
}

/** `what`: the callback that threw, e.g. `a span callback`. */
export function callbackThrewIgnored(what: string): string {
  return `${MESSAGE_PREFIX} ${what} threw and was ignored.`;
}

// ---------------------------------------------------------------------------------------------
// Export health: one line when an outage starts, one when spans flow again (export-health.ts)
// ---------------------------------------------------------------------------------------------

/** What one outage (or queue overflow) cost, for the line that ends it. */
export interface ExportEpisodeReport {
  durationMs: number;
  failedExports: number;
  /** Spans of the failed exports, dropped with them. */
  spansInFailedExports: number;
  /** Spans refused while the queue held maxQueueSize. */
  queueFullDrops: number;
  maxQueueSize: number | undefined;
  /** Why the first export failed; undefined when only the queue overflowed. */
  reason: string | undefined;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

function plural(count: number, one: string, many = `${one}s`): string {
  return `${count} ${count === 1 ? one : many}`;
}

/** A plain `forceFlush()` stopped waiting; the exports go on in the background. */
export function sdkFlushTimedOut(waitedMs: number, pendingSpans: number): string {
  return (
    `${MESSAGE_PREFIX} flushing spans did not finish within ${waitedMs} ms (the collector is slow or not answering); ` +
    `${plural(pendingSpans, 'span')} still being exported in the background.`
  );
}

function droppedBreakdown(report: ExportEpisodeReport): string {
  const total = report.spansInFailedExports + report.queueFullDrops;
  const queue = report.maxQueueSize !== undefined ? ` at batch.maxQueueSize ${report.maxQueueSize}` : '';
  return (
    `${plural(total, 'span')} dropped (${report.spansInFailedExports} in the failed exports, ` +
    `${report.queueFullDrops} because the queue was full${queue})`
  );
}

/** The first export of an outage failed. */
export function exportFailing(target: string, reason: string): string {
  return (
    `${MESSAGE_PREFIX} exporting spans to ${target} failed (${reason}). Until an export succeeds, spans that cannot ` +
    'be sent are dropped and counted, and the application runs on unaffected; one more line follows when exports ' +
    'work again. Check that the collector is running and reachable from this process.'
  );
}

/** Exports succeed, but spans end faster than they are exported and the queue overflows. */
export function exportOverloaded(target: string, maxQueueSize: number): string {
  return (
    `${MESSAGE_PREFIX} spans end faster than they are exported to ${target}: the queue is full ` +
    `(batch.maxQueueSize ${maxQueueSize}) and new spans are dropped and counted until it has room again. ` +
    'Raise batch.maxQueueSize or batch.maxExportBatchSize, or sample fewer traces.'
  );
}

/** The outage is over: an export succeeded and the queue had room meanwhile. */
export function exportResumed(target: string, report: ExportEpisodeReport): string {
  return (
    `${MESSAGE_PREFIX} exporting spans to ${target} works again after ${seconds(report.durationMs)}: ` +
    `${plural(report.failedExports, 'export')} failed and ${droppedBreakdown(report)}.`
  );
}

/** The queue overflow is over, and no export failed during it. */
export function exportOverloadCleared(target: string, report: ExportEpisodeReport): string {
  return (
    `${MESSAGE_PREFIX} the span queue for ${target} has room again after ${seconds(report.durationMs)}: ` +
    `${plural(report.queueFullDrops, 'span')} dropped because it was full` +
    `${report.maxQueueSize !== undefined ? ` (batch.maxQueueSize ${report.maxQueueSize})` : ''}.`
  );
}

/** Shutdown stopped waiting for the collector, or exports were failing when it began. */
export function exportStateAtShutdown(target: string, lost: number, waitedMs: number, episode: ExportEpisodeReport | undefined): string {
  const parts: string[] = [];
  if (lost > 0) {
    parts.push(
      `${plural(lost, 'span')} not exported to ${target} within ${waitedMs} ms ${lost === 1 ? 'is' : 'are'} dropped; ` +
        'otel-nest stopped waiting for the collector so that the application can exit',
    );
  }
  if (episode !== undefined && episode.failedExports + episode.queueFullDrops > 0) {
    const why = episode.reason !== undefined ? ` (${episode.reason})` : '';
    parts.push(
      `${lost > 0 ? 'exports had been failing' : `exports to ${target} had been failing`} for ${seconds(episode.durationMs)}${why}: ` +
        `${plural(episode.failedExports, 'export')} failed and ${droppedBreakdown(episode)}`,
    );
  }
  return `${MESSAGE_PREFIX} shutting down: ${parts.join('; ')}.`;
}

/** The parts of the one startup summary of an application (sdk/config/summary.ts). */
export interface StartupSummaryParts {
  serviceName: string;
  /**
   * `started`: by this application's OtelModule; `shared`: with an earlier OtelModule or the
   * preload; `foreign`: the application's own SDK; `disabled`: tracing is off.
   */
  sdk: 'started' | 'shared' | 'foreign' | 'disabled';
  /** e.g. `OTEL_SDK_DISABLED=true`. */
  disabledReason: string | undefined;
  exporter: string;
  sampler: string;
  propagators: string;
  /** `off` or `on (custom)`; undefined for the default (on, built-in rules). */
  redaction?: string;
  /** Where the metrics go (`otlp http://…/v1/metrics every 60 s`); undefined when they are off. */
  metrics?: string;
  /** What this application traces: `HTTP server (express)`, `fetch`, `NATS client`, ... */
  traced: readonly string[];
  /** What it leaves to other instrumentations that already trace it. */
  tracedByOthers: readonly string[];
}

const SDK_ORIGIN: Readonly<Record<Exclude<StartupSummaryParts['sdk'], 'disabled'>, string>> = {
  started: 'SDK started by OtelModule',
  shared: 'SDK shared with an earlier OtelModule/otel-nest/register in this process',
  foreign: "the application's own SDK",
};

/**
 * `otel-nest: Tracing service "orders" (SDK started by OtelModule): exporter otlp http://localhost:4318/v1/traces,
 * sampler ParentBased(AlwaysOn), propagators tracecontext,baggage; traced: fetch, HTTP server (express).`
 */
export function startupSummary(parts: StartupSummaryParts): string {
  const traced = parts.traced.length > 0 ? parts.traced.join(', ') : 'nothing automatically';
  if (parts.sdk === 'disabled') {
    return `${MESSAGE_PREFIX} Tracing is OFF (${parts.disabledReason ?? 'SDK disabled'}); traced if enabled: ${traced}.`;
  }
  const byOthers =
    parts.tracedByOthers.length > 0 ? `; already traced by other instrumentations: ${parts.tracedByOthers.join(', ')}` : '';
  return (
    `${MESSAGE_PREFIX} Tracing service "${parts.serviceName}" (${SDK_ORIGIN[parts.sdk]}): exporter ${parts.exporter}, ` +
    `sampler ${parts.sampler}, propagators ${parts.propagators}${parts.redaction !== undefined ? `, redaction ${parts.redaction}` : ''}; traced: ${traced}${byOthers}` +
    `${parts.metrics !== undefined ? `; metrics: ${parts.metrics}` : ''}.`
  );
}

// ---------------------------------------------------------------------------------------------
// Runtime problems of the traced transports (lib/transports): logged through `diag`, and the
// message goes on, untraced or without trace headers
// ---------------------------------------------------------------------------------------------

/** The transports as users know them, in the messages below. */
export type TransportName = 'NATS' | 'RabbitMQ' | 'Kafka' | 'Redis' | 'TCP' | 'MQTT';

export function consumerSpanStartFailed(): string {
  return `${MESSAGE_PREFIX} could not start the CONSUMER span; the message is handled untraced.`;
}

export function consumerSpanEndFailed(): string {
  return `${MESSAGE_PREFIX} could not end the CONSUMER span.`;
}

export function producerSpanStartFailed(transport: TransportName): string {
  return `${MESSAGE_PREFIX} could not start the ${transport} PRODUCER span; the message goes out untraced.`;
}

export function producerSpanNotCompleted(): string {
  return `${MESSAGE_PREFIX} could not complete a PRODUCER span.`;
}

export function messageContextNotAdded(transport: TransportName): string {
  return `${MESSAGE_PREFIX} could not add trace context to a ${transport} message; it goes out without it.`;
}

export function replyContextNotAdded(transport: TransportName): string {
  return `${MESSAGE_PREFIX} could not add trace context to a ${transport} reply; it goes out without it.`;
}

export function replyContextNotKept(): string {
  return `${MESSAGE_PREFIX} could not keep the trace context for a RabbitMQ reply; it goes out without trace headers.`;
}

export function rmqConnectionNotWatched(): string {
  return `${MESSAGE_PREFIX} could not watch the RabbitMQ connection; requests in flight when it drops keep their spans open until they settle.`;
}

export function natsHeaderNotWritten(key: string): string {
  return `${MESSAGE_PREFIX} could not write the NATS header "${key}"; the message goes out without it.`;
}

export function natsDriverMissing(): string {
  return `${MESSAGE_PREFIX} neither @nats-io/transport-node nor nats could be loaded; NATS messages go out without trace context. Install the driver your Nest version uses.`;
}

export function natsHeadersNotCreated(): string {
  return `${MESSAGE_PREFIX} could not create NATS headers; the message goes out without trace context.`;
}

export function kafkaRecordNotRead(): string {
  return `${MESSAGE_PREFIX} could not read a Kafka record for tracing; it is handled untraced.`;
}

export function kafkaAckNotRead(): string {
  return `${MESSAGE_PREFIX} could not read a Kafka acknowledgement; the PRODUCER span goes without partition and offset.`;
}

/**
 * `OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN` asks for exceptions as log records, which otel-nest
 * cannot emit (it has no logs SDK). `keepsEvents`: `logs/dup` keeps the span events, `logs` drops them.
 */
export function exceptionLogsUnavailable(value: string, keepsEvents: boolean): string {
  const events = keepsEvents ? 'still records them as span events' : 'records no exception events on spans';
  return `${MESSAGE_PREFIX} OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN=${value} asks for exceptions as log records, which otel-nest does not emit (it has no logs SDK); it ${events}. Failed spans keep status ERROR and error.type either way; log the error with your logger to get a log record.`;
}

// ---------------------------------------------------------------------------------------------
// Runtime problems of the traced gRPC transport (lib/transports/grpc): logged through `diag`, and
// the call goes on, untraced or without trace metadata
// ---------------------------------------------------------------------------------------------

export function grpcDriverMissing(): string {
  return `${MESSAGE_PREFIX} @grpc/grpc-js could not be loaded; gRPC calls are not traced. Install @grpc/grpc-js (1.10 or later), which Nest's gRPC transport needs too.`;
}

export function grpcServerInterceptorsUnsupported(): string {
  return `${MESSAGE_PREFIX} the installed @grpc/grpc-js has no server interceptors (added in 1.10); gRPC server calls are not traced. Upgrade @grpc/grpc-js to 1.10 or later.`;
}

export function grpcClientNotReady(): string {
  return `${MESSAGE_PREFIX} a gRPC call started before @grpc/grpc-js was loaded for tracing; it goes out untraced. Calls made after the application has started are traced.`;
}

export function grpcSpanStartFailed(kind: 'CLIENT' | 'SERVER'): string {
  return `${MESSAGE_PREFIX} could not start the gRPC ${kind} span; the call goes on untraced.`;
}

export function grpcSpanEndFailed(kind: 'CLIENT' | 'SERVER'): string {
  return `${MESSAGE_PREFIX} could not end the gRPC ${kind} span.`;
}

export function tcpSpanStartFailed(kind: 'CLIENT' | 'SERVER'): string {
  return `${MESSAGE_PREFIX} could not start the TCP ${kind} span; the request is handled untraced.`;
}

export function tcpSpanEndFailed(kind: 'CLIENT' | 'SERVER'): string {
  return `${MESSAGE_PREFIX} could not end a TCP ${kind} span.`;
}

export function grpcMetadataNotWritten(key: string): string {
  return `${MESSAGE_PREFIX} could not write the gRPC metadata key "${key}"; the call goes on without it.`;
}

// ---------------------------------------------------------------------------------------------
// Runtime problems of the interceptor, the saga entry (otel-nest/saga) and the trace viewer
// (otel-nest/devtools): logged through `diag`; the work goes on
// ---------------------------------------------------------------------------------------------

export function handlerNotNamed(): string {
  return `${MESSAGE_PREFIX} could not name the handler on its span.`;
}

export function sagaSpanNotStarted(name: string): string {
  return `${MESSAGE_PREFIX} could not start span "${name}"; the work runs untraced.`;
}

export function sagaBaggageNotSet(): string {
  return `${MESSAGE_PREFIX} could not set saga baggage; remote spans will not carry it.`;
}

export function retryIfThrew(): string {
  return `${MESSAGE_PREFIX} a retryIf function threw; the failed attempt is not retried.`;
}

export function retryBackoffThrew(): string {
  return `${MESSAGE_PREFIX} a retry backoff function threw; the retry waits delayMs.`;
}

export function viewerRequestFailed(): string {
  return `${MESSAGE_PREFIX} trace viewer: a request failed.`;
}

// ---------------------------------------------------------------------------------------------
// Redaction and capture (lib/redaction, lib/http/http-capture.ts, lib/transports/shared/message-capture.ts)
// ---------------------------------------------------------------------------------------------

export function redactionFailed(): string {
  return `${MESSAGE_PREFIX} could not redact a span before export; it is exported as it is.`;
}

export function captureFailed(what: string): string {
  return `${MESSAGE_PREFIX} could not capture ${what}; the span goes on without it.`;
}

export function foreignProviderRedaction(): string {
  return (
    `${MESSAGE_PREFIX} the application's own tracer provider is used, so otel-nest's redaction (on by default) ` +
    'does not apply to it. Add `new RedactionSpanProcessor()` to its span processors, before the one that exports.'
  );
}

// ---------------------------------------------------------------------------------------------
// Log correlation and the request-id bridge (lib/logging, lib/propagation/request-id.propagator.ts)
// ---------------------------------------------------------------------------------------------

export function requestIdNotRecorded(): string {
  return `${MESSAGE_PREFIX} RequestIdSpanProcessor could not record the request id on a span; the span goes on without it.`;
}

export function logCorrelationFailed(): string {
  return `${MESSAGE_PREFIX} could not read the trace ids for a log line; it is written without them.`;
}

// ---------------------------------------------------------------------------------------------
// Metrics (lib/metrics, lib/sdk/config/resolve-metrics.ts)
// ---------------------------------------------------------------------------------------------

export function metricsTimeoutAboveInterval(timeout: number, interval: number): string {
  return (
    `${MESSAGE_PREFIX} "metrics.exportTimeoutMillis" (${timeout}) must not be larger than "metrics.interval" (${interval}). ` +
    `Use e.g. { metrics: { interval: ${Math.max(timeout, interval)}, exportTimeoutMillis: ${Math.min(timeout, interval)} } }.`
  );
}

export function metricExporterWithoutMethods(got: unknown): string {
  return (
    `${MESSAGE_PREFIX} "metrics.exporter" has an export() method but not forceFlush() and shutdown(), got ${describeValue(got)}. ` +
    'A PushMetricExporter needs all three (from @opentelemetry/sdk-metrics).'
  );
}

export function envUnsupportedMetricsExporters(raw: string, unsupported: readonly string[], used: string): string {
  return (
    `${MESSAGE_PREFIX} OTEL_METRICS_EXPORTER=${JSON.stringify(raw)}: ${quoteList(unsupported)} ` +
    `${unsupported.length === 1 ? 'is' : 'are'} not supported by otel-nest (supported: otlp, prometheus, console, none); ` +
    `"${used}" is used. To export elsewhere, pass a PushMetricExporter as { metrics: { exporter } }.`
  );
}

export function envSeveralMetricsExporters(raw: string, used: string): string {
  return (
    `${MESSAGE_PREFIX} OTEL_METRICS_EXPORTER=${JSON.stringify(raw)} lists several exporters; otel-nest uses one, "${used}". ` +
    'To export to several, pass your own MeterProvider as { metrics: { meterProvider } }.'
  );
}

export function envInvalidPort(name: string, raw: string, used: number): string {
  return `${MESSAGE_PREFIX} ${name}=${JSON.stringify(raw)} is not a port (1 to 65535); it is ignored and ${used} is used.`;
}

export function prometheusExporterMissing(): string {
  return (
    `${MESSAGE_PREFIX} metrics exporter 'prometheus' needs the optional peer @opentelemetry/exporter-prometheus, ` +
    'which is not installed. Run `npm install @opentelemetry/exporter-prometheus`, or use { metrics: { exporter: \'otlp\' } }.'
  );
}

export function prometheusServerFailed(url: string): string {
  return `${MESSAGE_PREFIX} the Prometheus scrape endpoint could not start at ${url}; metrics are recorded but not served. Choose another { metrics: { exporter: { prometheus: { port } } } }.`;
}

export function metricsStartFailed(): string {
  return `${MESSAGE_PREFIX} could not start metrics; the application runs without them.`;
}

export function metricsFlushFailed(): string {
  return `${MESSAGE_PREFIX} could not export the last metrics at shutdown.`;
}

export function metricsRecordFailed(): string {
  return `${MESSAGE_PREFIX} could not record a metric; the request goes on.`;
}

export function metricsReusedWithDifferentOptions(running: string): string {
  return (
    `${MESSAGE_PREFIX} metrics already run in this process (${running}), started by an earlier OtelModule or otel-nest/register; ` +
    'the "metrics" options of this module do not change them.'
  );
}

// Guard, pipe, interceptor and filter spans (`enhancerSpans`, lib/enhancers/)

/** A wrong `enhancerSpans` option. */
export function invalidEnhancerSpansOption(path: string, expected: string, example: string, got: unknown): string {
  return `${MESSAGE_PREFIX} "${path}" must be ${expected}, got ${describeValue(got)}. Use e.g. ${example}.`;
}

/** Warned at bootstrap: the option is on but Nest never handed this application's instances to `otelInstrument()`. */
export function enhancerSpansWithoutInstrument(): string {
  return (
    `${MESSAGE_PREFIX} "enhancerSpans" is on, but this application was not created with otelInstrument(), so its guards, ` +
    'pipes, interceptors and filters get no spans. Pass it to Nest: NestFactory.create(AppModule, { instrument: otelInstrument() }) ' +
    '(or createMicroservice). Test.createTestingModule() does not hand the instances it creates to it: in tests, wrap the ' +
    'enhancers you want to see with withEnhancerSpans(), or create the application with NestFactory.'
  );
}

export function enhancerSpanFailed(): string {
  return `${MESSAGE_PREFIX} could not record a guard, pipe, interceptor or filter span; the enhancer ran as usual.`;
}

export function enhancerNotWrapped(): string {
  return `${MESSAGE_PREFIX} could not inspect an instance for enhancer spans; it is used as created.`;
}
