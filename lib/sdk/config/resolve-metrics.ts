import type { PushMetricExporter } from '@opentelemetry/sdk-metrics';
import type { MetricsOptions, OtelModuleOptions, OtlpHttpExporterOptions } from '../../interfaces/otel-module-options.interface.js';
import {
  envInvalidPort,
  envInvalidUrl,
  envSeveralMetricsExporters,
  envUnsupportedMetricsExporters,
  envUnsupportedProtocol,
} from '../../otel.messages.js';
import type { EnvReader } from './env-reader.js';
import { isHttpUrl, isRecord } from './guards.js';
import { SDK_DEFAULTS, type ResolvedMetrics, type ResolvedMetricsExporter } from './sdk-config.js';
import { isPort, isPushMetricExporter, METRICS_EXPORTER_NAMES, type MetricsExporterName } from './validate-metrics.js';

const OFF: ResolvedMetrics = { enabled: false };

/**
 * Resolves the `metrics` option (already validated). Off by default: metrics are on when the option
 * says so (`true` or an object), or when `OTEL_METRICS_EXPORTER` is set to an exporter other than
 * `none` and the option is not `false`. Off with a disabled SDK, and with the exporter `none`.
 */
export function resolveMetrics(opts: OtelModuleOptions, reader: EnvReader, sdkDisabled: boolean): ResolvedMetrics {
  const option = opts.metrics;
  if (sdkDisabled || option === false) {
    return OFF;
  }
  const given: MetricsOptions = isRecord(option) ? option : {};
  const envName = metricsExporterName(reader);
  if (option === undefined && envName === undefined) {
    return OFF;
  }
  const intervalMillis =
    given.interval ?? reader.firstInteger(['OTEL_METRIC_EXPORT_INTERVAL'], 1, SDK_DEFAULTS.metricExportIntervalMillis);
  const timeout =
    given.exportTimeoutMillis ?? reader.firstInteger(['OTEL_METRIC_EXPORT_TIMEOUT'], 1, SDK_DEFAULTS.metricExportTimeoutMillis);
  const common = {
    enabled: true as const,
    intervalMillis,
    // As the SDK's PeriodicExportingMetricReader does: a push never outlasts the interval.
    exportTimeoutMillis: Math.min(timeout, intervalMillis),
    views: [...(given.views ?? [])],
  };
  if (given.meterProvider !== undefined) {
    return { ...common, exporter: undefined, meterProvider: given.meterProvider };
  }
  const exporter = resolveMetricsExporter(given, envName, opts, reader);
  return exporter === undefined ? OFF : { ...common, exporter, meterProvider: undefined };
}

function resolveMetricsExporter(
  given: MetricsOptions,
  envName: MetricsExporterName | undefined,
  opts: OtelModuleOptions,
  reader: EnvReader,
): ResolvedMetricsExporter | undefined {
  const option = given.exporter;
  if (isRecord(option) && isPushMetricExporter(option)) {
    return { kind: 'instance', exporter: option as unknown as PushMetricExporter };
  }
  if (isRecord(option) && 'prometheus' in option) {
    return resolvePrometheus(option.prometheus as Record<string, unknown>, reader);
  }
  const name: MetricsExporterName = typeof option === 'string' ? option : option !== undefined ? 'otlp' : (envName ?? 'otlp');
  switch (name) {
    case 'none':
      return undefined;
    case 'console':
      return { kind: 'console' };
    case 'prometheus':
      return resolvePrometheus({}, reader);
    case 'otlp':
      return resolveOtlp(isRecord(option) ? (option as OtlpHttpExporterOptions) : {}, opts, reader);
  }
}

function resolveOtlp(explicit: OtlpHttpExporterOptions, opts: OtelModuleOptions, reader: EnvReader): ResolvedMetricsExporter {
  const protocol = reader.string('OTEL_EXPORTER_OTLP_METRICS_PROTOCOL')?.toLowerCase();
  if (protocol !== undefined && protocol !== 'http/json' && protocol !== 'http/protobuf') {
    reader.warn(envUnsupportedProtocol('OTEL_EXPORTER_OTLP_METRICS_PROTOCOL', protocol));
  }
  // The collector the traces go to when the options name it: metrics follow the traces there.
  const traces = isRecord(opts.exporter) && !('export' in opts.exporter) ? (opts.exporter as OtlpHttpExporterOptions) : undefined;
  const tracesCollector = traces?.url !== undefined && /\/v1\/traces\/?$/.test(traces.url) ? traces.url.replace(/\/v1\/traces\/?$/, '/v1/metrics') : undefined;
  const fromEnv = otlpMetricsUrlFromEnv(reader, tracesCollector);
  const url = explicit.url ?? fromEnv.url;
  return {
    kind: 'otlp',
    url,
    headers: {
      ...reader.headers('OTEL_EXPORTER_OTLP_HEADERS'),
      ...reader.headers('OTEL_EXPORTER_OTLP_METRICS_HEADERS'),
      ...(explicit.url === undefined && fromEnv.followsTraces ? traces?.headers : undefined),
      ...explicit.headers,
    },
    timeoutMillis:
      explicit.timeoutMillis ??
      reader.firstInteger(['OTEL_EXPORTER_OTLP_METRICS_TIMEOUT', 'OTEL_EXPORTER_OTLP_TIMEOUT'], 1, SDK_DEFAULTS.otlpTimeoutMillis),
  };
}

/**
 * `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` (used as is), else the traces collector named in the options,
 * else `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/metrics`, else the default.
 */
function otlpMetricsUrlFromEnv(reader: EnvReader, tracesCollector: string | undefined): { url: string; followsTraces: boolean } {
  const metricsEndpoint = reader.string('OTEL_EXPORTER_OTLP_METRICS_ENDPOINT');
  const endpoint = reader.string('OTEL_EXPORTER_OTLP_ENDPOINT');
  const base = endpoint !== undefined && isHttpUrl(endpoint) ? appendPath(endpoint, '/v1/metrics') : undefined;
  const fallback = tracesCollector ?? base ?? SDK_DEFAULTS.otlpMetricsUrl;
  if (metricsEndpoint !== undefined) {
    if (isHttpUrl(metricsEndpoint)) {
      return { url: metricsEndpoint, followsTraces: false };
    }
    reader.warn(envInvalidUrl('OTEL_EXPORTER_OTLP_METRICS_ENDPOINT', metricsEndpoint, fallback));
  }
  return { url: fallback, followsTraces: tracesCollector !== undefined };
}

function resolvePrometheus(explicit: Record<string, unknown>, reader: EnvReader): ResolvedMetricsExporter {
  const defaults = SDK_DEFAULTS.prometheus;
  let port = explicit.port as number | undefined;
  if (port === undefined) {
    const raw = reader.string('OTEL_EXPORTER_PROMETHEUS_PORT');
    if (raw !== undefined && isPort(Number(raw))) {
      port = Number(raw);
    } else if (raw !== undefined) {
      reader.warn(envInvalidPort('OTEL_EXPORTER_PROMETHEUS_PORT', raw, defaults.port));
    }
  }
  return {
    kind: 'prometheus',
    port: port ?? defaults.port,
    host: (explicit.host as string | undefined) ?? reader.string('OTEL_EXPORTER_PROMETHEUS_HOST') ?? defaults.host,
    endpoint: (explicit.endpoint as string | undefined) ?? defaults.endpoint,
  };
}

/** `OTEL_METRICS_EXPORTER`: undefined when unset; the first supported value (a warning names the rest). */
function metricsExporterName(reader: EnvReader): MetricsExporterName | undefined {
  const raw = reader.string('OTEL_METRICS_EXPORTER');
  const values = reader.list('OTEL_METRICS_EXPORTER');
  if (raw === undefined || values === undefined) {
    return undefined;
  }
  const supported = values.filter((v): v is MetricsExporterName => (METRICS_EXPORTER_NAMES as readonly string[]).includes(v));
  const unsupported = values.filter((v) => !supported.includes(v as MetricsExporterName));
  const used = supported[0] ?? 'otlp';
  if (unsupported.length > 0) {
    reader.warn(envUnsupportedMetricsExporters(raw, unsupported, used));
  }
  if (supported.length > 1) {
    reader.warn(envSeveralMetricsExporters(raw, used));
  }
  return used;
}

function appendPath(base: string, path: string): string {
  const url = new URL(base);
  url.pathname = `${url.pathname.replace(/\/+$/, '')}${path}`;
  return url.toString();
}
