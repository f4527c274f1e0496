import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startChildApp } from './support/child-app.js';
import { plainRequest } from './support/http-request.js';
import { startOtlpReceiver, type OtlpReceiver } from './support/otlp-receiver.js';

const APP = fileURLToPath(new URL('./fixtures/app.mjs', import.meta.url));
const RECORD_LOADS = fileURLToPath(new URL('./fixtures/record-loads.mjs', import.meta.url));
const METRICS_PACKAGES = /@opentelemetry\/(sdk-metrics|exporter-metrics-otlp-http|exporter-prometheus)\//;
/**
 * The packages otel-nest loads for metrics, at the top of node_modules. The OTLP trace exporter's
 * own otlp-transformer imports a nested copy of sdk-metrics for its metrics serializer, traces only
 * or not (node_modules/@opentelemetry/exporter-trace-otlp-http/node_modules/...): not ours to skip.
 */
function ownMetricsPackages(loaded: readonly string[]): string[] {
  return loaded.filter((url) => METRICS_PACKAGES.test(url) && !/\/node_modules\/.*\/node_modules\//.test(url));
}

/** The modules a real application (dist/, through the package name) resolved after one request. */
async function modulesLoaded(env: Record<string, string>): Promise<{ loaded: string[]; output: string }> {
  const child = await startChildApp(APP, { FIXTURE_OTEL_OPTIONS: JSON.stringify({ batch: false }), ...env }, ['--import', RECORD_LOADS]);
  try {
    expect((await plainRequest(`http://127.0.0.1:${child.port}/orders/1`)).status).toBe(200);
    child.process.kill('SIGUSR2');
    const deadline = Date.now() + 10_000;
    while (!/LOADED .* END/.test(child.output()) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const line = child.output().split('\n').find((l) => l.startsWith('LOADED '));
    expect(line, child.output()).toBeDefined();
    return { loaded: JSON.parse(line!.slice('LOADED '.length, -' END'.length)) as string[], output: child.output() };
  } finally {
    await child.stop();
  }
}

describe('metrics packages are loaded only when metrics are on', () => {
  let receiver: OtlpReceiver;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
  });

  afterAll(async () => {
    await receiver.close();
  });

  it('off (the default): neither sdk-metrics nor a metrics exporter is loaded', async () => {
    const { loaded, output } = await modulesLoaded({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, OTEL_METRICS_EXPORTER: '' });
    expect(loaded.some((url) => url.includes('/otel-nest/') || url.includes('/dist/esm/'))).toBe(true);
    expect(ownMetricsPackages(loaded)).toEqual([]);
    expect(output).not.toContain('metrics:');
  });

  it('on (OTEL_METRICS_EXPORTER=otlp): they are, and the summary says where metrics go', async () => {
    const { loaded, output } = await modulesLoaded({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, OTEL_METRICS_EXPORTER: 'otlp' });
    const own = ownMetricsPackages(loaded);
    expect(own.some((url) => url.includes('/@opentelemetry/sdk-metrics/'))).toBe(true);
    expect(own.some((url) => url.includes('/@opentelemetry/exporter-metrics-otlp-http/'))).toBe(true);
    expect(output).toContain(`metrics: otlp ${receiver.endpoint}/v1/metrics every 60 s`);
  });
});
