import type { Attributes, MeterProvider, TextMapPropagator } from '@opentelemetry/api';
import type { PushMetricExporter, ViewOptions } from '@opentelemetry/sdk-metrics';
import type { Sampler, SpanExporter, SpanLimits, SpanProcessor } from '@opentelemetry/sdk-trace';
import type { BatchOptions, PropagatorName, SamplerName } from '../../interfaces/otel-module-options.interface.js';
import type { RuleBasedSamplerOptions } from '../sampling-rules.js';
import type { ResolvedRequestIdOptions } from '../../propagation/request-id.propagator.js';
import type { ResolvedRedaction } from '../../redaction/redaction-options.js';

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
  | { readonly kind: 'instance'; readonly sampler: Sampler }
  /**
   * `sampler: { rules }`: a RuleBasedSampler built from `options`; `fallback` (what
   * `OTEL_TRACES_SAMPLER` names, else `parentbased_always_on`) is its default when the options give none.
   */
  | { readonly kind: 'rules'; readonly options: RuleBasedSamplerOptions; readonly fallback: ResolvedSampler };

export type ResolvedPropagators =
  /** In extraction order; empty means "propagate nothing". */
  | { readonly kind: 'named'; readonly names: readonly KnownPropagatorName[] }
  | { readonly kind: 'instance'; readonly propagator: TextMapPropagator };

export type ResolvedMetricsExporter =
  | {
      readonly kind: 'otlp';
      /** Full metrics URL. */
      readonly url: string;
      readonly headers: Readonly<Record<string, string>>;
      readonly timeoutMillis: number;
    }
  | { readonly kind: 'prometheus'; readonly port: number; readonly host: string; readonly endpoint: string }
  | { readonly kind: 'console' }
  | { readonly kind: 'instance'; readonly exporter: PushMetricExporter };

/** The metrics settings (lib/sdk/config/resolve-metrics.ts); `enabled: false` loads nothing. */
export type ResolvedMetrics =
  | { readonly enabled: false }
  | {
      readonly enabled: true;
      /** Undefined with `meterProvider` (the application's provider exports). */
      readonly exporter: ResolvedMetricsExporter | undefined;
      readonly intervalMillis: number;
      readonly exportTimeoutMillis: number;
      readonly views: readonly ViewOptions[];
      /** The application's provider (the `meterProvider` option): recorded into, never shut down. */
      readonly meterProvider: MeterProvider | undefined;
    };

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
  | 'spanProcessors'
  | 'requestId';

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
  /** The user's processors; they run before the processor that exports (see sdk-factory.ts). */
  readonly spanProcessors: readonly SpanProcessor[];
  readonly baggageToAttributes: readonly string[];
  /** The `x-request-id` bridge; undefined when off (the default). */
  readonly requestId: ResolvedRequestIdOptions | undefined;
  /** `redact`: the rules of the redaction processor (on by default). Applies to a running provider too. */
  readonly redaction: ResolvedRedaction;
  /** RED metrics: off, or how to export them. */
  readonly metrics: ResolvedMetrics;
  /** SDK-level options the user gave explicitly (used to warn when they cannot apply). */
  readonly explicitSdkOptions: readonly SdkOptionName[];
  /** Problems found in `OTEL_*` variables; reported by the caller, never thrown. */
  readonly warnings: readonly string[];
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
  otlpMetricsUrl: 'http://localhost:4318/v1/metrics',
  metricExportIntervalMillis: 60_000,
  metricExportTimeoutMillis: 30_000,
  prometheus: { port: 9464, host: 'localhost', endpoint: '/metrics' },
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

export const SDK_OPTION_NAMES: readonly SdkOptionName[] = [
  'serviceName',
  'serviceVersion',
  'resourceAttributes',
  'exporter',
  'batch',
  'sampler',
  'spanLimits',
  'propagators',
  'spanProcessors',
  'requestId',
];

export const SAMPLER_NAMES: readonly SamplerName[] = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
];
export const PROPAGATOR_NAMES: readonly PropagatorName[] = ['tracecontext', 'baggage', 'b3', 'b3multi', 'none'];
export const EXPORTER_NAMES = ['otlp', 'console', 'none'] as const;
export type ExporterName = (typeof EXPORTER_NAMES)[number];
