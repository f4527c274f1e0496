import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import { describe, expect, it } from 'vitest';
import type { OtelModuleOptions } from '../../interfaces/otel-module-options.interface.js';
import { describeExporter, describeStartup, resolveSdkConfig, type SummarizedSdk } from './index.js';

function sdk(options: OtelModuleOptions, env: NodeJS.ProcessEnv, overrides: Partial<SummarizedSdk> = {}): SummarizedSdk {
  const config = resolveSdkConfig(options, env);
  return {
    disabled: config.disabled,
    disabledReason: config.disabledReason,
    owned: true,
    reused: false,
    serviceName: config.serviceName,
    running: config.disabled ? undefined : config,
    ...overrides,
  };
}

describe('describeStartup: the one startup summary', () => {
  const env = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_PROPAGATORS: 'tracecontext,b3' };
  const options: OtelModuleOptions = { serviceName: 'orders', sampler: { ratio: 0.25 } };

  it('names the service, the SDK, exporter, sampler, propagators and what is traced', () => {
    expect(describeStartup(sdk(options, env), ['HTTP server (express)', 'NATS client'], ['fetch'])).toBe(
      'otel-nest: Tracing service "orders" (SDK started by OtelModule): exporter otlp http://collector:4318/v1/traces, ' +
        'sampler ParentBased(TraceIdRatio{0.25}), propagators tracecontext,b3; traced: HTTP server (express), NATS client; ' +
        'already traced by other instrumentations: fetch.',
    );
  });

  it('says when the SDK is shared, and when it is the application’s own', () => {
    expect(describeStartup(sdk(options, env, { reused: true }), [], [])).toContain(
      '(SDK shared with an earlier OtelModule/otel-nest/register in this process): exporter otlp',
    );
    expect(describeStartup(sdk(options, env, { owned: false, running: undefined }), [], [])).toBe(
      'otel-nest: Tracing service "orders" (the application\'s own SDK): exporter set by the application\'s own SDK, ' +
        "sampler set by the application's own SDK, propagators set by the application's own SDK; traced: nothing automatically.",
    );
  });

  it('says when tracing is off, and why', () => {
    expect(describeStartup(sdk({ disabled: true }, {}), ['fetch'], [])).toBe(
      'otel-nest: Tracing is OFF ({ disabled: true }); traced if enabled: fetch.',
    );
  });

  it('describes every kind of exporter once, the same way', () => {
    expect(describeExporter({ kind: 'otlp', url: 'http://c:4318/v1/traces', headers: {}, timeoutMillis: 1 })).toBe(
      'otlp http://c:4318/v1/traces',
    );
    expect(describeExporter({ kind: 'console' })).toBe('console');
    expect(describeExporter({ kind: 'none' })).toBe('none');
    expect(describeExporter({ kind: 'instance', exporter: new InMemorySpanExporter() })).toBe('InMemorySpanExporter');
  });
});
