import {
  context,
  createContextKey,
  propagation,
  ProxyTracerProvider,
  trace,
  type TextMapPropagator,
  type TracerProvider as ApiTracerProvider,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { CompositePropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { B3InjectEncoding, B3Propagator } from '@opentelemetry/propagator-b3';
import { defaultResource, resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  ConsoleSpanExporter,
  ParentBasedSampler,
  SimpleSpanProcessor,
  TraceIdRatioBasedSampler,
  type Sampler,
  type SpanExporter,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace';
import { TracerProvider } from '@opentelemetry/sdk-trace';
import { W3CBaggagePropagator } from '../propagation/baggage.propagator.js';
import { ValidatingPropagator } from '../propagation/carrier.js';
import { RandomTraceFlagSpanProcessor } from '../propagation/random-flag.processor.js';
import { W3CTraceContextPropagator } from '../propagation/trace-context.propagator.js';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '../semconv.js';
import { BaggageAttributesSpanProcessor } from './baggage-attributes.processor.js';
import { RuleBasedSampler } from './rule-based.sampler.js';
import { RequestIdPropagator, type ResolvedRequestIdOptions } from '../propagation/request-id.propagator.js';
import { RequestIdSpanProcessor } from './request-id.processor.js';
import { RedactionSpanProcessor, setActiveRedactionProcessor } from '../redaction/redaction.processor.js';
import {
  CappedBatchSpanProcessor,
  EXPORT_DEADLINE_GRACE_MS,
  ExportHealth,
  HealthReportingSpanExporter,
} from './export-health.js';
import type {
  KnownPropagatorName,
  ResolvedExporter,
  ResolvedPropagators,
  ResolvedSampler,
  ResolvedSdkConfig,
} from './config/index.js';

/**
 * Where the process-wide SDK state of otel-nest lives (see sdk-handle.ts). A global symbol, not a
 * module variable, so that two copies of this package in one process (a CJS and an ESM path, or
 * two versions) still share one SDK, as they share the globals of `@opentelemetry/api`.
 */
export const OTEL_NEST_SDK_KEY = Symbol.for('otel-nest.sdk');

/** What {@link createTracerProvider} builds. Nothing is registered globally yet. */
export interface TracerProviderBundle {
  provider: TracerProvider;
  propagator: TextMapPropagator;
  /** First span processor of the provider; its keys can change while it runs. */
  baggageProcessor: BaggageAttributesSpanProcessor;
  /** The processor that redacts before export (right before the export processor); its rules can change while it runs. */
  redactionProcessor: RedactionSpanProcessor;
  /** Export results, drops and outage episodes; undefined when nothing is exported. */
  exportHealth: ExportHealth | undefined;
}

/** Which globals {@link registerGlobals} set (each false when someone else's was kept). */
export interface RegisteredGlobals {
  tracerProvider: boolean;
  propagator: boolean;
  contextManager: boolean;
}

/**
 * Builds the tracer provider described by `config`. Every setting is passed explicitly: the SDK's
 * own `OTEL_*` fallbacks read `process.env`, while `config` may come from another environment.
 * Resource detectors are not run (they are async); `telemetry.sdk.*` comes from `defaultResource()`.
 */
export function createTracerProvider(config: ResolvedSdkConfig): TracerProviderBundle {
  const baggageProcessor = new BaggageAttributesSpanProcessor(config.baggageToAttributes);
  const redactionProcessor = new RedactionSpanProcessor(false);
  redactionProcessor.configure(config.redaction);
  setActiveRedactionProcessor(redactionProcessor);
  const exporter = createExporter(config.exporter);
  let exportHealth: ExportHealth | undefined;
  const exportProcessors: SpanProcessor[] = [];
  if (exporter !== undefined) {
    exportHealth = new ExportHealth({
      target: describeExportTarget(config, exporter),
      maxQueueSize: config.batch === false ? undefined : config.batch.maxQueueSize,
      exportDeadlineMillis: exportDeadlineMillis(config),
    });
    const reporting = new HealthReportingSpanExporter(exporter, exportHealth);
    exportProcessors.push(
      config.batch === false
        ? new SimpleSpanProcessor({ exporter: reporting })
        : new CappedBatchSpanProcessor({ ...config.batch, exporter: reporting }, exportHealth),
    );
  }
  const provider = new TracerProvider({
    resource: createResource(config),
    sampler: createSampler(config.sampler),
    spanLimits: { ...config.spanLimits },
    // The random-flag processor first (Level 2's flag, which the SDK drops, is set before anyone
    // reads the flags), then the baggage processor: it sets attributes in onStart, before any
    // other processor looks at the span. The user's processors come before the export processor,
    // so that what they change (a redaction processor, in onStart, onEnding or onEnd) is what is
    // exported: a SimpleSpanProcessor exports in its own onEnd.
    // Redaction last before the export, so it also sees what the user's processors added.
    spanProcessors: [new RandomTraceFlagSpanProcessor(), baggageProcessor, ...requestIdProcessors(config), ...config.spanProcessors, redactionProcessor, ...exportProcessors],
  });
  return { provider, propagator: createPropagator(config.propagators, config.requestId), baggageProcessor, redactionProcessor, exportHealth };
}

/**
 * When an export without a result is given up on: after the OTLP exporter's own `timeoutMillis`
 * (which bounds its retries) and a grace period, and before the BatchSpanProcessor's
 * `exportTimeoutMillis`, whose own timer would report every late batch to the global error handler.
 * Without a limit of either kind (SimpleSpanProcessor with a given exporter): undefined.
 */
export function exportDeadlineMillis(config: Pick<ResolvedSdkConfig, 'exporter' | 'batch'>): number | undefined {
  const exporterLimit = config.exporter.kind === 'otlp' ? config.exporter.timeoutMillis + EXPORT_DEADLINE_GRACE_MS : Infinity;
  const processorLimit =
    config.batch === false
      ? Infinity
      : config.batch.exportTimeoutMillis - Math.min(100, Math.floor(config.batch.exportTimeoutMillis / 10));
  const limit = Math.min(exporterLimit, processorLimit);
  return Number.isFinite(limit) ? Math.max(1, limit) : undefined;
}

/** For messages: the OTLP URL, `console`, or a given exporter's class name. */
function describeExportTarget(config: ResolvedSdkConfig, exporter: SpanExporter): string {
  if (config.exporter.kind === 'otlp') {
    return config.exporter.url;
  }
  return config.exporter.kind === 'console' ? 'the console' : (exporter.constructor?.name ?? 'the span exporter');
}

export function createResource(config: Pick<ResolvedSdkConfig, 'serviceName' | 'serviceVersion' | 'resourceAttributes'>): Resource {
  return defaultResource().merge(
    resourceFromAttributes({
      ...config.resourceAttributes,
      [ATTR_SERVICE_NAME]: config.serviceName,
      ...(config.serviceVersion !== undefined ? { [ATTR_SERVICE_VERSION]: config.serviceVersion } : {}),
    }),
  );
}

/** `undefined` for `none`: the provider then records spans (and propagates) but exports nothing. */
export function createExporter(exporter: ResolvedExporter): SpanExporter | undefined {
  switch (exporter.kind) {
    case 'otlp':
      return new OTLPTraceExporter({
        url: exporter.url,
        headers: { ...exporter.headers },
        timeoutMillis: exporter.timeoutMillis,
      });
    case 'console':
      return new ConsoleSpanExporter();
    case 'none':
      return undefined;
    case 'instance':
      return exporter.exporter;
  }
}

export function createSampler(sampler: ResolvedSampler): Sampler {
  if (sampler.kind === 'instance') {
    return sampler.sampler;
  }
  if (sampler.kind === 'rules') {
    return new RuleBasedSampler({ ...sampler.options, default: sampler.options.default ?? createSampler(sampler.fallback) });
  }
  const ratio = (): Sampler => new TraceIdRatioBasedSampler(sampler.ratio ?? 1);
  switch (sampler.name) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return ratio();
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: ratio() });
  }
}

/**
 * The propagator to register, behind the validating layer (propagation/carrier.ts), so that every
 * extract and inject in the process, ours or another instrumentation's, reads only valid header
 * values and writes only sendable ones. `tracecontext` and `baggage` are otel-nest's strict W3C
 * propagators (Trace Context Level 2, Baggage); `b3`/`b3multi` are `@opentelemetry/propagator-b3`'s.
 */
export function createPropagator(propagators: ResolvedPropagators, requestId?: ResolvedRequestIdOptions): TextMapPropagator {
  // The request-id propagator last: it only adds its own value to what the others extracted.
  const bridge = requestId ? [new RequestIdPropagator(requestId)] : [];
  if (propagators.kind === 'instance') {
    return new ValidatingPropagator(
      bridge.length === 0 ? propagators.propagator : new CompositePropagator({ propagators: [propagators.propagator, ...bridge] }),
    );
  }
  // Extraction runs in this order and a later propagator's context wins, as in the SDK.
  return new ValidatingPropagator(new CompositePropagator({ propagators: [...propagators.names.map(createNamedPropagator), ...bridge] }));
}

/** The request-id bridge's processor (records the id on SERVER and CONSUMER spans), when it is on. */
function requestIdProcessors(config: ResolvedSdkConfig): SpanProcessor[] {
  return config.requestId ? [new RequestIdSpanProcessor(config.requestId.attribute)] : [];
}

function createNamedPropagator(name: KnownPropagatorName): TextMapPropagator {
  switch (name) {
    case 'tracecontext':
      return new W3CTraceContextPropagator();
    case 'baggage':
      return new W3CBaggagePropagator();
    case 'b3':
      return new B3Propagator();
    case 'b3multi':
      return new B3Propagator({ injectEncoding: B3InjectEncoding.MULTI_HEADER });
  }
}

const CONTEXT_PROBE = createContextKey('otel-nest context manager probe');

/**
 * Whether a working context manager is registered, through public API only: the no-op manager
 * of `@opentelemetry/api` ignores `with()`, so a value set there is not active inside. (The
 * alternatives read internals: the private `context._getContextManager()`, comparing a class name
 * that minifiers rename, or the API's global registry symbol.) Checking first avoids the
 * "Attempted duplicate registration" diag error that `setGlobalContextManager` logs.
 */
export function hasContextManager(): boolean {
  const probe = context.active().setValue(CONTEXT_PROBE, true);
  return context.with(probe, () => context.active().getValue(CONTEXT_PROBE) === true);
}

/**
 * Whether a global propagator is registered: the no-op one injects no fields. (A registered
 * composite of zero propagators looks the same; registering over it would only fail with a
 * diag error, which `setGlobalPropagator`'s result reports.)
 */
export function hasGlobalPropagator(): boolean {
  return propagation.fields().length > 0;
}

/**
 * Registers `provider` and `propagator` globally, and an AsyncLocalStorage context manager unless
 * one works already (the application's, or a test's). Returns what it registered, so that exactly
 * that can be unregistered later.
 */
export function registerGlobals(provider: ApiTracerProvider, propagator: TextMapPropagator): RegisteredGlobals {
  let contextManager = false;
  if (!hasContextManager()) {
    const manager = new AsyncLocalStorageContextManager().enable();
    contextManager = context.setGlobalContextManager(manager);
    if (!contextManager) {
      manager.disable();
    }
  }
  const tracerProvider = trace.setGlobalTracerProvider(provider);
  const propagatorRegistered = hasGlobalPropagator() ? false : propagation.setGlobalPropagator(propagator);
  return { tracerProvider, propagator: propagatorRegistered, contextManager };
}

/** Undoes {@link registerGlobals}: only what it registered, so a later SDK can register afresh. */
export function unregisterGlobals(registered: RegisteredGlobals): void {
  if (registered.tracerProvider) {
    trace.disable();
  }
  if (registered.propagator) {
    propagation.disable();
  }
  if (registered.contextManager) {
    // Also disables the manager itself (its AsyncLocalStorage).
    context.disable();
  }
}

/** The provider spans go to: the delegate of the API's proxy, or the registered one as is. */
export function globalTracerProvider(): ApiTracerProvider {
  const registered = trace.getTracerProvider();
  // Duck-typed: a proxy from another copy of @opentelemetry/api is not instanceof ours.
  const delegate = (registered as Partial<ProxyTracerProvider>).getDelegate?.call(registered);
  return delegate ?? registered;
}

/** The API's no-op provider: what an unregistered proxy delegates to. */
const NOOP_TRACER_PROVIDER: ApiTracerProvider = new ProxyTracerProvider().getDelegate();

/**
 * Whether a real tracer provider is registered globally, and whether otel-nest registered it
 * (its provider is the one held under {@link OTEL_NEST_SDK_KEY}).
 */
export function detectExistingProvider(): 'none' | 'otel-nest' | 'foreign' {
  const provider = globalTracerProvider();
  if (provider === NOOP_TRACER_PROVIDER) {
    return 'none';
  }
  const state = (globalThis as Record<symbol, { provider?: unknown } | undefined>)[OTEL_NEST_SDK_KEY];
  return state?.provider === provider ? 'otel-nest' : 'foreign';
}
