import { metrics } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { afterEach, describe, expect, it } from 'vitest';
import { OtelConfigError } from '../otel.messages.js';
import type { ResolvedMetrics } from '../sdk/config/sdk-config.js';
import { acquireMetrics, activeInstruments, onMeterProvider } from './metrics-state.js';

const logger = { warn: () => undefined, error: () => undefined };
const resource = () => resourceFromAttributes({ 'service.name': 'unit' });
const base = { enabled: true as const, intervalMillis: 600_000, exportTimeoutMillis: 1000, views: [] };

afterEach(() => {
  metrics.disable();
});

describe('acquireMetrics', () => {
  it('loads nothing and records nothing when metrics are off', () => {
    expect(acquireMetrics({ enabled: false }, { resource, logger })).toBeUndefined();
    expect(activeInstruments()).toBeUndefined();
  });

  it('builds an own provider from a given exporter, registers it, and exports the last interval at release', async () => {
    const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
    const config: ResolvedMetrics = { ...base, exporter: { kind: 'instance', exporter }, meterProvider: undefined };
    const seen: unknown[] = [];
    const unsubscribe = onMeterProvider((provider) => seen.push(provider));
    const share = acquireMetrics(config, { resource, logger })!;
    expect(await share.ready).toBeUndefined();
    expect(share.description).toBe('InMemoryMetricExporter every 600 s');
    const instruments = activeInstruments()!;
    expect(metrics.getMeterProvider()).toBe(seen[0]);
    instruments.messagingSentMessages.add(1, { 'messaging.system': 'nats' });
    await share.release();
    expect(activeInstruments()).toBeUndefined();
    expect(seen).toHaveLength(2);
    expect(seen[1]).toBeUndefined();
    const names = exporter.getMetrics().flatMap((rm) => rm.scopeMetrics.flatMap((sm) => sm.metrics.map((m) => m.descriptor.name)));
    expect(names).toContain('messaging.client.sent.messages');
    unsubscribe();
  });

  it('adopts a meter provider registered globally, and never shuts it down', async () => {
    const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
    const provider = new MeterProvider({ readers: [new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 600_000 })] });
    metrics.setGlobalMeterProvider(provider);
    const share = acquireMetrics({ ...base, exporter: { kind: 'console' }, meterProvider: undefined }, { resource, logger })!;
    expect(share.description).toBe("into the application's global MeterProvider");
    activeInstruments()!.httpServerActiveRequests.add(1, { 'http.request.method': 'GET' });
    await share.release();
    // Flushed, not shut down: it still collects.
    expect(exporter.getMetrics().length).toBeGreaterThan(0);
    await expect(provider.forceFlush()).resolves.toBeUndefined();
    await provider.shutdown();
  });

  it('a second holder shares the running metrics and is told when it asked for others', async () => {
    const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
    const first = acquireMetrics({ ...base, exporter: { kind: 'instance', exporter }, meterProvider: undefined }, { resource, logger })!;
    await first.ready;
    const second = acquireMetrics({ ...base, exporter: { kind: 'console' }, meterProvider: undefined }, { resource, logger })!;
    expect(second.warnings.join()).toContain('metrics already run in this process (InMemoryMetricExporter every 600 s)');
    await first.release();
    expect(activeInstruments()).toBeDefined();
    await second.release();
    expect(activeInstruments()).toBeUndefined();
  });

  it('reports a missing Prometheus exporter as an OtelConfigError from ready', async () => {
    const load = async (name: string): Promise<unknown> => {
      if (name === '@opentelemetry/exporter-prometheus') {
        throw new Error(`Cannot find package '${name}'`);
      }
      return import(name);
    };
    const share = acquireMetrics(
      { ...base, exporter: { kind: 'prometheus', port: 9464, host: 'localhost', endpoint: '/metrics' }, meterProvider: undefined },
      { resource, logger, load },
    )!;
    const error = await share.ready;
    expect(error).toBeInstanceOf(OtelConfigError);
    expect(error!.message).toContain('npm install @opentelemetry/exporter-prometheus');
    expect(activeInstruments()).toBeUndefined();
    await share.release();
  });
});
