import { describe, expect, it } from 'vitest';
import { OtelConfigError } from '../../otel.messages.js';
import { resolveSdkConfig } from './resolve-config.js';

const metricsOf = (options: Parameters<typeof resolveSdkConfig>[0], env: NodeJS.ProcessEnv = {}) => resolveSdkConfig(options, env).metrics;
const thrown = (options: unknown): Error => {
  try {
    resolveSdkConfig(options as never, {});
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected OtelConfigError');
};

describe('resolveSdkConfig: metrics', () => {
  it('is off by default, and turned on by OTEL_METRICS_EXPORTER unless the option says false', () => {
    expect(metricsOf({})).toEqual({ enabled: false });
    expect(metricsOf({}, { OTEL_METRICS_EXPORTER: 'none' })).toEqual({ enabled: false });
    expect(metricsOf({}, { OTEL_METRICS_EXPORTER: 'console' })).toMatchObject({ enabled: true, exporter: { kind: 'console' } });
    expect(metricsOf({ metrics: false }, { OTEL_METRICS_EXPORTER: 'otlp' })).toEqual({ enabled: false });
    expect(metricsOf({ metrics: true, disabled: true })).toEqual({ enabled: false });
    expect(metricsOf({ metrics: { exporter: 'none' } })).toEqual({ enabled: false });
  });

  it('sends OTLP to the metrics endpoint, else the traces collector of the options, else OTEL_EXPORTER_OTLP_ENDPOINT, else localhost', () => {
    expect(metricsOf({ metrics: true })).toMatchObject({
      enabled: true,
      intervalMillis: 60_000,
      exportTimeoutMillis: 30_000,
      exporter: { kind: 'otlp', url: 'http://localhost:4318/v1/metrics', timeoutMillis: 10_000, headers: {} },
    });
    expect(metricsOf({ metrics: true }, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' })).toMatchObject({
      exporter: { url: 'http://collector:4318/v1/metrics' },
    });
    const traces = { url: 'http://traces:4318/v1/traces', headers: { 'api-key': 'k' } };
    expect(metricsOf({ exporter: traces, metrics: true }, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })).toMatchObject({
      exporter: { url: 'http://traces:4318/v1/metrics', headers: { 'api-key': 'k' } },
    });
    expect(
      metricsOf({ exporter: traces, metrics: true }, { OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: 'http://m:9000/ingest', OTEL_EXPORTER_OTLP_METRICS_HEADERS: 'x=1', OTEL_EXPORTER_OTLP_METRICS_TIMEOUT: '500' }),
    ).toMatchObject({ exporter: { url: 'http://m:9000/ingest', headers: { x: '1' }, timeoutMillis: 500 } });
    expect(metricsOf({ metrics: { exporter: { url: 'http://own:4318/v1/metrics' } } })).toMatchObject({ exporter: { url: 'http://own:4318/v1/metrics' } });
  });

  it('reads the interval and timeout from OTEL_METRIC_EXPORT_*; the timeout never exceeds the interval', () => {
    expect(metricsOf({ metrics: true }, { OTEL_METRIC_EXPORT_INTERVAL: '5000', OTEL_METRIC_EXPORT_TIMEOUT: '8000' })).toMatchObject({
      intervalMillis: 5000,
      exportTimeoutMillis: 5000,
    });
    expect(metricsOf({ metrics: { interval: 1000 } }, { OTEL_METRIC_EXPORT_INTERVAL: '5000' })).toMatchObject({ intervalMillis: 1000 });
    const config = resolveSdkConfig({ metrics: true }, { OTEL_METRIC_EXPORT_INTERVAL: 'soon' });
    expect(config.metrics).toMatchObject({ intervalMillis: 60_000 });
    expect(config.warnings.join('\n')).toContain('OTEL_METRIC_EXPORT_INTERVAL="soon"');
  });

  it('resolves Prometheus from the option and OTEL_EXPORTER_PROMETHEUS_HOST/PORT', () => {
    expect(metricsOf({}, { OTEL_METRICS_EXPORTER: 'prometheus', OTEL_EXPORTER_PROMETHEUS_PORT: '9999', OTEL_EXPORTER_PROMETHEUS_HOST: '0.0.0.0' })).toMatchObject({
      exporter: { kind: 'prometheus', port: 9999, host: '0.0.0.0', endpoint: '/metrics' },
    });
    expect(metricsOf({ metrics: { exporter: { prometheus: { port: 9100, endpoint: '/m' } } } })).toMatchObject({
      exporter: { kind: 'prometheus', port: 9100, host: 'localhost', endpoint: '/m' },
    });
    const config = resolveSdkConfig({ metrics: { exporter: 'prometheus' } }, { OTEL_EXPORTER_PROMETHEUS_PORT: '70000' });
    expect(config.metrics).toMatchObject({ exporter: { port: 9464 } });
    expect(config.warnings.join('\n')).toContain('OTEL_EXPORTER_PROMETHEUS_PORT="70000" is not a port');
  });

  it('warns about unsupported OTEL_METRICS_EXPORTER values and uses the first supported one', () => {
    const config = resolveSdkConfig({}, { OTEL_METRICS_EXPORTER: 'zipkin,prometheus,console' });
    expect(config.metrics).toMatchObject({ exporter: { kind: 'prometheus' } });
    expect(config.warnings.join('\n')).toMatch(/OTEL_METRICS_EXPORTER=.*"zipkin" is not supported/);
    expect(config.warnings.join('\n')).toContain('lists several exporters');
  });

  it('keeps a given PushMetricExporter and MeterProvider as they are', () => {
    const exporter = { export: () => undefined, forceFlush: async () => undefined, shutdown: async () => undefined };
    expect(metricsOf({ metrics: { exporter: exporter as never } })).toMatchObject({ exporter: { kind: 'instance', exporter } });
    const meterProvider = { getMeter: () => ({}) };
    expect(metricsOf({ metrics: { meterProvider: meterProvider as never } })).toMatchObject({ enabled: true, exporter: undefined, meterProvider });
  });

  it.each([
    ['not a boolean or object', { metrics: 'yes' }, '"metrics" must be a boolean or an options object, got "yes"'],
    ['unknown key with a suggestion', { metrics: { intervall: 5 } }, 'unknown option "intervall" (did you mean "interval"?) in "metrics"'],
    ['exporter name', { metrics: { exporter: 'jaeger' } }, '"metrics.exporter" must be'],
    ['interval', { metrics: { interval: 0 } }, '"metrics.interval" must be a positive integer'],
    ['timeout above interval', { metrics: { interval: 1000, exportTimeoutMillis: 2000 } }, '"metrics.exportTimeoutMillis" (2000) must not be larger than "metrics.interval" (1000)'],
    ['prometheus port', { metrics: { exporter: { prometheus: { port: 0 } } } }, '"metrics.exporter.prometheus.port" must be an integer from 1 to 65535'],
    ['prometheus endpoint', { metrics: { exporter: { prometheus: { endpoint: 'metrics' } } } }, '"metrics.exporter.prometheus.endpoint" must be a path starting with'],
    ['otlp url', { metrics: { exporter: { url: 'collector:4318' } } }, '"metrics.exporter.url" must be an http:// or https:// URL'],
    ['exporter without shutdown', { metrics: { exporter: { export: () => undefined } } }, 'has an export() method but not forceFlush() and shutdown()'],
    ['views', { metrics: { views: {} } }, '"metrics.views" must be an array of ViewOptions'],
    ['meterProvider', { metrics: { meterProvider: {} } }, '"metrics.meterProvider" must be a MeterProvider'],
  ])('throws OtelConfigError for a wrong %s', (_label, options, message) => {
    const error = thrown(options);
    expect(error).toBeInstanceOf(OtelConfigError);
    expect(error.message).toContain(message);
    expect(error.message.startsWith('otel-nest: ')).toBe(true);
  });
});
