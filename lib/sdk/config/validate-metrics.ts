import {
  OtelConfigError,
  invalidOptionValue,
  metricExporterWithoutMethods,
  metricsTimeoutAboveInterval,
} from '../../otel.messages.js';
import { hasMethods, isHttpUrl, isNonEmptyString, isPositiveInteger, isRecord } from './guards.js';
import { rejectUnknownKeys } from './suggest.js';

const KNOWN_METRICS_OPTIONS = ['exporter', 'interval', 'exportTimeoutMillis', 'views', 'meterProvider'] as const;
export const METRICS_EXPORTER_NAMES = ['otlp', 'prometheus', 'console', 'none'] as const;
export type MetricsExporterName = (typeof METRICS_EXPORTER_NAMES)[number];
const KNOWN_OTLP_OPTIONS = ['url', 'headers', 'timeoutMillis'] as const;
const KNOWN_PROMETHEUS_OPTIONS = ['port', 'host', 'endpoint'] as const;

function fail(path: string, expected: string, example: string, got: unknown): never {
  throw new OtelConfigError(invalidOptionValue(path, expected, example, got));
}


/** A `PushMetricExporter` (sdk-metrics): recognised by its `export` method, as a SpanExporter is. */
export function isPushMetricExporter(value: object): boolean {
  return hasMethods(value, 'export');
}

export function isPort(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 65535;
}

/** Throws {@link OtelConfigError} for the first wrong `metrics` option. */
export function validateMetricsOption(value: unknown): void {
  if (value === undefined || typeof value === 'boolean') {
    return;
  }
  if (!isRecord(value)) {
    fail('metrics', 'a boolean or an options object', "{ metrics: true } or { metrics: { exporter: 'prometheus' } }", value);
  }
  rejectUnknownKeys(value, KNOWN_METRICS_OPTIONS, '"metrics"');
  validateMetricsExporter(value.exporter);
  for (const key of ['interval', 'exportTimeoutMillis'] as const) {
    if (value[key] !== undefined && !isPositiveInteger(value[key])) {
      fail(`metrics.${key}`, 'a positive integer (milliseconds)', '{ metrics: { interval: 15000, exportTimeoutMillis: 10000 } }', value[key]);
    }
  }
  if (
    typeof value.interval === 'number' &&
    typeof value.exportTimeoutMillis === 'number' &&
    value.exportTimeoutMillis > value.interval
  ) {
    throw new OtelConfigError(metricsTimeoutAboveInterval(value.exportTimeoutMillis, value.interval));
  }
  if (value.views !== undefined) {
    if (!Array.isArray(value.views)) {
      fail('metrics.views', 'an array of ViewOptions', "{ metrics: { views: [{ instrumentName: 'http.server.request.duration', attributesProcessors: [...] }] } }", value.views);
    }
    value.views.forEach((view: unknown, i) => {
      if (!isRecord(view)) {
        fail(`metrics.views[${i}]`, 'a ViewOptions object', "{ metrics: { views: [{ instrumentName: 'messaging.*', name: '...' }] } }", view);
      }
    });
  }
  if (value.meterProvider !== undefined && !(isRecord(value.meterProvider) && hasMethods(value.meterProvider, 'getMeter'))) {
    fail('metrics.meterProvider', 'a MeterProvider (with getMeter())', '{ metrics: { meterProvider: new MeterProvider({ readers }) } }', value.meterProvider);
  }
}

function validateMetricsExporter(value: unknown): void {
  if (value === undefined) {
    return;
  }
  const expected = "'otlp', 'prometheus', 'console', 'none', an OTLP options object, { prometheus: {...} } or a PushMetricExporter";
  if (typeof value === 'string') {
    if (!(METRICS_EXPORTER_NAMES as readonly string[]).includes(value)) {
      fail('metrics.exporter', expected, "{ metrics: { exporter: 'prometheus' } }", value);
    }
    return;
  }
  if (!isRecord(value)) {
    fail('metrics.exporter', expected, "{ metrics: { exporter: { url: 'http://collector:4318/v1/metrics' } } }", value);
  }
  if (isPushMetricExporter(value)) {
    if (!hasMethods(value, 'forceFlush', 'shutdown')) {
      throw new OtelConfigError(metricExporterWithoutMethods(value));
    }
    return;
  }
  if ('prometheus' in value) {
    rejectUnknownKeys(value, ['prometheus'], '"metrics.exporter"');
    const prometheus = value.prometheus;
    if (!isRecord(prometheus)) {
      fail('metrics.exporter.prometheus', 'an options object', '{ prometheus: { port: 9464 } }', prometheus);
    }
    rejectUnknownKeys(prometheus, KNOWN_PROMETHEUS_OPTIONS, '"metrics.exporter.prometheus"');
    if (prometheus.port !== undefined && !isPort(prometheus.port)) {
      fail('metrics.exporter.prometheus.port', 'an integer from 1 to 65535', '{ prometheus: { port: 9464 } }', prometheus.port);
    }
    if (prometheus.host !== undefined && !isNonEmptyString(prometheus.host)) {
      fail('metrics.exporter.prometheus.host', 'a non-empty string', "{ prometheus: { host: '0.0.0.0' } }", prometheus.host);
    }
    if (prometheus.endpoint !== undefined && !(typeof prometheus.endpoint === 'string' && prometheus.endpoint.startsWith('/'))) {
      fail('metrics.exporter.prometheus.endpoint', "a path starting with '/'", "{ prometheus: { endpoint: '/metrics' } }", prometheus.endpoint);
    }
    return;
  }
  rejectUnknownKeys(value, KNOWN_OTLP_OPTIONS, '"metrics.exporter"');
  if (value.url !== undefined && (typeof value.url !== 'string' || !isHttpUrl(value.url))) {
    fail('metrics.exporter.url', 'an http:// or https:// URL', "{ exporter: { url: 'http://collector:4318/v1/metrics' } }", value.url);
  }
  if (value.headers !== undefined) {
    if (!isRecord(value.headers) || Object.values(value.headers).some((header) => typeof header !== 'string')) {
      fail('metrics.exporter.headers', 'an object of string values', "{ exporter: { headers: { 'api-key': '...' } } }", value.headers);
    }
  }
  if (
    value.timeoutMillis !== undefined &&
    (typeof value.timeoutMillis !== 'number' || !Number.isFinite(value.timeoutMillis) || value.timeoutMillis <= 0)
  ) {
    fail('metrics.exporter.timeoutMillis', 'a positive number (milliseconds)', '{ exporter: { timeoutMillis: 10000 } }', value.timeoutMillis);
  }
}
