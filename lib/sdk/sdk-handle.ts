import { diag, type TextMapPropagator } from '@opentelemetry/api';
import type { TracerProvider } from '@opentelemetry/sdk-trace';
import {
  foreignProviderBaggage,
  foreignProviderIgnoresOptions,
  foreignProviderRedaction,
  foreignProviderWithoutContextManager,
  propagatorAlreadyRegistered,
  sdkFlushFailed,
  sdkFlushTimedOut,
  sdkReusedWithDifferentOptions,
  sdkShutdownFailed,
  sdkStartedByPreload,
} from '../otel.messages.js';
import type { BaggageAttributesSpanProcessor } from './baggage-attributes.processor.js';
import { mergeRedactions } from '../redaction/redaction-options.js';
import { setActiveRedactionProcessor, type RedactionSpanProcessor } from '../redaction/redaction.processor.js';
import type { ExportHealth, ExportHealthSnapshot } from './export-health.js';
import { acquireMetrics, type MetricsShare } from '../metrics/metrics-state.js';
import { differingSdkOptions, type ResolvedSdkConfig, type SdkOptionName } from './config/index.js';
import {
  OTEL_NEST_SDK_KEY,
  createResource,
  createTracerProvider,
  detectExistingProvider,
  globalTracerProvider,
  hasContextManager,
  registerGlobals,
  unregisterGlobals,
  type RegisteredGlobals,
} from './sdk-factory.js';

/** Where acquireSdk reports what happens after it returned (flush and shutdown failures). */
export interface SdkLogger {
  warn(message: string): void;
  error(message: string, error?: unknown): void;
}

/** Reports through `diag` (silent unless the application set a diag logger). */
export const diagSdkLogger: SdkLogger = {
  warn: (message) => diag.warn(message),
  error: (message, error) => diag.error(message, error),
};

/** One holder's share of the process-wide SDK. */
export interface SdkHandle {
  /** The provider was created by otel-nest (by this holder or an earlier one). */
  readonly owned: boolean;
  /** An otel-nest provider already ran and this holder shares it. */
  readonly reused: boolean;
  /** Tracing is off: nothing was registered. */
  readonly disabled: boolean;
  /** What turned it off (`{ disabled: true }` or `OTEL_SDK_DISABLED=true`). */
  readonly disabledReason: string | undefined;
  /** The configuration this holder asked for (the running SDK may have been made from another). */
  readonly config: ResolvedSdkConfig;
  /** The otel-nest provider spans go to; undefined when disabled or foreign. */
  readonly provider: TracerProvider | undefined;
  /** For the caller to log: why options could not apply. Environment warnings are in `config.warnings`. */
  readonly warnings: readonly string[];
  /** `service.name` of the running SDK (for a foreign provider: the one asked for here). */
  readonly serviceName: string;
  /**
   * The configuration the running otel-nest SDK was built from: `config`, or an earlier holder's
   * when `reused`. Undefined when disabled or foreign.
   */
  readonly running: ResolvedSdkConfig | undefined;
  /** This holder's share of the process-wide metrics; undefined when its configuration leaves them off. */
  readonly metrics?: MetricsShare;
  /**
   * Exports every finished span now. Waits at most {@link FLUSH_TIMEOUT_MS} (the exports go on in
   * the background after that, and a warning says so). Never rejects.
   */
  forceFlush(): Promise<void>;
  /**
   * Releases this holder (same as {@link releaseSdk}) after flushing finished spans. The last
   * holder of an otel-nest provider also shuts it down and unregisters the globals it registered.
   * Takes at most {@link FLUSH_TIMEOUT_MS}, however the collector behaves: spans not exported by
   * then are dropped, and one warning says how many. Idempotent; never rejects.
   */
  shutdown(): Promise<void>;
}

/** Who started the shared SDK: the preload speaks for the environment, a module for its options. */
export type SdkOrigin = 'preload' | 'module';

/** The process-wide SDK, stored under {@link OTEL_NEST_SDK_KEY}. */
interface SdkState {
  readonly version: 1;
  readonly origin: SdkOrigin;
  readonly provider: TracerProvider;
  readonly propagator: TextMapPropagator;
  readonly baggageProcessor: BaggageAttributesSpanProcessor;
  readonly exportHealth: ExportHealth | undefined;
  readonly redactionProcessor: RedactionSpanProcessor;
  /** Holders that speak for the environment only (the preload): their `redact` is the default, not a choice. */
  readonly preloadHolders: WeakSet<SdkHandle>;
  /** The configuration the provider was built from. */
  readonly config: ResolvedSdkConfig;
  readonly registered: RegisteredGlobals;
  readonly holders: Set<SdkHandle>;
}

type GlobalSlots = Record<symbol, unknown>;

function currentState(): SdkState | undefined {
  const state = (globalThis as GlobalSlots)[OTEL_NEST_SDK_KEY] as SdkState | undefined;
  return state?.version === 1 ? state : undefined;
}

/**
 * Takes a share of the process-wide SDK. The first holder creates and registers the provider;
 * later ones (several Nest apps in one process: tests, a gateway and a service) reuse it and get
 * `reused: true`, plus a warning when their SDK options differ. With a foreign provider (the
 * application's own NodeSDK) nothing is created. With `config.disabled` nothing is registered.
 */
export function acquireSdk(config: ResolvedSdkConfig, logger: SdkLogger = diagSdkLogger, origin: SdkOrigin = 'module'): SdkHandle {
  return withMetrics(acquire(config, logger, origin), config, logger);
}

/**
 * `handle` with a share of the metrics when `config` turns them on (for our SDK and for the
 * application's own tracer provider alike). Its flush and shutdown cover both signals, side by
 * side within the same bound: every measurement is recorded when its span ends, so both are complete
 * when the shutdown starts.
 */
function withMetrics(handle: SdkHandle, config: ResolvedSdkConfig, logger: SdkLogger): SdkHandle {
  const metrics = acquireMetrics(config.metrics, { resource: () => createResource(handle.running ?? config), logger });
  if (metrics === undefined) {
    return handle;
  }
  return {
    ...handle,
    metrics,
    warnings: [...handle.warnings, ...metrics.warnings],
    forceFlush: async () => {
      await Promise.all([handle.forceFlush(), metrics.forceFlush()]);
    },
    shutdown: async () => {
      await Promise.all([handle.shutdown(), metrics.release()]);
    },
  };
}

/** Releases `handle`: see {@link SdkHandle.shutdown}. */
export function releaseSdk(handle: SdkHandle): Promise<void> {
  return handle.shutdown();
}

function acquire(config: ResolvedSdkConfig, logger: SdkLogger, origin: SdkOrigin): SdkHandle {
  if (config.disabled) {
    return inertHandle(config, logger, { disabled: true, warnings: [] });
  }
  const existing = detectExistingProvider();
  if (existing === 'foreign') {
    return inertHandle(config, logger, { disabled: false, warnings: foreignWarnings(config) });
  }
  const running = currentState();
  if (existing === 'otel-nest' && running !== undefined) {
    return join(running, config, logger, true, reuseWarnings(running, config), origin);
  }
  // Nothing registered. A state left here lost its globals to someone's trace.disable(): its
  // holders still release it themselves, and a fresh SDK takes the slot.
  const { provider, propagator, baggageProcessor, redactionProcessor, exportHealth } = createTracerProvider(config);
  const registered = registerGlobals(provider, propagator);
  const state: SdkState = {
    version: 1,
    origin,
    provider,
    propagator,
    baggageProcessor,
    redactionProcessor,
    preloadHolders: new WeakSet(),
    exportHealth,
    config,
    registered,
    holders: new Set(),
  };
  (globalThis as GlobalSlots)[OTEL_NEST_SDK_KEY] = state;
  return join(state, config, logger, false, registered.propagator ? [] : [propagatorAlreadyRegistered()], origin);
}

function join(
  state: SdkState,
  config: ResolvedSdkConfig,
  logger: SdkLogger,
  reused: boolean,
  warnings: readonly string[],
  origin: SdkOrigin = 'module',
): SdkHandle {
  let released = false;
  const running = state.config;
  const handle: SdkHandle = {
    owned: true,
    reused,
    disabled: false,
    disabledReason: undefined,
    config,
    provider: state.provider,
    warnings,
    serviceName: running.serviceName,
    running,
    forceFlush: async () => {
      if (!released) {
        await boundedFlush(state, logger);
      }
    },
    shutdown: async () => {
      if (released) {
        return;
      }
      released = true;
      state.holders.delete(handle);
      applyBaggageKeys(state);
      applyRedaction(state);
      if (state.holders.size === 0) {
        await shutdownState(state, logger);
        return;
      }
      // Others still hold the SDK, but this application's spans should leave with it, within the
      // same bound as a shutdown (the process may be about to exit).
      await withinShutdownBound(state, logger, () => flush(state, logger));
    },
  };
  state.holders.add(handle);
  if (origin === 'preload') {
    state.preloadHolders.add(handle);
  }
  applyBaggageKeys(state);
  applyRedaction(state);
  return handle;
}

/** Copies the keys every current holder asked for (a running provider can change these). */
function applyBaggageKeys(state: SdkState): void {
  const keys = new Set<string>();
  for (const holder of state.holders) {
    holder.config.baggageToAttributes.forEach((key) => keys.add(key));
  }
  state.baggageProcessor.setKeys([...keys]);
}

/**
 * The redaction every current module holder asked for, merged so that what any of them masks is
 * masked (see mergeRedactions); the preload's (the default) only while no module holds the SDK,
 * so `redact` in forRoot configures an SDK started by `otel-nest/register`.
 */
function applyRedaction(state: SdkState): void {
  if (state.redactionProcessor === undefined) {
    return; // A state made by an older copy of otel-nest in this process.
  }
  const modules = [...state.holders].filter((holder) => !state.preloadHolders.has(holder));
  const holders = modules.length > 0 ? modules : [...state.holders];
  state.redactionProcessor.configure(holders.length > 0 ? mergeRedactions(holders.map((holder) => holder.config.redaction)) : state.config.redaction);
  setActiveRedactionProcessor(state.redactionProcessor);
}

async function shutdownState(state: SdkState, logger: SdkLogger): Promise<void> {
  // Globals go first and synchronously: an application started while this one flushes must find
  // nothing registered and start its own SDK, not take ours for a foreign one. Spans already
  // started keep their tracer and are still exported by the shutdown below.
  if ((globalThis as GlobalSlots)[OTEL_NEST_SDK_KEY] === state) {
    delete (globalThis as GlobalSlots)[OTEL_NEST_SDK_KEY];
  }
  // Only if ours are still the registered ones; someone may have replaced them meanwhile.
  if (globalTracerProvider() === state.provider) {
    unregisterGlobals(state.registered);
  }
  // One bound for flush and shutdown together: a hanging collector must not hold the process.
  await withinShutdownBound(
    state,
    logger,
    async () => {
      await flush(state, logger);
      try {
        await state.provider.shutdown();
      } catch (error) {
        logger.error(sdkShutdownFailed(), error);
      }
    },
    true,
  );
}

/**
 * Longest time a handle's forceFlush() or shutdown() waits for the collector. Below the grace
 * periods of process managers (10 s for `docker stop`, 30 s in Kubernetes), which also cover the
 * application's own shutdown hooks. A healthy collector takes milliseconds.
 */
export const FLUSH_TIMEOUT_MS = 5000;

/**
 * Runs `work` (a flush, or flush and shutdown) for at most {@link FLUSH_TIMEOUT_MS}. When time is
 * up, the exports still waiting are given up on and counted as lost. The final shutdown (`final`)
 * also counts the queue as lost, and reports an outage that was still going on.
 */
async function withinShutdownBound(state: SdkState, logger: SdkLogger, work: () => Promise<void>, final = false): Promise<void> {
  const startedAt = Date.now();
  const finished = await settlesWithin(work(), FLUSH_TIMEOUT_MS);
  const health = state.exportHealth;
  if (health === undefined) {
    if (!finished) {
      logger.error(sdkShutdownFailed(), new Error(`timed out after ${FLUSH_TIMEOUT_MS} ms`));
    }
    return;
  }
  const lost = finished ? 0 : health.abandonAtShutdown(final);
  const report = lost > 0 || final ? health.shutdownReport(lost, Date.now() - startedAt) : undefined;
  if (report !== undefined) {
    logger.warn(report);
  }
}

/** A plain flush: bounded, but what is still being exported goes on (and is not counted lost). */
async function boundedFlush(state: SdkState, logger: SdkLogger): Promise<void> {
  if (!(await settlesWithin(flush(state, logger), FLUSH_TIMEOUT_MS))) {
    logger.warn(sdkFlushTimedOut(FLUSH_TIMEOUT_MS, state.exportHealth?.snapshot().inFlight ?? 0));
  }
}

/** Whether `promise` settles within `ms`; the timer does not keep the process alive. */
function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    timer.unref();
    promise.then(
      () => {
        clearTimeout(timer);
        resolve(true);
      },
      () => {
        clearTimeout(timer);
        resolve(true);
      },
    );
  });
}

async function flush(state: SdkState, logger: SdkLogger): Promise<void> {
  try {
    await state.provider.forceFlush();
  } catch (error) {
    logger.error(sdkFlushFailed(), error);
  }
}

/**
 * Export counters and outage state of the otel-nest SDK running in this process; undefined when
 * none runs or it exports nothing. For tests and diagnostics.
 */
export function currentExportHealth(): ExportHealthSnapshot | undefined {
  return currentState()?.exportHealth?.snapshot();
}

/** A handle that holds nothing: disabled, or the application's own provider. */
function inertHandle(
  config: ResolvedSdkConfig,
  logger: SdkLogger,
  { disabled, warnings }: { disabled: boolean; warnings: readonly string[] },
): SdkHandle {
  return {
    owned: false,
    reused: false,
    disabled,
    disabledReason: disabled ? config.disabledReason : undefined,
    config,
    provider: undefined,
    warnings,
    serviceName: config.serviceName,
    running: undefined,
    // The application owns a foreign provider: flushing it is harmless, shutting it down is not ours.
    forceFlush: async () => {
      if (disabled) {
        return;
      }
      const provider = globalTracerProvider() as { forceFlush?: () => Promise<void> };
      try {
        await provider.forceFlush?.();
      } catch (error) {
        logger.error(sdkFlushFailed(), error);
      }
    },
    shutdown: () => Promise.resolve(),
  };
}

function foreignWarnings(config: ResolvedSdkConfig): string[] {
  const warnings: string[] = [];
  if (config.explicitSdkOptions.length > 0) {
    warnings.push(foreignProviderIgnoresOptions(config.explicitSdkOptions));
  }
  if (config.baggageToAttributes.length > 0) {
    warnings.push(foreignProviderBaggage(config.baggageToAttributes));
  }
  if (config.redaction.enabled) {
    warnings.push(foreignProviderRedaction());
  }
  if (!hasContextManager()) {
    warnings.push(foreignProviderWithoutContextManager());
  }
  return warnings;
}

function reuseWarnings(state: SdkState, requested: ResolvedSdkConfig): string[] {
  const running = state.config;
  if (state.origin === 'preload') {
    // The preload is configured by the environment only: whatever forRoot sets explicitly and
    // differently cannot reach it.
    const differing = differingSdkOptions(requested.explicitSdkOptions, running, requested);
    return differing.length > 0 ? [sdkStartedByPreload(differing)] : [];
  }
  // Another module: its service name and exporter always matter (spans would be mislabelled or
  // sent elsewhere); the other SDK options only when this module set them.
  const checked = new Set<SdkOptionName>(['serviceName', 'exporter', ...requested.explicitSdkOptions]);
  const differing = differingSdkOptions(checked, running, requested);
  return differing.length > 0 ? [sdkReusedWithDifferentOptions(differing, running.serviceName)] : [];
}
