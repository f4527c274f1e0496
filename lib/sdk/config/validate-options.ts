import type { SpanLimits } from '@opentelemetry/sdk-trace';
import type { OtelModuleOptions } from '../../interfaces/otel-module-options.interface.js';
import {
  OtelConfigError,
  exporterWithoutShutdown,
  invalidOption,
  propagatorNoneCombined,
  type OptionHintKey,
} from '../../otel.messages.js';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '../../semconv.js';
import {
  hasMethods,
  isAttributeValue,
  isHttpUrl,
  isNonEmptyString,
  isPositiveInteger,
  isRecord,
  isSampler,
  isSpanExporter,
} from './guards.js';
import { EXPORTER_NAMES, PROPAGATOR_NAMES, SAMPLER_NAMES, SDK_DEFAULTS } from './sdk-config.js';
import { rejectUnknownKeys } from './suggest.js';
import { validateEnhancerSpansOption } from '../../enhancers/enhancer-spans.config.js';
import { isRuleSamplerOptions, validateRuleSamplerOptions } from '../sampling-rules.js';
import { validateMetricsOption } from './validate-metrics.js';
import { validateRedactOption } from '../../redaction/redaction-options.js';
import { validateHttpCaptureOptions } from '../../http/http-capture.js';
import { BAGGAGE_CHANNELS } from '../../propagation/baggage-policy.js';

// Typed as a Record so that adding an option to OtelModuleOptions fails to compile until it is
// listed here; otherwise the new option would be rejected at runtime as unknown.
const KNOWN_OPTIONS: Record<keyof OtelModuleOptions, true> = {
  serviceName: true,
  serviceVersion: true,
  resourceAttributes: true,
  exporter: true,
  batch: true,
  sampler: true,
  spanLimits: true,
  propagators: true,
  spanProcessors: true,
  redact: true,
  baggageToAttributes: true,
  requestId: true,
  baggage: true,
  http: true,
  httpClient: true,
  metrics: true,
  logSummary: true,
  disabled: true,
  enhancerSpans: true,
};
const KNOWN_OTLP_OPTIONS = ['url', 'headers', 'timeoutMillis'] as const;
const KNOWN_BATCH_OPTIONS = ['maxQueueSize', 'maxExportBatchSize', 'scheduledDelayMillis', 'exportTimeoutMillis'] as const;
const KNOWN_SPAN_LIMITS = Object.keys(SDK_DEFAULTS.spanLimits) as Array<keyof SpanLimits>;
const KNOWN_SAMPLER_OBJECT_OPTIONS = ['ratio', 'parentBased'] as const;

function fail(hint: OptionHintKey, path: string, got: unknown): never {
  throw new OtelConfigError(invalidOption(hint, path, got));
}


/** Throws {@link OtelConfigError} for the first wrong explicit option. */
export function validateOptions(options: OtelModuleOptions | undefined): OtelModuleOptions {
  if (options === undefined) {
    return {};
  }
  if (!isRecord(options)) {
    fail('options', 'options', options);
  }
  const o = options as Record<string, unknown>;
  rejectUnknownKeys(o, Object.keys(KNOWN_OPTIONS), 'OtelModule.forRoot() options');

  if (o.serviceName !== undefined && !isNonEmptyString(o.serviceName)) {
    fail('serviceName', 'serviceName', o.serviceName);
  }
  if (o.serviceVersion !== undefined && !isNonEmptyString(o.serviceVersion)) {
    fail('serviceVersion', 'serviceVersion', o.serviceVersion);
  }
  validateResourceAttributes(o.resourceAttributes);
  validateExporter(o.exporter);
  validateBatch(o.batch);
  validateSampler(o.sampler);
  validateSpanLimits(o.spanLimits);
  validatePropagators(o.propagators);

  if (o.spanProcessors !== undefined) {
    if (!Array.isArray(o.spanProcessors)) {
      fail('spanProcessors', 'spanProcessors', o.spanProcessors);
    }
    o.spanProcessors.forEach((processor: unknown, i) => {
      if (!isRecord(processor) || !hasMethods(processor, 'onStart', 'onEnd', 'forceFlush', 'shutdown')) {
        fail('spanProcessors.*', `spanProcessors[${i}]`, processor);
      }
    });
  }
  if (o.baggageToAttributes !== undefined) {
    if (!Array.isArray(o.baggageToAttributes)) {
      fail('baggageToAttributes', 'baggageToAttributes', o.baggageToAttributes);
    }
    o.baggageToAttributes.forEach((key: unknown, i) => {
      if (!isNonEmptyString(key)) {
        fail('baggageToAttributes.*', `baggageToAttributes[${i}]`, key);
      }
    });
  }
  validateBaggagePolicy(o.baggage);
  if (isRecord(o.http)) {
    for (const key of ['requestHook', 'responseHook', 'ignore'] as const) {
      if (o.http[key] !== undefined && typeof o.http[key] !== 'function') {
        fail('http.hook', `http.${key}`, o.http[key]);
      }
    }
  }
  validateRedactOption(o.redact);
  validateHttpCaptureOptions(o.http);
  validateRequestId(o.requestId);
  validateMetricsOption(o.metrics);
  for (const key of ['http', 'httpClient'] as const) {
    if (o[key] !== undefined && typeof o[key] !== 'boolean' && !isRecord(o[key])) {
      fail(key, key, o[key]);
    }
  }
  validateEnhancerSpansOption(o.enhancerSpans);
  for (const key of ['logSummary', 'disabled'] as const) {
    if (o[key] !== undefined && typeof o[key] !== 'boolean') {
      fail(key, key, o[key]);
    }
  }
  return options;
}

const KNOWN_BAGGAGE_OPTIONS = ['inbound', 'channels', 'maxMembers', 'maxBytes'] as const;

function validateInboundRule(rule: unknown, path: string): void {
  if (rule === 'accept' || rule === 'drop') {
    return;
  }
  if (!isRecord(rule) || !Array.isArray(rule.allow)) {
    fail('baggage.inbound', path, rule);
  }
  rejectUnknownKeys(rule, ['allow'], `"${path}"`);
  (rule.allow as unknown[]).forEach((key, i) => {
    if (!isNonEmptyString(key) && !(key instanceof RegExp)) {
      fail('baggage.inbound.allow.*', `${path}.allow[${i}]`, key);
    }
  });
}

function validateBaggagePolicy(value: unknown): void {
  if (value === undefined) {
    return;
  }
  if (!isRecord(value)) {
    fail('baggage', 'baggage', value);
  }
  rejectUnknownKeys(value, KNOWN_BAGGAGE_OPTIONS, '"baggage"');
  if (value.inbound !== undefined) {
    validateInboundRule(value.inbound, 'baggage.inbound');
  }
  if (value.channels !== undefined) {
    if (!isRecord(value.channels)) {
      fail('baggage.channels', 'baggage.channels', value.channels);
    }
    rejectUnknownKeys(value.channels, BAGGAGE_CHANNELS, '"baggage.channels"');
    for (const [channel, rule] of Object.entries(value.channels)) {
      if (rule !== undefined) {
        validateInboundRule(rule, `baggage.channels.${channel}`);
      }
    }
  }
  for (const key of ['maxMembers', 'maxBytes'] as const) {
    if (value[key] !== undefined && !isPositiveInteger(value[key])) {
      fail(`baggage.${key}`, `baggage.${key}`, value[key]);
    }
  }
}

function validateResourceAttributes(value: unknown): void {
  if (value === undefined) {
    return;
  }
  if (!isRecord(value)) {
    fail('resourceAttributes', 'resourceAttributes', value);
  }
  for (const [key, attribute] of Object.entries(value)) {
    const path = `resourceAttributes['${key}']`;
    if (key === ATTR_SERVICE_NAME || key === ATTR_SERVICE_VERSION) {
      if (attribute !== undefined && !isNonEmptyString(attribute)) {
        fail('resourceAttributes.service.*', path, attribute);
      }
    } else if (attribute !== undefined && !isAttributeValue(attribute)) {
      fail('resourceAttributes.*', path, attribute);
    }
  }
}

function validateExporter(value: unknown): void {
  if (value === undefined) {
    return;
  }
  if (typeof value === 'string') {
    if (!(EXPORTER_NAMES as readonly string[]).includes(value)) {
      fail('exporter', 'exporter', value);
    }
    return;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    fail('exporter', 'exporter', value);
  }
  if (isSpanExporter(value)) {
    if (!hasMethods(value, 'shutdown')) {
      throw new OtelConfigError(exporterWithoutShutdown(value));
    }
    return;
  }
  const otlp = value as Record<string, unknown>;
  rejectUnknownKeys(otlp, KNOWN_OTLP_OPTIONS, '"exporter"');
  if (otlp.url !== undefined && (typeof otlp.url !== 'string' || !isHttpUrl(otlp.url))) {
    fail('exporter.url', 'exporter.url', otlp.url);
  }
  if (otlp.headers !== undefined) {
    if (!isRecord(otlp.headers)) {
      fail('exporter.headers', 'exporter.headers', otlp.headers);
    }
    for (const [key, header] of Object.entries(otlp.headers)) {
      if (typeof header !== 'string') {
        fail('exporter.headers.*', `exporter.headers['${key}']`, header);
      }
    }
  }
  if (
    otlp.timeoutMillis !== undefined &&
    (typeof otlp.timeoutMillis !== 'number' || !Number.isFinite(otlp.timeoutMillis) || otlp.timeoutMillis <= 0)
  ) {
    fail('exporter.timeoutMillis', 'exporter.timeoutMillis', otlp.timeoutMillis);
  }
}

function validateBatch(value: unknown): void {
  if (value === undefined || value === false) {
    return;
  }
  if (!isRecord(value)) {
    fail('batch', 'batch', value);
  }
  rejectUnknownKeys(value, KNOWN_BATCH_OPTIONS, '"batch"');
  for (const key of KNOWN_BATCH_OPTIONS) {
    if (value[key] !== undefined && !isPositiveInteger(value[key])) {
      fail('batch.*', `batch.${key}`, value[key]);
    }
  }
}

function validateSampler(value: unknown): void {
  if (value === undefined) {
    return;
  }
  if (typeof value === 'string') {
    if (!(SAMPLER_NAMES as readonly string[]).includes(value)) {
      fail('sampler', 'sampler', value);
    }
    return;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    fail('sampler', 'sampler', value);
  }
  if (isSampler(value)) {
    return;
  }
  const object = value as Record<string, unknown>;
  const candidate: object = object;
  if (isRuleSamplerOptions(candidate)) {
    validateRuleSamplerOptions(candidate, 'sampler');
    return;
  }
  if (!('ratio' in object)) {
    fail('sampler', 'sampler', value);
  }
  rejectUnknownKeys(object, KNOWN_SAMPLER_OBJECT_OPTIONS, '"sampler"');
  const ratio = object.ratio;
  if (typeof ratio !== 'number' || !Number.isFinite(ratio) || ratio < 0 || ratio > 1) {
    fail('sampler.ratio', 'sampler.ratio', ratio);
  }
  if (object.parentBased !== undefined && typeof object.parentBased !== 'boolean') {
    fail('sampler.parentBased', 'sampler.parentBased', object.parentBased);
  }
}

function validateSpanLimits(value: unknown): void {
  if (value === undefined) {
    return;
  }
  if (!isRecord(value)) {
    fail('spanLimits', 'spanLimits', value);
  }
  rejectUnknownKeys(value, KNOWN_SPAN_LIMITS, '"spanLimits"');
  for (const key of KNOWN_SPAN_LIMITS) {
    const limit = value[key];
    const valid =
      typeof limit === 'number' && (limit === Infinity || (Number.isSafeInteger(limit) && limit >= 0));
    if (limit !== undefined && !valid) {
      fail('spanLimits.*', `spanLimits.${key}`, limit);
    }
  }
}

function validatePropagators(value: unknown): void {
  if (value === undefined) {
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((name: unknown, i) => {
      if (typeof name !== 'string' || !(PROPAGATOR_NAMES as readonly string[]).includes(name)) {
        fail('propagators.*', `propagators[${i}]`, name);
      }
    });
    if (value.includes('none') && value.some((name) => name !== 'none')) {
      throw new OtelConfigError(propagatorNoneCombined(value as string[]));
    }
    return;
  }
  if (!isRecord(value) || !hasMethods(value, 'inject', 'extract', 'fields')) {
    fail('propagators', 'propagators', value);
  }
}

const KNOWN_REQUEST_ID_OPTIONS = ['header', 'alternatives', 'generate', 'attribute', 'propagate'] as const;
/** An HTTP field name (RFC 9110 token). */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

function validateRequestId(value: unknown): void {
  if (value === undefined || typeof value === 'boolean') {
    return;
  }
  if (!isRecord(value)) {
    fail('requestId', 'requestId', value);
  }
  rejectUnknownKeys(value, KNOWN_REQUEST_ID_OPTIONS, '"requestId"');
  if (value.header !== undefined && (typeof value.header !== 'string' || !HEADER_NAME.test(value.header))) {
    fail('requestId.header', 'requestId.header', value.header);
  }
  if (value.alternatives !== undefined) {
    if (!Array.isArray(value.alternatives)) {
      fail('requestId.alternatives', 'requestId.alternatives', value.alternatives);
    }
    value.alternatives.forEach((name: unknown, i) => {
      if (typeof name !== 'string' || !HEADER_NAME.test(name)) {
        fail('requestId.alternatives.*', `requestId.alternatives[${i}]`, name);
      }
    });
  }
  for (const key of ['generate', 'propagate'] as const) {
    if (value[key] !== undefined && typeof value[key] !== 'boolean') {
      fail(`requestId.${key}`, `requestId.${key}`, value[key]);
    }
  }
  if (value.attribute !== undefined && !isNonEmptyString(value.attribute)) {
    fail('requestId.attribute', 'requestId.attribute', value.attribute);
  }
}
