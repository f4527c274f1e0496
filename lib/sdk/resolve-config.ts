import type { Attributes, AttributeValue, TextMapPropagator } from '@opentelemetry/api';
import { defaultServiceName } from '@opentelemetry/resources';
import type { Sampler, SpanExporter, SpanLimits, SpanProcessor } from '@opentelemetry/sdk-trace';
import type {
  BatchOptions,
  OtelModuleOptions,
  PropagatorName,
  SamplerName,
} from '../interfaces/otel-module-options.interface.js';
import {
  OtelConfigError,
  batchSizeAboveQueueSize,
  envBatchSizeAboveQueueSize,
  envInvalidBoolean,
  envInvalidHeader,
  envInvalidInteger,
  envInvalidResourceAttributes,
  envInvalidSamplerArg,
  envInvalidUrl,
  envPropagatorNoneCombined,
  envSeveralExporters,
  envUnknownSampler,
  envUnsupportedExporters,
  envUnsupportedPropagators,
  envUnsupportedProtocol,
  disabledByEnv,
  disabledByOption,
  exporterWithoutShutdown,
  invalidOption,
  propagatorNoneCombined,
  sdkSummary,
  unknownOptions,
  type OptionHintKey,
} from '../otel.messages.js';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '../semconv.js';

export { OtelConfigError };

/** A propagator that actually propagates (`'none'` resolves to an empty list). */
export type KnownPropagatorName = Exclude<PropagatorName, 'none'>;

export type ResolvedExporter =
  | {
      readonly kind: 'otlp';
      /** Full traces URL. */
      readonly url: string;
      readonly headers: Readonly<Record<string, string>>;
      readonly timeoutMillis: number;
    }
  | { readonly kind: 'console' }
  | { readonly kind: 'none' }
  | { readonly kind: 'instance'; readonly exporter: SpanExporter };

export type ResolvedSampler =
  /** `ratio` is set for the two `*traceidratio` names only. */
  | { readonly kind: 'named'; readonly name: SamplerName; readonly ratio?: number }
  | { readonly kind: 'instance'; readonly sampler: Sampler };

export type ResolvedPropagators =
  /** In extraction order; empty means "propagate nothing". */
  | { readonly kind: 'named'; readonly names: readonly KnownPropagatorName[] }
  | { readonly kind: 'instance'; readonly propagator: TextMapPropagator };

/** Options that configure the SDK itself: they cannot change a provider that is already running. */
export type SdkOptionName =
  | 'serviceName'
  | 'serviceVersion'
  | 'resourceAttributes'
  | 'exporter'
  | 'batch'
  | 'sampler'
  | 'spanLimits'
  | 'propagators'
  | 'spanProcessors';

/** The pieces of the one-line startup summary. */
export interface SdkConfigSummary {
  /** `otlp`, `console`, `none`, or the class name of a given SpanExporter. */
  readonly exporter: string;
  /** The OTLP traces URL; `stdout` for console; `-` otherwise. */
  readonly endpoint: string;
  /** e.g. `ParentBased(TraceIdRatio{0.25})`, or the `toString()` of a given Sampler. */
  readonly sampler: string;
  /** e.g. `['tracecontext', 'baggage']`; `[]` for none; the class name of a given propagator. */
  readonly propagators: readonly string[];
}

/** The fully resolved SDK configuration: explicit options over `OTEL_*` variables over defaults. */
export interface ResolvedSdkConfig {
  /** `OTEL_SDK_DISABLED` / `disabled`: register nothing. */
  readonly disabled: boolean;
  /** What turned the SDK off (`{ disabled: true }` or `OTEL_SDK_DISABLED=true`); undefined when on. */
  readonly disabledReason: string | undefined;
  /** `logSummary` option: log the startup summary and the warnings. Default true. */
  readonly logSummary: boolean;
  readonly serviceName: string;
  readonly serviceVersion: string | undefined;
  /** Resource attributes other than `service.name` / `service.version` (explicit over env). */
  readonly resourceAttributes: Readonly<Attributes>;
  readonly exporter: ResolvedExporter;
  /** `false`: SimpleSpanProcessor. */
  readonly batch: Readonly<Required<BatchOptions>> | false;
  readonly sampler: ResolvedSampler;
  readonly spanLimits: Readonly<Required<SpanLimits>>;
  readonly propagators: ResolvedPropagators;
  readonly spanProcessors: readonly SpanProcessor[];
  readonly baggageToAttributes: readonly string[];
  /** SDK-level options the user gave explicitly (used to warn when they cannot apply). */
  readonly explicitSdkOptions: readonly SdkOptionName[];
  /** Problems found in `OTEL_*` variables; reported by the caller, never thrown. */
  readonly warnings: readonly string[];
  readonly summary: SdkConfigSummary;
}

/** Defaults of the OpenTelemetry SDK environment-variable specification. */
export const SDK_DEFAULTS = {
  otlpTracesUrl: 'http://localhost:4318/v1/traces',
  otlpTimeoutMillis: 10_000,
  batch: { maxQueueSize: 2048, maxExportBatchSize: 512, scheduledDelayMillis: 5000, exportTimeoutMillis: 30_000 },
  spanLimits: {
    attributeValueLengthLimit: Infinity,
    attributeCountLimit: 128,
    eventCountLimit: 128,
    linkCountLimit: 128,
    attributePerEventCountLimit: 128,
    attributePerLinkCountLimit: 128,
  },
  sampler: 'parentbased_always_on',
  samplerRatio: 1,
  propagators: ['tracecontext', 'baggage'],
} as const satisfies {
  batch: Required<BatchOptions>;
  spanLimits: Required<SpanLimits>;
  sampler: SamplerName;
  propagators: readonly KnownPropagatorName[];
  [key: string]: unknown;
};

// Typed as a Record so that adding an option to OtelModuleOptions fails to compile until it is
// listed here; otherwise the new option would be rejected at runtime as unknown.
const KNOWN_OPTIONS: Record<keyof OtelModuleOptions, true> = {
  serviceName: true,
  serviceVersion: true,
  resourceAttributes: true,
  exporter: true,
  batch: true,
  sampler: true,
  spanLimits: true,
  propagators: true,
  spanProcessors: true,
  baggageToAttributes: true,
  http: true,
  httpClient: true,
  logSummary: true,
  disabled: true,
};
const KNOWN_OTLP_OPTIONS = ['url', 'headers', 'timeoutMillis'] as const;
const KNOWN_BATCH_OPTIONS = ['maxQueueSize', 'maxExportBatchSize', 'scheduledDelayMillis', 'exportTimeoutMillis'] as const;
const KNOWN_SPAN_LIMITS = Object.keys(SDK_DEFAULTS.spanLimits) as Array<keyof SpanLimits>;
const KNOWN_SAMPLER_OBJECT_OPTIONS = ['ratio', 'parentBased'] as const;
const SDK_OPTION_NAMES: readonly SdkOptionName[] = [
  'serviceName',
  'serviceVersion',
  'resourceAttributes',
  'exporter',
  'batch',
  'sampler',
  'spanLimits',
  'propagators',
  'spanProcessors',
];

const SAMPLER_NAMES: readonly SamplerName[] = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
];
const PROPAGATOR_NAMES: readonly PropagatorName[] = ['tracecontext', 'baggage', 'b3', 'b3multi', 'none'];
const EXPORTER_NAMES = ['otlp', 'console', 'none'] as const;
type ExporterName = (typeof EXPORTER_NAMES)[number];

/** Words people type for an option that has another name. */
const OPTION_ALIASES: Readonly<Record<string, string>> = {
  name: 'serviceName',
  service: 'serviceName',
  version: 'serviceVersion',
  resource: 'resourceAttributes',
  attributes: 'resourceAttributes',
  propagator: 'propagators',
  processors: 'spanProcessors',
  endpoint: 'url',
  timeout: 'timeoutMillis',
};

/**
 * Resolves the SDK configuration. Explicit options win over the standard `OTEL_*` variables
 * (https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/), which win over
 * the defaults. Wrong explicit options throw {@link OtelConfigError}; problems in the environment are
 * returned in `warnings` and the variable falls back to its default.
 */
export function resolveSdkConfig(options: OtelModuleOptions, env: NodeJS.ProcessEnv = process.env): ResolvedSdkConfig {
  const opts = validateOptions(options);
  const reader = new EnvReader(env);

  const envDisabled = reader.boolean('OTEL_SDK_DISABLED');
  const disabled = opts.disabled ?? envDisabled ?? false;
  const disabledReason = !disabled ? undefined : opts.disabled === true ? disabledByOption() : disabledByEnv();
  const resource = resolveResource(opts, reader);
  const exporter = resolveExporter(opts, reader);
  const batch = resolveBatch(opts, reader);
  const sampler = resolveSampler(opts, reader);
  const spanLimits = resolveSpanLimits(opts, reader);
  const propagators = resolvePropagators(opts, reader);
  const baggageToAttributes = [...new Set(opts.baggageToAttributes ?? [])];

  return {
    disabled,
    disabledReason,
    logSummary: opts.logSummary ?? true,
    ...resource,
    exporter,
    batch,
    sampler,
    spanLimits,
    propagators,
    spanProcessors: [...(opts.spanProcessors ?? [])],
    baggageToAttributes,
    explicitSdkOptions: SDK_OPTION_NAMES.filter((name) => opts[name] !== undefined),
    warnings: reader.warnings,
    summary: {
      exporter: describeExporter(exporter),
      endpoint: exporter.kind === 'otlp' ? exporter.url : exporter.kind === 'console' ? 'stdout' : '-',
      sampler: describeSampler(sampler),
      propagators:
        propagators.kind === 'named' ? [...propagators.names] : [instanceName(propagators.propagator, 'TextMapPropagator')],
    },
  };
}

/** The one-line startup summary of a resolved configuration. */
export function describeSdkConfig(config: ResolvedSdkConfig): string {
  return sdkSummary({
    serviceName: config.serviceName,
    serviceVersion: config.serviceVersion,
    disabled: config.disabled,
    disabledReason: config.disabledReason,
    ...config.summary,
  });
}

/** `ParentBased(TraceIdRatio{0.25})`, `AlwaysOn`, ... or the `toString()` of a given Sampler. */
export function describeSampler(sampler: ResolvedSampler): string {
  if (sampler.kind === 'instance') {
    const text = String(sampler.sampler.toString?.() ?? '');
    return text && text !== '[object Object]' ? text : instanceName(sampler.sampler, 'Sampler');
  }
  const ratio = `TraceIdRatio{${sampler.ratio ?? SDK_DEFAULTS.samplerRatio}}`;
  switch (sampler.name) {
    case 'always_on':
      return 'AlwaysOn';
    case 'always_off':
      return 'AlwaysOff';
    case 'traceidratio':
      return ratio;
    case 'parentbased_always_on':
      return 'ParentBased(AlwaysOn)';
    case 'parentbased_always_off':
      return 'ParentBased(AlwaysOff)';
    case 'parentbased_traceidratio':
      return `ParentBased(${ratio})`;
  }
}

function describeExporter(exporter: ResolvedExporter): string {
  return exporter.kind === 'instance' ? instanceName(exporter.exporter, 'SpanExporter') : exporter.kind;
}

function instanceName(value: object, fallback: string): string {
  const name = value.constructor?.name;
  return name && name !== 'Object' ? name : fallback;
}

// ---------------------------------------------------------------------------------------------
// Resolution
// ---------------------------------------------------------------------------------------------

function resolveResource(
  opts: OtelModuleOptions,
  reader: EnvReader,
): Pick<ResolvedSdkConfig, 'serviceName' | 'serviceVersion' | 'resourceAttributes'> {
  const envAttributes = reader.resourceAttributes();
  const explicitAttributes = opts.resourceAttributes ?? {};
  const serviceName =
    opts.serviceName ??
    (explicitAttributes[ATTR_SERVICE_NAME] as string | undefined) ??
    reader.string('OTEL_SERVICE_NAME') ??
    (envAttributes[ATTR_SERVICE_NAME] as string | undefined) ??
    defaultServiceName();
  const serviceVersion =
    opts.serviceVersion ??
    (explicitAttributes[ATTR_SERVICE_VERSION] as string | undefined) ??
    (envAttributes[ATTR_SERVICE_VERSION] as string | undefined);
  const resourceAttributes: Attributes = { ...envAttributes, ...explicitAttributes };
  delete resourceAttributes[ATTR_SERVICE_NAME];
  delete resourceAttributes[ATTR_SERVICE_VERSION];
  return { serviceName, serviceVersion, resourceAttributes };
}

function resolveExporter(opts: OtelModuleOptions, reader: EnvReader): ResolvedExporter {
  const option = opts.exporter;
  if (typeof option === 'object' && isSpanExporter(option)) {
    return { kind: 'instance', exporter: option };
  }
  const kind: ExporterName = typeof option === 'string' ? option : option !== undefined ? 'otlp' : reader.exporterName();
  if (kind !== 'otlp') {
    return { kind };
  }
  const explicit = typeof option === 'object' ? option : {};
  const protocolVar = reader.string('OTEL_EXPORTER_OTLP_TRACES_PROTOCOL')
    ? 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL'
    : 'OTEL_EXPORTER_OTLP_PROTOCOL';
  const protocol = reader.string(protocolVar)?.toLowerCase();
  if (protocol !== undefined && protocol !== 'http/json' && protocol !== 'http/protobuf') {
    reader.warn(envUnsupportedProtocol(protocolVar, protocol));
  }
  return {
    kind: 'otlp',
    url: explicit.url ?? reader.otlpTracesUrl(),
    // Per key: traces-specific variable over the generic one, explicit headers over both.
    headers: {
      ...reader.headers('OTEL_EXPORTER_OTLP_HEADERS'),
      ...reader.headers('OTEL_EXPORTER_OTLP_TRACES_HEADERS'),
      ...explicit.headers,
    },
    timeoutMillis:
      explicit.timeoutMillis ??
      reader.firstInteger(
        ['OTEL_EXPORTER_OTLP_TRACES_TIMEOUT', 'OTEL_EXPORTER_OTLP_TIMEOUT'],
        1,
        SDK_DEFAULTS.otlpTimeoutMillis,
      ),
  };
}

function resolveBatch(opts: OtelModuleOptions, reader: EnvReader): Required<BatchOptions> | false {
  if (opts.batch === false) {
    return false;
  }
  const explicit = opts.batch ?? {};
  const pick = (key: keyof BatchOptions, variable: string): number =>
    explicit[key] ?? reader.firstInteger([variable], 1, SDK_DEFAULTS.batch[key]);
  const batch = {
    maxQueueSize: pick('maxQueueSize', 'OTEL_BSP_MAX_QUEUE_SIZE'),
    maxExportBatchSize: pick('maxExportBatchSize', 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE'),
    scheduledDelayMillis: pick('scheduledDelayMillis', 'OTEL_BSP_SCHEDULE_DELAY'),
    exportTimeoutMillis: pick('exportTimeoutMillis', 'OTEL_BSP_EXPORT_TIMEOUT'),
  };
  if (batch.maxExportBatchSize > batch.maxQueueSize) {
    if (explicit.maxExportBatchSize !== undefined || explicit.maxQueueSize !== undefined) {
      throw new OtelConfigError(batchSizeAboveQueueSize(batch.maxExportBatchSize, batch.maxQueueSize));
    }
    reader.warn(envBatchSizeAboveQueueSize(batch.maxExportBatchSize, batch.maxQueueSize));
    batch.maxExportBatchSize = batch.maxQueueSize;
  }
  return batch;
}

function resolveSampler(opts: OtelModuleOptions, reader: EnvReader): ResolvedSampler {
  const option = opts.sampler;
  if (option !== undefined && typeof option === 'object' && isSampler(option)) {
    return { kind: 'instance', sampler: option };
  }
  if (option !== undefined && typeof option === 'object') {
    const name: SamplerName = option.parentBased === false ? 'traceidratio' : 'parentbased_traceidratio';
    return { kind: 'named', name, ratio: option.ratio };
  }
  const name = option ?? reader.samplerName();
  if (name !== 'traceidratio' && name !== 'parentbased_traceidratio') {
    return { kind: 'named', name };
  }
  // An explicit ratio sampler name still takes its ratio from OTEL_TRACES_SAMPLER_ARG.
  return { kind: 'named', name, ratio: reader.samplerRatio(name) };
}

function resolveSpanLimits(opts: OtelModuleOptions, reader: EnvReader): Required<SpanLimits> {
  const explicit = opts.spanLimits ?? {};
  // Model-specific variables win over the general ones, as the specification says.
  const pick = (key: keyof SpanLimits, ...variables: string[]): number =>
    explicit[key] ?? reader.firstInteger(variables, 0, SDK_DEFAULTS.spanLimits[key]);
  return {
    attributeValueLengthLimit: pick(
      'attributeValueLengthLimit',
      'OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT',
      'OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT',
    ),
    attributeCountLimit: pick('attributeCountLimit', 'OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT', 'OTEL_ATTRIBUTE_COUNT_LIMIT'),
    eventCountLimit: pick('eventCountLimit', 'OTEL_SPAN_EVENT_COUNT_LIMIT'),
    linkCountLimit: pick('linkCountLimit', 'OTEL_SPAN_LINK_COUNT_LIMIT'),
    attributePerEventCountLimit: pick(
      'attributePerEventCountLimit',
      'OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT',
      'OTEL_ATTRIBUTE_COUNT_LIMIT',
    ),
    attributePerLinkCountLimit: pick(
      'attributePerLinkCountLimit',
      'OTEL_LINK_ATTRIBUTE_COUNT_LIMIT',
      'OTEL_ATTRIBUTE_COUNT_LIMIT',
    ),
  };
}

function resolvePropagators(opts: OtelModuleOptions, reader: EnvReader): ResolvedPropagators {
  const option = opts.propagators;
  if (option !== undefined && !Array.isArray(option)) {
    return { kind: 'instance', propagator: option };
  }
  if (option !== undefined) {
    const names = [...new Set(option)].filter((n): n is KnownPropagatorName => n !== 'none');
    return { kind: 'named', names };
  }
  return { kind: 'named', names: reader.propagatorNames() };
}

// ---------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------

/** Reads `OTEL_*` variables; every problem becomes a warning and the variable counts as unset. */
class EnvReader {
  readonly warnings: string[] = [];

  constructor(private readonly env: NodeJS.ProcessEnv) {}

  warn(message: string): void {
    if (!this.warnings.includes(message)) {
      this.warnings.push(message);
    }
  }

  /** Trimmed value; empty counts as unset, as the specification asks. */
  string(name: string): string | undefined {
    const value = this.env[name]?.trim();
    return value ? value : undefined;
  }

  /** Comma-separated, lower-cased (enum values are case-insensitive), blanks dropped. */
  list(name: string): string[] | undefined {
    const raw = this.string(name);
    if (raw === undefined) {
      return undefined;
    }
    const values = raw
      .split(',')
      .map((v) => v.trim().toLowerCase())
      .filter((v) => v !== '');
    return values.length > 0 ? [...new Set(values)] : undefined;
  }

  boolean(name: string): boolean | undefined {
    const raw = this.string(name);
    if (raw === undefined) {
      return undefined;
    }
    const lower = raw.toLowerCase();
    if (lower !== 'true' && lower !== 'false') {
      this.warn(envInvalidBoolean(name, raw));
    }
    return lower === 'true';
  }

  /** An integer >= `minimum`, else a warning naming `fallback` (what is used instead). */
  integer(name: string, minimum: 0 | 1, fallback: string): number | undefined {
    const raw = this.string(name);
    if (raw === undefined) {
      return undefined;
    }
    const value = Number(raw);
    if (!Number.isSafeInteger(value) || value < minimum) {
      this.warn(envInvalidInteger(name, raw, minimum, fallback));
      return undefined;
    }
    return value;
  }

  /**
   * The first of `variables` (highest priority first) that holds a valid integer, else `fallback`.
   * Read from the lowest priority up, so a warning can name the value actually used instead.
   */
  firstInteger(variables: readonly string[], minimum: 0 | 1, fallback: number): number {
    return variables.reduceRight<number>(
      (used, variable) => this.integer(variable, minimum, String(used)) ?? used,
      fallback,
    );
  }

  exporterName(): ExporterName {
    const raw = this.string('OTEL_TRACES_EXPORTER') ?? '';
    const values = this.list('OTEL_TRACES_EXPORTER') ?? [];
    const supported = values.filter((v): v is ExporterName => (EXPORTER_NAMES as readonly string[]).includes(v));
    const unsupported = values.filter((v) => !supported.includes(v as ExporterName));
    const used = supported[0] ?? 'otlp';
    if (unsupported.length > 0) {
      this.warn(envUnsupportedExporters(raw, unsupported, used));
    }
    if (supported.length > 1) {
      this.warn(envSeveralExporters(raw, used));
    }
    return used;
  }

  otlpTracesUrl(): string {
    const tracesEndpoint = this.string('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
    const endpoint = this.string('OTEL_EXPORTER_OTLP_ENDPOINT');
    const baseUrl = endpoint !== undefined && isHttpUrl(endpoint) ? appendTracesPath(endpoint) : undefined;
    const fallback = baseUrl ?? SDK_DEFAULTS.otlpTracesUrl;
    if (tracesEndpoint !== undefined) {
      if (isHttpUrl(tracesEndpoint)) {
        return tracesEndpoint;
      }
      this.warn(envInvalidUrl('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', tracesEndpoint, fallback));
    }
    if (endpoint !== undefined && baseUrl === undefined) {
      this.warn(envInvalidUrl('OTEL_EXPORTER_OTLP_ENDPOINT', endpoint, SDK_DEFAULTS.otlpTracesUrl));
    }
    return fallback;
  }

  /** `k=v,k2=v2`, percent-decoded. A bad entry is skipped (the others still authenticate). */
  headers(name: string): Record<string, string> {
    const raw = this.string(name);
    const headers: Record<string, string> = {};
    if (raw === undefined) {
      return headers;
    }
    raw.split(',').forEach((entry, index) => {
      if (entry.trim() === '') {
        return;
      }
      // Split at the first '=' only: base64 credentials end in unencoded '=' padding.
      const at = entry.indexOf('=');
      const rawKey = at > 0 ? entry.slice(0, at).trim() : undefined;
      try {
        if (rawKey === undefined || rawKey === '') {
          throw new Error('no key');
        }
        headers[decodeURIComponent(rawKey)] = decodeURIComponent(entry.slice(at + 1).trim());
      } catch {
        this.warn(envInvalidHeader(name, index, rawKey));
      }
    });
    return headers;
  }

  /** `OTEL_RESOURCE_ATTRIBUTES`; on any error the whole value is discarded, as the spec asks. */
  resourceAttributes(): Attributes {
    const raw = this.string('OTEL_RESOURCE_ATTRIBUTES');
    const attributes: Attributes = {};
    if (raw === undefined) {
      return attributes;
    }
    for (const entry of raw.split(',')) {
      if (entry.trim() === '') {
        continue;
      }
      const parts = entry.split('=');
      const key = parts[0]?.trim() ?? '';
      let decodedKey: string;
      let decodedValue: string;
      try {
        if (parts.length !== 2 || key === '') {
          throw new Error('not key=value');
        }
        decodedKey = decodeURIComponent(key);
        decodedValue = decodeURIComponent((parts[1] ?? '').trim());
      } catch {
        this.warn(envInvalidResourceAttributes(entry.trim()));
        return {};
      }
      attributes[decodedKey] = decodedValue;
    }
    return attributes;
  }

  samplerName(): SamplerName {
    const raw = this.string('OTEL_TRACES_SAMPLER');
    if (raw === undefined) {
      return SDK_DEFAULTS.sampler;
    }
    const name = raw.toLowerCase();
    if ((SAMPLER_NAMES as readonly string[]).includes(name)) {
      return name as SamplerName;
    }
    this.warn(envUnknownSampler(raw, SAMPLER_NAMES, SDK_DEFAULTS.sampler));
    return SDK_DEFAULTS.sampler;
  }

  samplerRatio(sampler: SamplerName): number {
    const raw = this.string('OTEL_TRACES_SAMPLER_ARG');
    if (raw === undefined) {
      return SDK_DEFAULTS.samplerRatio;
    }
    const ratio = Number(raw);
    if (!Number.isFinite(ratio) || ratio < 0 || ratio > 1) {
      this.warn(envInvalidSamplerArg(raw, sampler));
      return SDK_DEFAULTS.samplerRatio;
    }
    return ratio;
  }

  propagatorNames(): KnownPropagatorName[] {
    const values = this.list('OTEL_PROPAGATORS');
    if (values === undefined) {
      return [...SDK_DEFAULTS.propagators];
    }
    const raw = this.string('OTEL_PROPAGATORS') ?? '';
    // 'none' anywhere wins, as in the JavaScript SDK.
    if (values.includes('none')) {
      if (values.length > 1) {
        this.warn(envPropagatorNoneCombined(raw));
      }
      return [];
    }
    const known = values.filter((v): v is KnownPropagatorName => (PROPAGATOR_NAMES as readonly string[]).includes(v));
    const unknown = values.filter((v) => !known.includes(v as KnownPropagatorName));
    // Nothing usable left: the variable meant "propagate", so keep the default rather than nothing.
    const used = known.length > 0 ? known : [...SDK_DEFAULTS.propagators];
    if (unknown.length > 0) {
      this.warn(envUnsupportedPropagators(raw, unknown, used));
    }
    return used;
  }
}

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '';
  } catch {
    return false;
  }
}

/** `http://collector:4318` and `http://collector:4318/` both become `http://collector:4318/v1/traces`. */
function appendTracesPath(base: string): string {
  const url = new URL(base);
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/v1/traces`;
  return url.toString();
}

// ---------------------------------------------------------------------------------------------
// Validation of explicit options
// ---------------------------------------------------------------------------------------------

function fail(hint: OptionHintKey, path: string, got: unknown): never {
  throw new OtelConfigError(invalidOption(hint, path, got));
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function hasMethods(value: object, ...names: string[]): boolean {
  return names.every((name) => typeof (value as Record<string, unknown>)[name] === 'function');
}

function isSpanExporter(value: object): value is SpanExporter {
  return hasMethods(value, 'export');
}

function isSampler(value: object): value is Sampler {
  return hasMethods(value, 'shouldSample');
}

function isNonEmptyString(value: unknown): value is string {
  return typeof value === 'string' && value.trim() !== '';
}

function isPositiveInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0;
}

function isAttributeValue(value: unknown): value is AttributeValue {
  const primitive = (v: unknown): boolean =>
    typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && !Number.isNaN(v));
  if (Array.isArray(value)) {
    // Homogeneous arrays only (null/undefined holes are allowed by the API).
    const types = new Set(value.filter((v) => v !== null && v !== undefined).map((v) => typeof v));
    return types.size <= 1 && value.every((v) => v === null || v === undefined || primitive(v));
  }
  return primitive(value);
}

/** Distance-2 typos, case slips and known aliases: `servicename` -> `serviceName`. */
function suggest(key: string, known: readonly string[]): string | undefined {
  const alias = OPTION_ALIASES[key];
  if (alias !== undefined && known.includes(alias)) {
    return alias;
  }
  const lower = key.toLowerCase();
  let best: { name: string; distance: number } | undefined;
  for (const name of known) {
    const distance = name.toLowerCase() === lower ? 0 : editDistance(lower, name.toLowerCase());
    if (distance <= 2 && (best === undefined || distance < best.distance)) {
      best = { name, distance };
    }
  }
  return best?.name;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + cost);
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

function checkKeys(value: Record<string, unknown>, known: readonly string[], where: string): void {
  const unknown = Object.keys(value).filter((key) => !known.includes(key));
  if (unknown.length === 0) {
    return;
  }
  const suggestions = new Map<string, string>();
  for (const key of unknown) {
    const guess = suggest(key, known);
    if (guess !== undefined) {
      suggestions.set(key, guess);
    }
  }
  throw new OtelConfigError(unknownOptions(where, unknown, known, suggestions));
}

/** Throws {@link OtelConfigError} for the first wrong explicit option. */
function validateOptions(options: OtelModuleOptions | undefined): OtelModuleOptions {
  if (options === undefined) {
    return {};
  }
  if (!isRecord(options)) {
    fail('options', 'options', options);
  }
  const o = options as Record<string, unknown>;
  checkKeys(o, Object.keys(KNOWN_OPTIONS), 'OtelModule.forRoot() options');

  if (o.serviceName !== undefined && !isNonEmptyString(o.serviceName)) {
    fail('serviceName', 'serviceName', o.serviceName);
  }
  if (o.serviceVersion !== undefined && !isNonEmptyString(o.serviceVersion)) {
    fail('serviceVersion', 'serviceVersion', o.serviceVersion);
  }
  validateResourceAttributes(o.resourceAttributes);
  validateExporter(o.exporter);
  validateBatch(o.batch);
  validateSampler(o.sampler);
  validateSpanLimits(o.spanLimits);
  validatePropagators(o.propagators);

  if (o.spanProcessors !== undefined) {
    if (!Array.isArray(o.spanProcessors)) {
      fail('spanProcessors', 'spanProcessors', o.spanProcessors);
    }
    o.spanProcessors.forEach((processor: unknown, i) => {
      if (!isRecord(processor) || !hasMethods(processor, 'onStart', 'onEnd', 'forceFlush', 'shutdown')) {
        fail('spanProcessors.*', `spanProcessors[${i}]`, processor);
      }
    });
  }
  if (o.baggageToAttributes !== undefined) {
    if (!Array.isArray(o.baggageToAttributes)) {
      fail('baggageToAttributes', 'baggageToAttributes', o.baggageToAttributes);
    }
    o.baggageToAttributes.forEach((key: unknown, i) => {
      if (!isNonEmptyString(key)) {
        fail('baggageToAttributes.*', `baggageToAttributes[${i}]`, key);
      }
    });
  }
  for (const key of ['http', 'httpClient'] as const) {
    if (o[key] !== undefined && typeof o[key] !== 'boolean' && !isRecord(o[key])) {
      fail(key, key, o[key]);
    }
  }
  for (const key of ['logSummary', 'disabled'] as const) {
    if (o[key] !== undefined && typeof o[key] !== 'boolean') {
      fail(key, key, o[key]);
    }
  }
  return options;
}

function validateResourceAttributes(value: unknown): void {
  if (value === undefined) {
    return;
  }
  if (!isRecord(value)) {
    fail('resourceAttributes', 'resourceAttributes', value);
  }
  for (const [key, attribute] of Object.entries(value)) {
    const path = `resourceAttributes['${key}']`;
    if (key === ATTR_SERVICE_NAME || key === ATTR_SERVICE_VERSION) {
      if (attribute !== undefined && !isNonEmptyString(attribute)) {
        fail('resourceAttributes.service.*', path, attribute);
      }
    } else if (attribute !== undefined && !isAttributeValue(attribute)) {
      fail('resourceAttributes.*', path, attribute);
    }
  }
}

function validateExporter(value: unknown): void {
  if (value === undefined) {
    return;
  }
  if (typeof value === 'string') {
    if (!(EXPORTER_NAMES as readonly string[]).includes(value)) {
      fail('exporter', 'exporter', value);
    }
    return;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    fail('exporter', 'exporter', value);
  }
  if (isSpanExporter(value)) {
    if (!hasMethods(value, 'shutdown')) {
      throw new OtelConfigError(exporterWithoutShutdown(value));
    }
    return;
  }
  const otlp = value as Record<string, unknown>;
  checkKeys(otlp, KNOWN_OTLP_OPTIONS, '"exporter"');
  if (otlp.url !== undefined && (typeof otlp.url !== 'string' || !isHttpUrl(otlp.url))) {
    fail('exporter.url', 'exporter.url', otlp.url);
  }
  if (otlp.headers !== undefined) {
    if (!isRecord(otlp.headers)) {
      fail('exporter.headers', 'exporter.headers', otlp.headers);
    }
    for (const [key, header] of Object.entries(otlp.headers)) {
      if (typeof header !== 'string') {
        fail('exporter.headers.*', `exporter.headers['${key}']`, header);
      }
    }
  }
  if (
    otlp.timeoutMillis !== undefined &&
    (typeof otlp.timeoutMillis !== 'number' || !Number.isFinite(otlp.timeoutMillis) || otlp.timeoutMillis <= 0)
  ) {
    fail('exporter.timeoutMillis', 'exporter.timeoutMillis', otlp.timeoutMillis);
  }
}

function validateBatch(value: unknown): void {
  if (value === undefined || value === false) {
    return;
  }
  if (!isRecord(value)) {
    fail('batch', 'batch', value);
  }
  checkKeys(value, KNOWN_BATCH_OPTIONS, '"batch"');
  for (const key of KNOWN_BATCH_OPTIONS) {
    if (value[key] !== undefined && !isPositiveInteger(value[key])) {
      fail('batch.*', `batch.${key}`, value[key]);
    }
  }
}

function validateSampler(value: unknown): void {
  if (value === undefined) {
    return;
  }
  if (typeof value === 'string') {
    if (!(SAMPLER_NAMES as readonly string[]).includes(value)) {
      fail('sampler', 'sampler', value);
    }
    return;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    fail('sampler', 'sampler', value);
  }
  if (isSampler(value)) {
    return;
  }
  const object = value as Record<string, unknown>;
  if (!('ratio' in object)) {
    fail('sampler', 'sampler', value);
  }
  checkKeys(object, KNOWN_SAMPLER_OBJECT_OPTIONS, '"sampler"');
  const ratio = object.ratio;
  if (typeof ratio !== 'number' || !Number.isFinite(ratio) || ratio < 0 || ratio > 1) {
    fail('sampler.ratio', 'sampler.ratio', ratio);
  }
  if (object.parentBased !== undefined && typeof object.parentBased !== 'boolean') {
    fail('sampler.parentBased', 'sampler.parentBased', object.parentBased);
  }
}

function validateSpanLimits(value: unknown): void {
  if (value === undefined) {
    return;
  }
  if (!isRecord(value)) {
    fail('spanLimits', 'spanLimits', value);
  }
  checkKeys(value, KNOWN_SPAN_LIMITS, '"spanLimits"');
  for (const key of KNOWN_SPAN_LIMITS) {
    const limit = value[key];
    const valid =
      typeof limit === 'number' && (limit === Infinity || (Number.isSafeInteger(limit) && limit >= 0));
    if (limit !== undefined && !valid) {
      fail('spanLimits.*', `spanLimits.${key}`, limit);
    }
  }
}

function validatePropagators(value: unknown): void {
  if (value === undefined) {
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((name: unknown, i) => {
      if (typeof name !== 'string' || !(PROPAGATOR_NAMES as readonly string[]).includes(name)) {
        fail('propagators.*', `propagators[${i}]`, name);
      }
    });
    if (value.includes('none') && value.some((name) => name !== 'none')) {
      throw new OtelConfigError(propagatorNoneCombined(value as string[]));
    }
    return;
  }
  if (!isRecord(value) || !hasMethods(value, 'inject', 'extract', 'fields')) {
    fail('propagators', 'propagators', value);
  }
}
