import type { Resource } from '@opentelemetry/resources';
import type { IMetricReader, MeterProvider as SdkMeterProvider, PushMetricExporter } from '@opentelemetry/sdk-metrics';
import { OtelConfigError, prometheusExporterMissing, prometheusServerFailed } from '../otel.messages.js';
import type { ResolvedMetrics, ResolvedMetricsExporter } from '../sdk/config/sdk-config.js';

/** Metrics settings that make a provider (on, without the application's own provider). */
export type OwnMetricsConfig = Extract<ResolvedMetrics, { enabled: true }> & { exporter: ResolvedMetricsExporter };

/** Loads a module; `import()` here (a `require` in the CommonJS build). Replaceable in tests. */
export type ModuleImporter = (specifier: string) => Promise<unknown>;

const importModule: ModuleImporter = (specifier) => import(specifier);

type SdkMetricsModule = typeof import('@opentelemetry/sdk-metrics');
type OtlpMetricsModule = typeof import('@opentelemetry/exporter-metrics-otlp-http');
type PrometheusModule = typeof import('@opentelemetry/exporter-prometheus');

/** The scrape URL of a Prometheus exporter configuration. */
export function prometheusUrl(exporter: Extract<ResolvedMetricsExporter, { kind: 'prometheus' }>): string {
  const host = exporter.host.includes(':') ? `[${exporter.host}]` : exporter.host;
  return `http://${host}:${exporter.port}${exporter.endpoint}`;
}

/**
 * Builds the MeterProvider described by `config`, loading the SDK's metrics packages only now
 * (nothing of them is loaded while metrics are off). The Prometheus exporter is an optional peer:
 * without it this rejects with an {@link OtelConfigError}. A scrape endpoint that cannot listen
 * (port taken) is reported through `warn`; the provider still records.
 */
export async function createMeterProvider(
  config: OwnMetricsConfig,
  resource: Resource,
  warn: (message: string, error?: unknown) => void,
  load: ModuleImporter = importModule,
): Promise<SdkMeterProvider> {
  const sdk = (await load('@opentelemetry/sdk-metrics')) as SdkMetricsModule;
  const push = (exporter: PushMetricExporter): IMetricReader =>
    new sdk.PeriodicExportingMetricReader({
      exporter,
      exportIntervalMillis: config.intervalMillis,
      exportTimeoutMillis: config.exportTimeoutMillis,
    });
  let reader: IMetricReader;
  const exporter = config.exporter;
  switch (exporter.kind) {
    case 'otlp': {
      const otlp = (await load('@opentelemetry/exporter-metrics-otlp-http')) as OtlpMetricsModule;
      reader = push(new otlp.OTLPMetricExporter({ url: exporter.url, headers: { ...exporter.headers }, timeoutMillis: exporter.timeoutMillis }));
      break;
    }
    case 'console':
      reader = push(new sdk.ConsoleMetricExporter());
      break;
    case 'instance':
      reader = push(exporter.exporter);
      break;
    case 'prometheus': {
      let prometheus: PrometheusModule;
      try {
        prometheus = (await load('@opentelemetry/exporter-prometheus')) as PrometheusModule;
      } catch {
        throw new OtelConfigError(prometheusExporterMissing());
      }
      reader = await new Promise<IMetricReader>((resolve) => {
        const created: IMetricReader = new prometheus.PrometheusExporter(
          { port: exporter.port, host: exporter.host, endpoint: exporter.endpoint },
          (error?: unknown) => {
            if (error) {
              warn(prometheusServerFailed(prometheusUrl(exporter)), error);
            }
            // The callback can run before the constructor returned (queueMicrotask), never synchronously.
            queueMicrotask(() => resolve(created));
          },
        );
      });
      break;
    }
  }
  return new sdk.MeterProvider({ resource, views: [...config.views], readers: [reader] });
}
