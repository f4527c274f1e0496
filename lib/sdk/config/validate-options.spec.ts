import {
  AlwaysOnSampler,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { describe, expect, it } from 'vitest';
import type { OtelModuleOptions } from '../../interfaces/otel-module-options.interface.js';
import { OtelConfigError as OtelConfigErrorFromMessages } from '../../otel.messages.js';
import { OtelConfigError, resolveSdkConfig } from './index.js';
import { validateOptions } from './validate-options.js';
import { suggestOption } from './suggest.js';

function thrown(options: unknown): OtelConfigError {
  try {
    resolveSdkConfig(options as OtelModuleOptions, {});
  } catch (error) {
    expect(error).toBeInstanceOf(OtelConfigError);
    return error as OtelConfigError;
  }
  throw new Error(`expected ${JSON.stringify(options)} to be rejected`);
}

describe('suggestOption', () => {
  it.each([
    ['servicename', 'serviceName'],
    ['serviceNmae', 'serviceName'],
    ['propagator', 'propagators'],
    ['name', 'serviceName'],
    ['colour', undefined],
  ])('%s -> %s', (key, meant) => {
    expect(suggestOption(key, ['serviceName', 'serviceVersion', 'propagators'])).toBe(meant);
  });

  it('suggests an alias only when the option it stands for exists here', () => {
    expect(suggestOption('endpoint', ['url', 'headers', 'timeoutMillis'])).toBe('url');
    expect(suggestOption('endpoint', ['serviceName'])).toBeUndefined();
  });
});

describe('validateOptions', () => {
  it('returns the options it accepted, unchanged, and {} for none', () => {
    const options: OtelModuleOptions = { serviceName: 'a' };
    expect(validateOptions(options)).toBe(options);
    expect(validateOptions(undefined)).toEqual({});
  });
});

describe('resolveSdkConfig: explicit options that are wrong throw OtelConfigError', () => {
  it('with the exact message of the documented example', () => {
    expect(() => resolveSdkConfig({ sampler: { ratio: 1.5 } }, {})).toThrow(
      new OtelConfigError(
        'otel-nest: "sampler.ratio" must be a number between 0 and 1, got 1.5. Use e.g. { sampler: { ratio: 0.25 } }.',
      ),
    );
    const error = thrown({ sampler: { ratio: 1.5 } });
    expect(error.name).toBe('OtelConfigError');
    // One class, whichever module it is imported from.
    expect(error).toBeInstanceOf(OtelConfigErrorFromMessages);
  });

  it('names an unknown option, suggests the one meant, and lists the known ones', () => {
    expect(thrown({ servicename: 'orders' }).message).toBe(
      'otel-nest: unknown option "servicename" (did you mean "serviceName"?) in OtelModule.forRoot() options. ' +
        'Known options: serviceName, serviceVersion, resourceAttributes, exporter, batch, sampler, spanLimits, ' +
        'propagators, spanProcessors, redact, baggageToAttributes, requestId, baggage, http, httpClient, metrics, logSummary, disabled, enhancerSpans. ' +
        'Fix the spelling or remove it.',
    );
    expect(thrown({ propagator: ['b3'], colour: 'blue' }).message).toContain(
      'unknown options "propagator" (did you mean "propagators"?), "colour" in OtelModule.forRoot() options.',
    );
  });

  it.each<[string, unknown, string]>([
    ['options', null, '"options" must be an object, got null. Use e.g. OtelModule.forRoot({ serviceName: \'orders\' }).'],
    ['serviceName', { serviceName: '' }, `"serviceName" must be a non-empty string, got "". Use e.g. { serviceName: 'orders' }.`],
    ['serviceName', { serviceName: 42 }, '"serviceName" must be a non-empty string, got 42.'],
    ['serviceVersion', { serviceVersion: ' ' }, '"serviceVersion" must be a non-empty string, got " ".'],
    ['resourceAttributes', { resourceAttributes: 'team=a' }, '"resourceAttributes" must be an object of attribute values, got "team=a".'],
    [
      'resourceAttributes value',
      { resourceAttributes: { team: { name: 'a' } } },
      `"resourceAttributes['team']" must be a string, a number, a boolean, or an array of one of these, got an object.`,
    ],
    [
      'resourceAttributes mixed array',
      { resourceAttributes: { ids: [1, 'a'] } },
      `"resourceAttributes['ids']" must be a string, a number, a boolean, or an array of one of these, got an array.`,
    ],
    [
      'resourceAttributes service.name',
      { resourceAttributes: { 'service.name': 7 } },
      `"resourceAttributes['service.name']" must be a non-empty string, got 7. Use e.g. { serviceName: 'orders', serviceVersion: '1.4.2' }.`,
    ],
    ['exporter name', { exporter: 'jaeger' }, `"exporter" must be 'otlp', 'console', 'none', an OTLP options object or a SpanExporter, got "jaeger".`],
    ['exporter type', { exporter: 42 }, '"exporter" must be \'otlp\', \'console\', \'none\', an OTLP options object or a SpanExporter, got 42.'],
    ['exporter.url scheme', { exporter: { url: 'ftp://c/v1/traces' } }, `"exporter.url" must be an http:// or https:// URL, got "ftp://c/v1/traces". Use e.g. { exporter: { url: 'http://localhost:4318/v1/traces' } }.`],
    ['exporter.url garbage', { exporter: { url: 'localhost' } }, '"exporter.url" must be an http:// or https:// URL, got "localhost".'],
    ['exporter.headers', { exporter: { headers: 'k=v' } }, '"exporter.headers" must be an object of string values, got "k=v".'],
    ['exporter.headers value', { exporter: { headers: { k: 1 } } }, `"exporter.headers['k']" must be a string, got 1.`],
    ['exporter.timeoutMillis 0', { exporter: { timeoutMillis: 0 } }, '"exporter.timeoutMillis" must be a positive number of milliseconds, got 0. Use e.g. { exporter: { timeoutMillis: 10000 } }.'],
    ['exporter.timeoutMillis string', { exporter: { timeoutMillis: '5s' } }, '"exporter.timeoutMillis" must be a positive number of milliseconds, got "5s".'],
    ['exporter unknown key', { exporter: { endpoint: 'http://c' } }, 'unknown option "endpoint" (did you mean "url"?) in "exporter". Known options: url, headers, timeoutMillis.'],
    ['exporter without shutdown', { exporter: { export: () => undefined } }, 'otel-nest: "exporter" has an export() method but no shutdown() method, got an object. A SpanExporter needs both; add shutdown() (it may return Promise.resolve()).'],
    ['batch true', { batch: true }, '"batch" must be false or an object of BatchSpanProcessor settings, got true. Use e.g. { batch: { scheduledDelayMillis: 1000 } } or { batch: false }.'],
    ['batch zero', { batch: { maxQueueSize: 0 } }, '"batch.maxQueueSize" must be a positive integer, got 0. Use e.g. { batch: { maxQueueSize: 2048, maxExportBatchSize: 512 } }.'],
    ['batch fraction', { batch: { scheduledDelayMillis: 1.5 } }, '"batch.scheduledDelayMillis" must be a positive integer, got 1.5.'],
    ['batch unknown key', { batch: { delay: 5 } }, 'unknown option "delay" in "batch". Known options: maxQueueSize, maxExportBatchSize, scheduledDelayMillis, exportTimeoutMillis.'],
    [
      'batch size above queue',
      { batch: { maxQueueSize: 100, maxExportBatchSize: 1000 } },
      'otel-nest: "batch.maxExportBatchSize" (1000) must not be larger than "batch.maxQueueSize" (100). Use e.g. { batch: { maxQueueSize: 1000, maxExportBatchSize: 100 } }.',
    ],
    ['batch queue below default batch', { batch: { maxQueueSize: 100 } }, '"batch.maxExportBatchSize" (512) must not be larger than "batch.maxQueueSize" (100).'],
    ['sampler name', { sampler: 'sometimes' }, `"sampler" must be one of 'always_on', 'always_off', 'traceidratio', 'parentbased_always_on', 'parentbased_always_off', 'parentbased_traceidratio', an object { ratio }, an object { rules, default } or a Sampler instance, got "sometimes".`],
    ['sampler object without ratio', { sampler: {} }, '"sampler" must be one of'],
    ['sampler.ratio string', { sampler: { ratio: '0.5' } }, '"sampler.ratio" must be a number between 0 and 1, got "0.5".'],
    ['sampler.ratio negative', { sampler: { ratio: -0.1 } }, '"sampler.ratio" must be a number between 0 and 1, got -0.1.'],
    ['sampler.parentBased', { sampler: { ratio: 0.5, parentBased: 'no' } }, '"sampler.parentBased" must be a boolean, got "no". Use e.g. { sampler: { ratio: 0.25, parentBased: false } }.'],
    ['sampler unknown key', { sampler: { ratio: 0.5, rate: 1 } }, 'unknown option "rate" (did you mean "ratio"?) in "sampler".'],
    ['sampler.rules not an array', { sampler: { rules: '/health' } }, '"sampler.rules" must be an array of rules, got "/health".'],
    ['sampler.rules[i].sample', { sampler: { rules: [{ route: '/a', sample: 'drop' }, { route: '/b', sample: 2 }] } }, `"sampler.rules[1].sample" must be 'drop', 'always', a ratio between 0 and 1 or { ratio }, got 2.`],
    ['sampler.rules[i].route', { sampler: { rules: [{ route: 42, sample: 'drop' }] } }, '"sampler.rules[0].route" must be a non-empty string (with * wildcards), a RegExp, or a non-empty list of them, got 42.'],
    ['sampler.rules[i] unknown key', { sampler: { rules: [{ path: '/a', sample: 'drop' }] } }, 'unknown option "path" in "sampler.rules[0]".'],
    ['sampler.default', { sampler: { rules: [], default: 'keep' } }, '"sampler.default" must be'],
    ['sampler rules and ratio together', { sampler: { rules: [], ratio: 0.5 } }, 'unknown option "ratio" in "sampler".'],
    ['spanLimits type', { spanLimits: 64 }, '"spanLimits" must be an object, got 64.'],
    ['spanLimits negative', { spanLimits: { attributeCountLimit: -1 } }, '"spanLimits.attributeCountLimit" must be a non-negative integer (or Infinity), got -1. Use e.g. { spanLimits: { eventCountLimit: 64 } }.'],
    ['spanLimits unknown key', { spanLimits: { attributeCount: 1 } }, 'unknown option "attributeCount" in "spanLimits".'],
    ['propagators string', { propagators: 'tracecontext' }, `"propagators" must be an array of 'tracecontext', 'baggage', 'b3', 'b3multi' or 'none', or a TextMapPropagator (for Jaeger's uber-trace-id, a CompositePropagator holding a JaegerPropagator), got "tracecontext".`],
    ['propagators unknown name', { propagators: ['tracecontext', 'w3c'] }, `"propagators[1]" must be one of 'tracecontext', 'baggage', 'b3', 'b3multi', 'none' (jaeger is not built in: pass a TextMapPropagator instance), got "w3c". Use e.g. { propagators: ['tracecontext', 'baggage'] }.`],
    ['propagators none combined', { propagators: ['none', 'b3'] }, `otel-nest: "propagators" lists 'none' together with other propagators ("none", "b3"). Use { propagators: ['none'] } alone to turn propagation off, or list only the propagators you want.`],
    ['propagators incomplete object', { propagators: { inject: () => undefined } }, '"propagators" must be an array of'],
    ['spanProcessors type', { spanProcessors: {} }, '"spanProcessors" must be an array of SpanProcessor instances, got an object.'],
    ['spanProcessors item', { spanProcessors: [{ onEnd: () => undefined }] }, '"spanProcessors[0]" must be a SpanProcessor (an object with onStart, onEnd, forceFlush and shutdown methods), got an object.'],
    ['baggageToAttributes type', { baggageToAttributes: 'tenant.id' }, `"baggageToAttributes" must be an array of baggage keys, got "tenant.id". Use e.g. { baggageToAttributes: ['tenant.id', 'user.id'] }.`],
    ['baggageToAttributes item', { baggageToAttributes: ['tenant.id', ''] }, '"baggageToAttributes[1]" must be a non-empty string, got "".'],
    ['baggage type', { baggage: 'drop' }, '"baggage" must be an options object, got "drop".'],
    ['baggage unknown key', { baggage: { inbound: 'drop', max: 3 } }, 'unknown option "max" in "baggage".'],
    ['baggage.inbound', { baggage: { inbound: 'deny' } }, `"baggage.inbound" must be 'accept', 'drop' or { allow: [keys] }`],
    ['baggage.inbound.allow item', { baggage: { inbound: { allow: ['tenant.id', 3] } } }, '"baggage.inbound.allow[1]" must be a non-empty string or a RegExp, got 3.'],
    ['baggage.channels unknown channel', { baggage: { channels: { htp: 'drop' } } }, 'unknown option "htp" (did you mean "http"?) in "baggage.channels".'],
    ['baggage.channels rule', { baggage: { channels: { nats: true } } }, '"baggage.channels.nats" must be'],
    ['baggage.maxMembers', { baggage: { maxMembers: 0 } }, '"baggage.maxMembers" must be a positive integer, got 0.'],
    ['http.requestHook', { http: { requestHook: 'tenant' } }, '"http.requestHook" must be a function, got "tenant".'],
    ['http.ignore', { http: { ignore: /health/ } }, '"http.ignore" must be a function'],
    ['http', { http: 'yes' }, `"http" must be a boolean or an options object, got "yes". Use e.g. { http: { ignorePaths: ['/health'] } } or { http: false }.`],
    ['httpClient', { httpClient: 1 }, '"httpClient" must be a boolean or an options object, got 1.'],
    ['logSummary', { logSummary: 'no' }, '"logSummary" must be a boolean, got "no". Use e.g. { logSummary: false }.'],
    ['disabled', { disabled: 'true' }, `"disabled" must be a boolean, got "true". Use e.g. { disabled: process.env.NODE_ENV === 'test' }.`],
  ])('%s', (_label, options, message) => {
    const error = thrown(options);
    expect(error.message).toContain(message);
    expect(error.message.startsWith('otel-nest: ')).toBe(true);
  });

  it('accepts every valid shape without throwing', () => {
    const exporter = new InMemorySpanExporter();
    expect(() =>
      resolveSdkConfig(
        {
          serviceName: 'a',
          serviceVersion: '1',
          resourceAttributes: { a: 'b', n: 1, ok: true, list: ['x', 'y'], nothing: undefined },
          exporter,
          batch: { maxQueueSize: 10, maxExportBatchSize: 10, scheduledDelayMillis: 1, exportTimeoutMillis: 1 },
          sampler: new AlwaysOnSampler(),
          spanLimits: { attributeValueLengthLimit: Infinity, eventCountLimit: 0 },
          propagators: new W3CTraceContextPropagator(),
          spanProcessors: [new SimpleSpanProcessor({ exporter })],
          baggageToAttributes: ['tenant.id'],
          http: { ignorePaths: ['/health'] },
          httpClient: true,
          logSummary: false,
          disabled: false,
        },
        {},
      ),
    ).not.toThrow();
    expect(() => resolveSdkConfig(undefined as unknown as OtelModuleOptions, {})).not.toThrow();
  });

  it('rejects wrong options even when the SDK is disabled, so mistakes surface in every environment', () => {
    expect(() => resolveSdkConfig({ sampler: { ratio: 2 } }, { OTEL_SDK_DISABLED: 'true' })).toThrow(OtelConfigError);
  });
});
