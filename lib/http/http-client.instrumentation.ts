import { Inject, Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { DiscoveryService } from '@nestjs/core';
import { context, metrics, propagation, SpanKind, SpanStatusCode, trace, type Attributes, type Span } from '@opentelemetry/api';
import { isWrapped } from '@opentelemetry/instrumentation';
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici';
import { channel } from 'node:diagnostics_channel';
import type { HttpClientTracingOptions, OtelModuleOptions } from '../interfaces/otel-module-options.interface.js';
import { OTEL_MODULE_OPTIONS } from '../otel.module-definition.js';
import { OtelSdkService } from '../sdk/otel-sdk.service.js';
import {
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_REQUEST_METHOD_ORIGINAL,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_URL_FULL,
  ATTR_URL_SCHEME,
} from '../semconv.js';
import { processGlobal } from '../utils/process-global.js';
import { errorTypeOf } from '../utils/record-error.js';
import { getOtelNestTracer } from '../utils/tracer.js';
import { httpSpanName, normalizeMethod, redactUrl } from './http-attributes.js';
import { diagLimited } from '../utils/diag-limited.js';
import { elapsedSeconds, startMeasure } from '../metrics/measure.js';
import { activeInstruments, onMeterProvider } from '../metrics/metrics-state.js';
import { metricsRecordFailed } from '../otel.messages.js';
import { axiosSpanStartFailed, fetchAlreadyInstrumented, httpServiceNotInstrumented } from '../otel.messages.js';

export interface ResolvedHttpClientOptions {
  fetch: boolean;
  httpService: boolean;
}

export function resolveHttpClientOptions(option: OtelModuleOptions['httpClient']): ResolvedHttpClientOptions {
  if (option === false) {
    return { fetch: false, httpService: false };
  }
  const given: HttpClientTracingOptions = typeof option === 'object' && option !== null ? option : {};
  return { fetch: given.fetch !== false, httpService: given.httpService !== false };
}

/**
 * `fetch` is traced by the OpenTelemetry undici instrumentation, which listens on Node's
 * diagnostics channels (no loader hook, no patching). It is process-wide, so it is shared by every
 * module instance and turned off when the last one shuts down.
 */
const undiciSlot = processGlobal<{ current?: { instrumentation: UndiciInstrumentation; holders: number; unsubscribe?: () => void } }>(
  'undici',
  () => ({}),
);

function acquireUndici(): boolean {
  const undici = undiciSlot.current;
  if (undici) {
    undici.holders++;
    return true;
  }
  if (channel('undici:request:create').hasSubscribers) {
    // Someone (usually the user's own UndiciInstrumentation) already traces fetch: a second
    // instrumentation would make every outgoing request two CLIENT spans.
    diagLimited('info', fetchAlreadyInstrumented());
    return false;
  }
  const instrumentation = new UndiciInstrumentation({ enabled: true });
  // It records `http.client.request.duration` itself, for every request, into the provider it is
  // given: otel-nest's metrics while they run, the API's (no-op unless registered) otherwise.
  const unsubscribe = onMeterProvider((provider) => instrumentation.setMeterProvider(provider ?? metrics.getMeterProvider()));
  undiciSlot.current = { instrumentation, holders: 1, unsubscribe };
  return true;
}

function releaseUndici(): void {
  const undici = undiciSlot.current;
  if (undici && --undici.holders === 0) {
    undici.instrumentation.disable();
    undici.unsubscribe?.();
    undiciSlot.current = undefined;
  }
}

/** The parts of an axios instance we use; typed here because axios is an optional peer. */
export interface AxiosLike {
  interceptors: {
    request: { use(onFulfilled: (config: any) => any, onRejected?: (error: any) => any, options?: object): number };
    response: { use(onFulfilled: (response: any) => any, onRejected?: (error: any) => any): number };
  };
}

const AXIOS_SPAN = Symbol.for('otel-nest.axios.span');
/** The request's metric attributes and start (see startMeasure), while metrics are on. */
const AXIOS_MEASUREMENT = Symbol.for('otel-nest.axios.measurement');

interface AxiosMeasurement {
  readonly attributes: Attributes;
  readonly startedAt: number | undefined;
}
const INSTRUMENTED = processGlobal('axios-instrumented', () => new WeakSet<object>());

/** True when `@opentelemetry/instrumentation-http` has wrapped `http.request` (then it makes the CLIENT span). */
export function httpModuleIsInstrumented(): boolean {
  try {
    // The module object instrumentation-http patches in place (the same one `require` returns);
    // `isWrapped` is @opentelemetry/instrumentation's own test for its wrappers.
    return isWrapped(process.getBuiltinModule('node:http').request);
  } catch {
    return false;
  }
}

function endAxiosSpan(
  span: Span,
  status: number | undefined,
  error?: { code?: unknown; message?: string } & object,
  measurement?: AxiosMeasurement,
): void {
  let errorType: string | undefined;
  try {
    if (status !== undefined) {
      span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status);
    }
    if (status !== undefined && status >= 400) {
      // Client spans: every 4xx and 5xx answer is an error.
      errorType = String(status);
      span.setAttribute(ATTR_ERROR_TYPE, errorType);
      span.setStatus({ code: SpanStatusCode.ERROR });
    } else if (error) {
      errorType = typeof error.code === 'string' ? error.code : errorTypeOf(error);
      span.setAttribute(ATTR_ERROR_TYPE, errorType);
      span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
    }
  } finally {
    span.end();
    if (measurement) {
      recordAxiosDuration(span, measurement, status, errorType);
    }
  }
}

/** `http.client.request.duration` of one axios request, after its span ended (whose duration it is). */
function recordAxiosDuration(span: Span, measurement: AxiosMeasurement, status: number | undefined, errorType: string | undefined): void {
  const instruments = activeInstruments();
  if (instruments === undefined) {
    return;
  }
  try {
    const attributes: Attributes = { ...measurement.attributes };
    if (status !== undefined) {
      attributes[ATTR_HTTP_RESPONSE_STATUS_CODE] = status;
    }
    if (errorType !== undefined) {
      attributes[ATTR_ERROR_TYPE] = errorType;
    }
    instruments.httpClientDuration.record(elapsedSeconds(span, measurement.startedAt), attributes);
  } catch (err) {
    diagLimited('error', metricsRecordFailed(), err);
  }
}

/** The low-cardinality attributes of `http.client.request.duration`: method, scheme, server address and port. */
function axiosMeasurement(span: Span, method: string, url: URL | undefined): AxiosMeasurement {
  const attributes: Attributes = {};
  attributes[ATTR_HTTP_REQUEST_METHOD] = method;
  if (url) {
    attributes[ATTR_URL_SCHEME] = url.protocol.replace(/:$/, '');
    attributes[ATTR_SERVER_ADDRESS] = url.hostname.replace(/^\[|\]$/g, '');
    attributes[ATTR_SERVER_PORT] = Number(url.port) || (url.protocol === 'https:' ? 443 : 80);
  }
  return { attributes, startedAt: startMeasure(span) };
}

/**
 * Adds CLIENT spans and context headers to one axios instance (idempotent). `HttpService` of
 * `@nestjs/axios` is instrumented automatically; call this for axios instances of your own.
 */
export function instrumentAxios(axios: AxiosLike): void {
  if (INSTRUMENTED.has(axios)) {
    return;
  }
  INSTRUMENTED.add(axios);
  axios.interceptors.request.use(
    (config: Record<string | symbol, any>) => {
      try {
        if (httpModuleIsInstrumented()) {
          return config;
        }
        const url = requestUrl(config);
        const { method, original } = normalizeMethod(String(config.method ?? 'get'));
        const span = getOtelNestTracer().startSpan(httpSpanName(method), {
          kind: SpanKind.CLIENT,
          attributes: {
            [ATTR_HTTP_REQUEST_METHOD]: method,
            ...(original === undefined ? {} : { [ATTR_HTTP_REQUEST_METHOD_ORIGINAL]: original }),
            ...(url
              ? {
                  [ATTR_URL_FULL]: redactUrl(url),
                  [ATTR_SERVER_ADDRESS]: url.hostname.replace(/^\[|\]$/g, ''),
                  [ATTR_SERVER_PORT]: Number(url.port) || (url.protocol === 'https:' ? 443 : 80),
                }
              : {}),
          },
        });
        const headers = (config.headers ??= {});
        propagation.inject(trace.setSpan(context.active(), span), headers, {
          set(carrier: any, key: string, value: string) {
            if (typeof carrier.set === 'function') {
              carrier.set(key, value);
            } else {
              carrier[key] = value;
            }
          },
        });
        config[AXIOS_SPAN] = span;
        if (activeInstruments() !== undefined) {
          config[AXIOS_MEASUREMENT] = axiosMeasurement(span, method, url);
        }
      } catch (err) {
        diagLimited('error', axiosSpanStartFailed(), err);
      }
      return config;
    },
    undefined,
    // Run in the caller's turn, so the active context is the caller's.
    { synchronous: true },
  );
  axios.interceptors.response.use(
    response => {
      const span: Span | undefined = response?.config?.[AXIOS_SPAN];
      if (span) {
        const measurement: AxiosMeasurement | undefined = response.config[AXIOS_MEASUREMENT];
        delete response.config[AXIOS_SPAN];
        delete response.config[AXIOS_MEASUREMENT];
        endAxiosSpan(span, response.status, undefined, measurement);
      }
      return response;
    },
    error => {
      const span: Span | undefined = error?.config?.[AXIOS_SPAN];
      if (span) {
        const measurement: AxiosMeasurement | undefined = error.config[AXIOS_MEASUREMENT];
        delete error.config[AXIOS_SPAN];
        delete error.config[AXIOS_MEASUREMENT];
        endAxiosSpan(span, error.response?.status, error, measurement);
      }
      return Promise.reject(error);
    },
  );
}

function requestUrl(config: { url?: string; baseURL?: string; params?: unknown }): URL | undefined {
  try {
    const raw = config.url ?? '';
    return config.baseURL && !/^[a-z][a-z\d+\-.]*:\/\//i.test(raw)
      ? new URL(raw.replace(/^\//, ''), config.baseURL.endsWith('/') ? config.baseURL : `${config.baseURL}/`)
      : new URL(raw);
  } catch {
    return undefined;
  }
}

/**
 * `HttpService` of `@nestjs/axios` (an optional peer), or `undefined` when it is not installed.
 * Instances are recognised with `instanceof` (subclasses included, minification-proof), never by
 * class name. `import()` resolves the same package as the application's own import (and compiles
 * to `require` in the CommonJS build).
 */
async function loadHttpServiceClass(): Promise<(abstract new (...args: never[]) => object) | undefined> {
  try {
    const axiosModule = (await import('@nestjs/axios')) as { HttpService?: abstract new (...args: never[]) => object };
    return typeof axiosModule.HttpService === 'function' ? axiosModule.HttpService : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Outgoing HTTP: `fetch` through the undici instrumentation, `@nestjs/axios` `HttpService`
 * instances through axios interceptors of ours (found with Nest's DiscoveryService).
 */
@Injectable()
export class HttpClientInstrumentation implements OnModuleInit, OnApplicationShutdown {
  private readonly options: ResolvedHttpClientOptions;
  private holdsUndici = false;

  constructor(
    @Inject(OTEL_MODULE_OPTIONS) moduleOptions: OtelModuleOptions,
    private readonly discovery: DiscoveryService,
    private readonly sdk: OtelSdkService,
  ) {
    this.options = resolveHttpClientOptions(moduleOptions.httpClient);
    if (this.options.fetch && sdk.isActive) {
      this.holdsUndici = acquireUndici();
      if (this.holdsUndici) {
        sdk.addTraced('fetch');
      } else {
        sdk.addTracedByOthers('fetch');
      }
    }
  }

  async onModuleInit(): Promise<void> {
    if (!this.options.httpService) {
      return;
    }
    const httpService = await loadHttpServiceClass();
    if (!httpService) {
      return;
    }
    let instrumented = 0;
    try {
      for (const wrapper of this.discovery.getProviders()) {
        const instance: unknown = wrapper.instance;
        if (instance instanceof httpService && isAxiosLike((instance as { axiosRef?: unknown }).axiosRef)) {
          instrumentAxios((instance as { axiosRef: AxiosLike }).axiosRef);
          instrumented++;
        }
      }
    } catch (err) {
      diagLimited('error', httpServiceNotInstrumented(), err);
    }
    if (instrumented > 0) {
      // The interceptors step aside per request while instrumentation-http wraps http.request.
      if (httpModuleIsInstrumented()) {
        this.sdk.addTracedByOthers('HttpService');
      } else {
        this.sdk.addTraced('HttpService');
      }
    }
  }

  onApplicationShutdown(): void {
    if (this.holdsUndici) {
      this.holdsUndici = false;
      releaseUndici();
    }
  }
}

function isAxiosLike(value: unknown): value is AxiosLike {
  const interceptors = (value as AxiosLike | undefined)?.interceptors;
  return typeof interceptors?.request?.use === 'function' && typeof interceptors?.response?.use === 'function';
}
