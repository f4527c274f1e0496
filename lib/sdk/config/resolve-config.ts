import type { Attributes } from '@opentelemetry/api';
import { defaultServiceName } from '@opentelemetry/resources';
import type { SpanLimits } from '@opentelemetry/sdk-trace';
import type { BatchOptions, OtelModuleOptions, SamplerName } from '../../interfaces/otel-module-options.interface.js';
import {
  OtelConfigError,
  batchSizeAboveQueueSize,
  disabledByEnv,
  disabledByOption,
  envBatchSizeAboveQueueSize,
  envUnsupportedProtocol,
} from '../../otel.messages.js';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '../../semconv.js';
import { EnvReader } from './env-reader.js';
import { isSampler, isSpanExporter } from './guards.js';
import {
  SDK_DEFAULTS,
  SDK_OPTION_NAMES,
  type ExporterName,
  type KnownPropagatorName,
  type ResolvedExporter,
  type ResolvedPropagators,
  type ResolvedSampler,
  type ResolvedSdkConfig,
} from './sdk-config.js';
import { validateOptions } from './validate-options.js';
import { isRuleSamplerOptions } from '../sampling-rules.js';
import { resolveMetrics } from './resolve-metrics.js';
import { resolveRequestIdOptions } from '../../propagation/request-id.propagator.js';
import { resolveRedaction } from '../../redaction/redaction-options.js';

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
  return {
    disabled,
    disabledReason,
    logSummary: opts.logSummary ?? true,
    ...resolveResource(opts, reader),
    exporter: resolveExporter(opts, reader),
    batch: resolveBatch(opts, reader),
    sampler: resolveSampler(opts, reader),
    spanLimits: resolveSpanLimits(opts, reader),
    propagators: resolvePropagators(opts, reader),
    spanProcessors: [...(opts.spanProcessors ?? [])],
    baggageToAttributes: [...new Set(opts.baggageToAttributes ?? [])],
    metrics: resolveMetrics(opts, reader, disabled),
    requestId: resolveRequestIdOptions(opts.requestId),
    redaction: resolveRedaction(opts.redact),
    explicitSdkOptions: SDK_OPTION_NAMES.filter((name) => opts[name] !== undefined),
    warnings: reader.warnings,
  };
}

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
  if (option !== undefined && typeof option === 'object' && isRuleSamplerOptions(option)) {
    // The rules come from code; the sampler for everything they leave open can still come from
    // the environment, as it would without rules.
    return { kind: 'rules', options: option, fallback: resolveSampler({}, reader) };
  }
  if (option !== undefined && typeof option === 'object' && 'ratio' in option) {
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
