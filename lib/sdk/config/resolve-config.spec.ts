import { defaultServiceName } from '@opentelemetry/resources';
import {
  AlwaysOnSampler,
  InMemorySpanExporter,
  ParentBasedSampler,
  SimpleSpanProcessor,
  TraceIdRatioBasedSampler,
} from '@opentelemetry/sdk-trace';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { describe, expect, it } from 'vitest';
import type { OtelModuleOptions } from '../../interfaces/otel-module-options.interface.js';
import { SDK_DEFAULTS, describeExporter, describePropagators, describeSampler, resolveSdkConfig } from './index.js';

const resolveEnv = (env: NodeJS.ProcessEnv, options: OtelModuleOptions = {}) => resolveSdkConfig(options, env);

describe('resolveSdkConfig: defaults', () => {
  it('an empty environment gives the specification defaults and no warning', () => {
    const config = resolveEnv({});
    expect(config).toMatchObject({
      disabled: false,
      disabledReason: undefined,
      logSummary: true,
      serviceName: defaultServiceName(),
      serviceVersion: undefined,
      resourceAttributes: {},
      exporter: { kind: 'otlp', url: 'http://localhost:4318/v1/traces', headers: {}, timeoutMillis: 10_000 },
      batch: { maxQueueSize: 2048, maxExportBatchSize: 512, scheduledDelayMillis: 5000, exportTimeoutMillis: 30_000 },
      sampler: { kind: 'named', name: 'parentbased_always_on' },
      spanLimits: {
        attributeValueLengthLimit: Infinity,
        attributeCountLimit: 128,
        eventCountLimit: 128,
        linkCountLimit: 128,
        attributePerEventCountLimit: 128,
        attributePerLinkCountLimit: 128,
      },
      propagators: { kind: 'named', names: ['tracecontext', 'baggage'] },
      spanProcessors: [],
      baggageToAttributes: [],
      explicitSdkOptions: [],
      warnings: [],
    });
    expect(describeExporter(config.exporter)).toBe('otlp http://localhost:4318/v1/traces');
    expect(describeSampler(config.sampler)).toBe('ParentBased(AlwaysOn)');
    expect(describePropagators(config.propagators)).toBe('tracecontext,baggage');
    expect(defaultServiceName()).toMatch(/^unknown_service/);
  });

  it('reads process.env when no environment is given', () => {
    const previous = process.env.OTEL_SERVICE_NAME;
    process.env.OTEL_SERVICE_NAME = 'from-process-env';
    try {
      expect(resolveSdkConfig({}).serviceName).toBe('from-process-env');
    } finally {
      if (previous === undefined) {
        delete process.env.OTEL_SERVICE_NAME;
      } else {
        process.env.OTEL_SERVICE_NAME = previous;
      }
    }
  });

  it('treats empty and blank variables as unset', () => {
    const config = resolveEnv({
      OTEL_SERVICE_NAME: '  ',
      OTEL_TRACES_EXPORTER: '',
      OTEL_TRACES_SAMPLER: '',
      OTEL_BSP_MAX_QUEUE_SIZE: '',
      OTEL_PROPAGATORS: ' ',
    });
    expect(config.serviceName).toBe(defaultServiceName());
    expect(config.exporter.kind).toBe('otlp');
    expect(config.sampler).toEqual({ kind: 'named', name: 'parentbased_always_on' });
    expect(config.batch).toMatchObject({ maxQueueSize: 2048 });
    expect(config.propagators).toEqual({ kind: 'named', names: ['tracecontext', 'baggage'] });
    expect(config.warnings).toEqual([]);
  });
});

describe('resolveSdkConfig: OTEL_SDK_DISABLED', () => {
  it.each(['true', 'TRUE', ' True '])('%j turns the SDK off', (value) => {
    const config = resolveEnv({ OTEL_SDK_DISABLED: value });
    expect(config.disabled).toBe(true);
    expect(config.disabledReason).toBe('OTEL_SDK_DISABLED=true');
    expect(config.warnings).toEqual([]);
  });

  it("'false' keeps it on without a warning", () => {
    expect(resolveEnv({ OTEL_SDK_DISABLED: 'false' })).toMatchObject({ disabled: false, warnings: [] });
  });

  it('any other value keeps it on and warns', () => {
    const config = resolveEnv({ OTEL_SDK_DISABLED: 'yes' });
    expect(config.disabled).toBe(false);
    expect(config.warnings).toEqual([
      `otel-nest: OTEL_SDK_DISABLED="yes" is neither 'true' nor 'false'; it is read as false. Set OTEL_SDK_DISABLED=true or OTEL_SDK_DISABLED=false.`,
    ]);
  });

  it('explicit disabled wins over the variable, both ways', () => {
    expect(resolveEnv({ OTEL_SDK_DISABLED: 'true' }, { disabled: false }).disabled).toBe(false);
    const off = resolveEnv({ OTEL_SDK_DISABLED: 'false' }, { disabled: true });
    expect(off).toMatchObject({ disabled: true, disabledReason: '{ disabled: true }' });
  });
});

describe('resolveSdkConfig: service name, version and resource attributes', () => {
  it('OTEL_SERVICE_NAME wins over service.name in OTEL_RESOURCE_ATTRIBUTES', () => {
    const config = resolveEnv({ OTEL_SERVICE_NAME: 'orders', OTEL_RESOURCE_ATTRIBUTES: 'service.name=other' });
    expect(config.serviceName).toBe('orders');
    expect(config.resourceAttributes).toEqual({});
  });

  it('service.name and service.version come from OTEL_RESOURCE_ATTRIBUTES when nothing else sets them', () => {
    const config = resolveEnv({ OTEL_RESOURCE_ATTRIBUTES: 'service.name=billing,service.version=2.0.1' });
    expect(config).toMatchObject({ serviceName: 'billing', serviceVersion: '2.0.1', resourceAttributes: {} });
  });

  it('explicit serviceName and serviceVersion win over every variable', () => {
    const config = resolveEnv(
      { OTEL_SERVICE_NAME: 'env', OTEL_RESOURCE_ATTRIBUTES: 'service.version=0.0.1' },
      { serviceName: 'explicit', serviceVersion: '9.9.9' },
    );
    expect(config).toMatchObject({ serviceName: 'explicit', serviceVersion: '9.9.9' });
  });

  it('explicit resourceAttributes service.name wins over OTEL_SERVICE_NAME, serviceName over both', () => {
    const attributes = { 'service.name': 'from-attributes', 'service.version': '3.0.0' };
    expect(resolveEnv({ OTEL_SERVICE_NAME: 'env' }, { resourceAttributes: attributes })).toMatchObject({
      serviceName: 'from-attributes',
      serviceVersion: '3.0.0',
      resourceAttributes: {},
    });
    expect(resolveEnv({}, { serviceName: 'option', resourceAttributes: attributes }).serviceName).toBe('option');
  });

  it('percent-decodes OTEL_RESOURCE_ATTRIBUTES keys and values and trims blanks', () => {
    const config = resolveEnv({
      OTEL_RESOURCE_ATTRIBUTES: ' team=a%2Cb , deployment.environment.name=prod%20eu,,k%3Dey=v%3D1 ',
    });
    expect(config.resourceAttributes).toEqual({
      team: 'a,b',
      'deployment.environment.name': 'prod eu',
      'k=ey': 'v=1',
    });
    expect(config.warnings).toEqual([]);
  });

  it('explicit resourceAttributes are merged over the variable', () => {
    const config = resolveEnv(
      { OTEL_RESOURCE_ATTRIBUTES: 'team=payments,region=eu' },
      { resourceAttributes: { region: 'us', 'host.count': 3 } },
    );
    expect(config.resourceAttributes).toEqual({ team: 'payments', region: 'us', 'host.count': 3 });
  });

  it.each([
    ['a=1,broken,c=3', 'broken'],
    ['a=1,=novalue', '=novalue'],
    ['a=b=c', 'a=b=c'],
    ['a=%E0%A4%A', 'a=%E0%A4%A'],
  ])('an invalid entry in %j discards the whole variable, with a warning', (raw, entry) => {
    const config = resolveEnv({ OTEL_RESOURCE_ATTRIBUTES: raw, OTEL_SERVICE_NAME: 'svc' });
    expect(config.resourceAttributes).toEqual({});
    expect(config.serviceName).toBe('svc');
    expect(config.warnings).toEqual([
      `otel-nest: OTEL_RESOURCE_ATTRIBUTES is ignored as a whole, as the OpenTelemetry specification asks: ` +
        `the entry ${JSON.stringify(entry)} is not a valid key=value pair with percent-encoded key and value. ` +
        "Use key1=value1,key2=value2 and percent-encode ',' and '=' (e.g. team=a%2Cb).",
    ]);
  });
});

describe('resolveSdkConfig: exporter', () => {
  it.each([
    ['console', 'console'],
    ['CONSOLE', 'console'],
    ['none', 'none'],
    ['otlp', 'otlp'],
  ] as const)('OTEL_TRACES_EXPORTER=%s selects %s', (value, kind) => {
    const config = resolveEnv({ OTEL_TRACES_EXPORTER: value });
    expect(config.exporter.kind).toBe(kind);
    expect(config.warnings).toEqual([]);
  });

  it('an unsupported value warns and falls back to otlp', () => {
    const config = resolveEnv({ OTEL_TRACES_EXPORTER: 'zipkin' });
    expect(config.exporter.kind).toBe('otlp');
    expect(config.warnings).toEqual([
      'otel-nest: OTEL_TRACES_EXPORTER="zipkin": "zipkin" is not supported by otel-nest (supported: otlp, console, none); ' +
        '"otlp" is used. To export elsewhere, pass a SpanExporter as { exporter }.',
    ]);
  });

  it('a list takes its first supported value, warning about the unsupported ones', () => {
    const config = resolveEnv({ OTEL_TRACES_EXPORTER: 'zipkin, console' });
    expect(config.exporter.kind).toBe('console');
    expect(config.warnings).toHaveLength(1);
    expect(config.warnings[0]).toContain('"zipkin" is not supported');
    expect(config.warnings[0]).toContain('"console" is used');
  });

  it('a list of several supported exporters uses the first and says so', () => {
    const config = resolveEnv({ OTEL_TRACES_EXPORTER: 'otlp,console' });
    expect(config.exporter.kind).toBe('otlp');
    expect(config.warnings).toEqual([
      'otel-nest: OTEL_TRACES_EXPORTER="otlp,console" lists several exporters; otel-nest uses one, "otlp". ' +
        'To export to several, pass one as { exporter } and add a processor for the others in { spanProcessors }.',
    ]);
  });

  it('explicit exporter wins over OTEL_TRACES_EXPORTER', () => {
    expect(resolveEnv({ OTEL_TRACES_EXPORTER: 'console' }, { exporter: 'none' }).exporter).toEqual({ kind: 'none' });
    expect(resolveEnv({ OTEL_TRACES_EXPORTER: 'none' }, { exporter: { url: 'http://c:4318/v1/traces' } }).exporter)
      .toMatchObject({ kind: 'otlp', url: 'http://c:4318/v1/traces' });
  });

  it('a SpanExporter instance is used as is, and named in the summary', () => {
    const exporter = new InMemorySpanExporter();
    const config = resolveEnv({ OTEL_TRACES_EXPORTER: 'console' }, { exporter });
    expect(config.exporter).toEqual({ kind: 'instance', exporter });
    expect(describeExporter(config.exporter)).toBe('InMemorySpanExporter');
  });

  it.each([
    ['http://collector:4318', 'http://collector:4318/v1/traces'],
    ['http://collector:4318/', 'http://collector:4318/v1/traces'],
    ['https://gw.example.com/otlp/', 'https://gw.example.com/otlp/v1/traces'],
  ])('OTEL_EXPORTER_OTLP_ENDPOINT=%s gets /v1/traces appended', (endpoint, url) => {
    expect(resolveEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: endpoint }).exporter).toMatchObject({ url });
  });

  it('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is used as is and wins over the base endpoint', () => {
    const config = resolveEnv({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://base:4318',
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://traces:9999/custom',
    });
    expect(config.exporter).toMatchObject({ url: 'http://traces:9999/custom' });
    expect(describeExporter(config.exporter)).toBe('otlp http://traces:9999/custom');
  });

  it('explicit url wins over both endpoint variables', () => {
    const config = resolveEnv(
      { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://base:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://traces:1/x' },
      { exporter: { url: 'https://explicit/v1/traces' } },
    );
    expect(config.exporter).toMatchObject({ url: 'https://explicit/v1/traces' });
  });

  it('an invalid traces endpoint warns and falls back to the base endpoint', () => {
    const config = resolveEnv({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://base:4318',
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'collector:4318',
    });
    expect(config.exporter).toMatchObject({ url: 'http://base:4318/v1/traces' });
    expect(config.warnings).toEqual([
      'otel-nest: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="collector:4318" is not an http:// or https:// URL; ' +
        'it is ignored and http://base:4318/v1/traces is used.',
    ]);
  });

  it('an invalid base endpoint warns and falls back to the default', () => {
    const config = resolveEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'not a url' });
    expect(config.exporter).toMatchObject({ url: SDK_DEFAULTS.otlpTracesUrl });
    expect(config.warnings).toEqual([
      'otel-nest: OTEL_EXPORTER_OTLP_ENDPOINT="not a url" is not an http:// or https:// URL; ' +
        'it is ignored and http://localhost:4318/v1/traces is used.',
    ]);
  });

  it('merges headers per key: traces variable over generic, explicit over both; values percent-decoded', () => {
    const config = resolveEnv(
      {
        OTEL_EXPORTER_OTLP_HEADERS: 'a=1,b=2,authorization=Basic%20dXNlcjpwYXNz',
        OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'b=3,c=4',
      },
      { exporter: { headers: { c: 'explicit' } } },
    );
    expect(config.exporter).toMatchObject({
      headers: { a: '1', b: '3', c: 'explicit', authorization: 'Basic dXNlcjpwYXNz' },
    });
  });

  it('keeps unencoded = padding in header values (base64 credentials)', () => {
    const config = resolveEnv({ OTEL_EXPORTER_OTLP_HEADERS: 'x-api-key=YWJjZA==' });
    expect(config.exporter).toMatchObject({ headers: { 'x-api-key': 'YWJjZA==' } });
    expect(config.warnings).toEqual([]);
  });

  it('skips a bad header entry with a warning that never shows a header value', () => {
    const config = resolveEnv({ OTEL_EXPORTER_OTLP_HEADERS: 'good=1,=secret-value,bad=%E0%A4%A' });
    expect(config.exporter).toMatchObject({ headers: { good: '1' } });
    expect(config.warnings).toEqual([
      'otel-nest: OTEL_EXPORTER_OTLP_HEADERS: the entry #2 is not a valid key=value pair or cannot be percent-decoded; ' +
        'it is skipped. Use key1=value1,key2=value2, e.g. x-api-key=secret.',
      'otel-nest: OTEL_EXPORTER_OTLP_HEADERS: the entry #3 ("bad") is not a valid key=value pair or cannot be ' +
        'percent-decoded; it is skipped. Use key1=value1,key2=value2, e.g. x-api-key=secret.',
    ]);
    expect(config.warnings.join()).not.toContain('secret-value');
  });

  it('timeout: explicit over OTEL_EXPORTER_OTLP_TRACES_TIMEOUT over OTEL_EXPORTER_OTLP_TIMEOUT over 10000', () => {
    expect(resolveEnv({ OTEL_EXPORTER_OTLP_TIMEOUT: '2000' }).exporter).toMatchObject({ timeoutMillis: 2000 });
    expect(
      resolveEnv({ OTEL_EXPORTER_OTLP_TIMEOUT: '2000', OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: '3000' }).exporter,
    ).toMatchObject({ timeoutMillis: 3000 });
    expect(
      resolveEnv({ OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: '3000' }, { exporter: { timeoutMillis: 500 } }).exporter,
    ).toMatchObject({ timeoutMillis: 500 });
  });

  it('an invalid timeout warns and names the value used instead', () => {
    const config = resolveEnv({ OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: 'soon', OTEL_EXPORTER_OTLP_TIMEOUT: '2500' });
    expect(config.exporter).toMatchObject({ timeoutMillis: 2500 });
    expect(config.warnings).toEqual([
      'otel-nest: OTEL_EXPORTER_OTLP_TRACES_TIMEOUT="soon" is not a positive integer; it is ignored and 2500 is used.',
    ]);
  });

  it('warns about an OTLP protocol it cannot speak (gRPC), not about http/protobuf', () => {
    expect(resolveEnv({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf' }).warnings).toEqual([]);
    const config = resolveEnv({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'grpc' });
    expect(config.warnings).toHaveLength(1);
    expect(config.warnings[0]).toMatch(/^otel-nest: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="grpc" is not supported: /);
  });

  it('does not read OTLP variables for a non-OTLP exporter', () => {
    const config = resolveEnv({ OTEL_TRACES_EXPORTER: 'console', OTEL_EXPORTER_OTLP_ENDPOINT: 'bad url' });
    expect(config.exporter).toEqual({ kind: 'console' });
    expect(describeExporter(config.exporter)).toBe('console');
    expect(config.warnings).toEqual([]);
  });
});

describe('resolveSdkConfig: sampler', () => {
  it.each([
    ['always_on', 'AlwaysOn'],
    ['always_off', 'AlwaysOff'],
    ['traceidratio', 'TraceIdRatio{1}'],
    ['parentbased_always_on', 'ParentBased(AlwaysOn)'],
    ['parentbased_always_off', 'ParentBased(AlwaysOff)'],
    ['parentbased_traceidratio', 'ParentBased(TraceIdRatio{1})'],
    ['ParentBased_Always_Off', 'ParentBased(AlwaysOff)'],
  ])('OTEL_TRACES_SAMPLER=%s is described as %s', (name, description) => {
    const config = resolveEnv({ OTEL_TRACES_SAMPLER: name });
    expect(config.sampler).toMatchObject({ kind: 'named', name: name.toLowerCase() });
    expect(describeSampler(config.sampler)).toBe(description);
    expect(config.warnings).toEqual([]);
  });

  it('OTEL_TRACES_SAMPLER_ARG sets the ratio of a ratio sampler', () => {
    const config = resolveEnv({ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.25' });
    expect(config.sampler).toEqual({ kind: 'named', name: 'parentbased_traceidratio', ratio: 0.25 });
    expect(describeSampler(config.sampler)).toBe('ParentBased(TraceIdRatio{0.25})');
  });

  it('OTEL_TRACES_SAMPLER_ARG is not read for other samplers', () => {
    const config = resolveEnv({ OTEL_TRACES_SAMPLER: 'always_on', OTEL_TRACES_SAMPLER_ARG: 'garbage' });
    expect(config.sampler).toEqual({ kind: 'named', name: 'always_on' });
    expect(config.warnings).toEqual([]);
  });

  it.each(['abc', '1.5', '-0.1'])('a bad OTEL_TRACES_SAMPLER_ARG=%s warns and samples everything', (arg) => {
    const config = resolveEnv({ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: arg });
    expect(config.sampler).toEqual({ kind: 'named', name: 'traceidratio', ratio: 1 });
    expect(config.warnings).toEqual([
      `otel-nest: OTEL_TRACES_SAMPLER_ARG=${JSON.stringify(arg)} is not a number between 0 and 1; ` +
        'traceidratio samples with ratio 1.0. Use e.g. OTEL_TRACES_SAMPLER_ARG=0.25.',
    ]);
  });

  it('an unknown sampler warns and falls back to parentbased_always_on', () => {
    const config = resolveEnv({ OTEL_TRACES_SAMPLER: 'jaeger_remote' });
    expect(config.sampler).toEqual({ kind: 'named', name: 'parentbased_always_on' });
    expect(config.warnings).toEqual([
      'otel-nest: OTEL_TRACES_SAMPLER="jaeger_remote" is not supported by otel-nest (supported: always_on, ' +
        'always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio); ' +
        '"parentbased_always_on" is used.',
    ]);
  });

  it('explicit { ratio } wins over both variables; parentBased: false drops the parent rule', () => {
    const env = { OTEL_TRACES_SAMPLER: 'always_off', OTEL_TRACES_SAMPLER_ARG: '0.9' };
    expect(resolveEnv(env, { sampler: { ratio: 0.1 } }).sampler).toEqual({
      kind: 'named',
      name: 'parentbased_traceidratio',
      ratio: 0.1,
    });
    const unparented = resolveEnv(env, { sampler: { ratio: 0, parentBased: false } });
    expect(describeSampler(unparented.sampler)).toBe('TraceIdRatio{0}');
  });

  it('an explicit ratio sampler name still takes its ratio from OTEL_TRACES_SAMPLER_ARG', () => {
    const config = resolveEnv({ OTEL_TRACES_SAMPLER: 'always_off', OTEL_TRACES_SAMPLER_ARG: '0.5' }, { sampler: 'traceidratio' });
    expect(config.sampler).toEqual({ kind: 'named', name: 'traceidratio', ratio: 0.5 });
  });

  it('a Sampler instance is used as is and described by its toString()', () => {
    const sampler = new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(0.3) });
    const config = resolveEnv({ OTEL_TRACES_SAMPLER: 'always_off' }, { sampler });
    expect(config.sampler).toEqual({ kind: 'instance', sampler });
    expect(describeSampler(config.sampler)).toMatch(/^ParentBased\{root=TraceIdRatioBased\{0.3\}/);
    const plain = { shouldSample: new AlwaysOnSampler().shouldSample };
    expect(describeSampler(resolveEnv({}, { sampler: plain }).sampler)).toBe('Sampler');
  });
});

describe('resolveSdkConfig: batch', () => {
  it('reads the four OTEL_BSP_* variables', () => {
    const config = resolveEnv({
      OTEL_BSP_SCHEDULE_DELAY: '100',
      OTEL_BSP_EXPORT_TIMEOUT: '2000',
      OTEL_BSP_MAX_QUEUE_SIZE: '300',
      OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '30',
    });
    expect(config.batch).toEqual({
      scheduledDelayMillis: 100,
      exportTimeoutMillis: 2000,
      maxQueueSize: 300,
      maxExportBatchSize: 30,
    });
  });

  it('explicit settings win per field; batch: false ignores the variables', () => {
    const env = { OTEL_BSP_SCHEDULE_DELAY: '100', OTEL_BSP_MAX_QUEUE_SIZE: '300' };
    expect(resolveEnv(env, { batch: { scheduledDelayMillis: 7 } }).batch).toMatchObject({
      scheduledDelayMillis: 7,
      maxQueueSize: 300,
    });
    expect(resolveEnv(env, { batch: false }).batch).toBe(false);
  });

  it.each(['0', '-5', '1.5', 'abc'])('an invalid OTEL_BSP_MAX_QUEUE_SIZE=%s warns and uses the default', (raw) => {
    const config = resolveEnv({ OTEL_BSP_MAX_QUEUE_SIZE: raw });
    expect(config.batch).toMatchObject({ maxQueueSize: 2048 });
    expect(config.warnings).toEqual([
      `otel-nest: OTEL_BSP_MAX_QUEUE_SIZE=${JSON.stringify(raw)} is not a positive integer; it is ignored and 2048 is used.`,
    ]);
  });

  it('an export batch larger than the queue, both from the environment, is clamped with a warning', () => {
    const config = resolveEnv({ OTEL_BSP_MAX_QUEUE_SIZE: '100', OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '400' });
    expect(config.batch).toMatchObject({ maxQueueSize: 100, maxExportBatchSize: 100 });
    expect(config.warnings).toEqual([
      'otel-nest: the export batch size (400, OTEL_BSP_MAX_EXPORT_BATCH_SIZE) is larger than the queue size ' +
        '(100, OTEL_BSP_MAX_QUEUE_SIZE); 100 is used. Set OTEL_BSP_MAX_EXPORT_BATCH_SIZE to at most OTEL_BSP_MAX_QUEUE_SIZE.',
    ]);
  });
});

describe('resolveSdkConfig: propagators', () => {
  it.each([
    ['b3,tracecontext', ['b3', 'tracecontext']],
    ['TraceContext, B3Multi', ['tracecontext', 'b3multi']],
    ['baggage,baggage,tracecontext', ['baggage', 'tracecontext']],
    ['none', []],
  ])('OTEL_PROPAGATORS=%j gives %j', (raw, names) => {
    const config = resolveEnv({ OTEL_PROPAGATORS: raw });
    expect(config.propagators).toEqual({ kind: 'named', names });
    expect(describePropagators(config.propagators)).toBe(names.join(',') || 'none');
    expect(config.warnings).toEqual([]);
  });

  it("'none' together with others wins, with a warning", () => {
    const config = resolveEnv({ OTEL_PROPAGATORS: 'none,b3' });
    expect(config.propagators).toEqual({ kind: 'named', names: [] });
    expect(config.warnings).toEqual([
      `otel-nest: OTEL_PROPAGATORS="none,b3" lists 'none' together with other propagators; 'none' wins and no ` +
        "context is propagated. Remove 'none' to propagate.",
    ]);
  });

  it('unknown values are skipped with a warning', () => {
    const config = resolveEnv({ OTEL_PROPAGATORS: 'xray,b3,ottrace' });
    expect(config.propagators).toEqual({ kind: 'named', names: ['b3'] });
    expect(config.warnings).toEqual([
      'otel-nest: OTEL_PROPAGATORS="xray,b3,ottrace": "xray", "ottrace" are not supported by otel-nest and skipped ' +
        '(supported: tracecontext, baggage, b3, b3multi, none); propagators used: b3.',
    ]);
  });

  it('jaeger (not built in since SDK 3) is skipped with a warning that says how to add it', () => {
    const config = resolveEnv({ OTEL_PROPAGATORS: 'tracecontext,jaeger' });
    expect(config.propagators).toEqual({ kind: 'named', names: ['tracecontext'] });
    expect(config.warnings).toHaveLength(1);
    expect(config.warnings[0]).toContain('"jaeger" is not supported by otel-nest and skipped');
    expect(config.warnings[0]).toContain('install @opentelemetry/propagator-jaeger and pass { propagators:');
  });

  it('when nothing known is left, the default is kept (and the warning says so)', () => {
    const config = resolveEnv({ OTEL_PROPAGATORS: 'xray' });
    expect(config.propagators).toEqual({ kind: 'named', names: ['tracecontext', 'baggage'] });
    expect(config.warnings[0]).toContain('propagators used: tracecontext, baggage.');
  });

  it('explicit propagators win; a TextMapPropagator instance is used as is', () => {
    expect(resolveEnv({ OTEL_PROPAGATORS: 'b3' }, { propagators: ['b3multi', 'baggage'] }).propagators)
      .toEqual({ kind: 'named', names: ['b3multi', 'baggage'] });
    expect(resolveEnv({ OTEL_PROPAGATORS: 'b3' }, { propagators: ['none'] }).propagators).toEqual({ kind: 'named', names: [] });
    const propagator = new W3CTraceContextPropagator();
    const config = resolveEnv({ OTEL_PROPAGATORS: 'b3' }, { propagators: propagator });
    expect(config.propagators).toEqual({ kind: 'instance', propagator });
    expect(describePropagators(config.propagators)).toBe('W3CTraceContextPropagator');
  });
});

describe('resolveSdkConfig: span limits', () => {
  it('reads the span limit variables', () => {
    const config = resolveEnv({
      OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT: '256',
      OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT: '64',
      OTEL_SPAN_EVENT_COUNT_LIMIT: '16',
      OTEL_SPAN_LINK_COUNT_LIMIT: '8',
    });
    expect(config.spanLimits).toEqual({
      attributeValueLengthLimit: 256,
      attributeCountLimit: 64,
      eventCountLimit: 16,
      linkCountLimit: 8,
      attributePerEventCountLimit: 128,
      attributePerLinkCountLimit: 128,
    });
  });

  it('span-specific variables win over the general ones', () => {
    const config = resolveEnv({
      OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT: '256',
      OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT: '100',
      OTEL_ATTRIBUTE_COUNT_LIMIT: '50',
    });
    expect(config.spanLimits).toMatchObject({
      attributeValueLengthLimit: 100,
      attributeCountLimit: 50,
      attributePerEventCountLimit: 50,
      attributePerLinkCountLimit: 50,
    });
  });

  it('explicit limits win per field; 0 is a valid limit', () => {
    const config = resolveEnv(
      { OTEL_SPAN_EVENT_COUNT_LIMIT: '16', OTEL_SPAN_LINK_COUNT_LIMIT: '8' },
      { spanLimits: { eventCountLimit: 0 } },
    );
    expect(config.spanLimits).toMatchObject({ eventCountLimit: 0, linkCountLimit: 8 });
  });

  it('an invalid limit warns and names the value used instead', () => {
    const config = resolveEnv({ OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT: '-1', OTEL_ATTRIBUTE_COUNT_LIMIT: '40' });
    expect(config.spanLimits.attributeCountLimit).toBe(40);
    expect(config.warnings).toEqual([
      'otel-nest: OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT="-1" is not a non-negative integer; it is ignored and 40 is used.',
    ]);
  });
});

describe('resolveSdkConfig: other options', () => {
  it('keeps span processors, de-duplicates baggage keys, and lists the explicit SDK options', () => {
    const processor = new SimpleSpanProcessor({ exporter: new InMemorySpanExporter() });
    const config = resolveEnv(
      {},
      {
        serviceName: 'svc',
        sampler: 'always_on',
        spanProcessors: [processor],
        baggageToAttributes: ['tenant.id', 'user.id', 'tenant.id'],
        http: false,
        logSummary: false,
      },
    );
    expect(config.spanProcessors).toEqual([processor]);
    expect(config.baggageToAttributes).toEqual(['tenant.id', 'user.id']);
    expect(config.explicitSdkOptions).toEqual(['serviceName', 'sampler', 'spanProcessors']);
    expect(config.logSummary).toBe(false);
  });
});
