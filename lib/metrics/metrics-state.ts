import { createNoopMeter, metrics, type MeterProvider } from '@opentelemetry/api';
import type { Resource } from '@opentelemetry/resources';
import { metricsFlushFailed, metricsReusedWithDifferentOptions, metricsStartFailed, OtelConfigError } from '../otel.messages.js';
import type { ResolvedMetrics } from '../sdk/config/sdk-config.js';
import { processGlobal } from '../utils/process-global.js';
import { METER_NAME, OtelNestInstruments } from './instruments.js';
import { createMeterProvider, prometheusUrl, type ModuleImporter, type OwnMetricsConfig } from './meter-provider.factory.js';

type EnabledMetrics = Extract<ResolvedMetrics, { enabled: true }>;
type Logger = { warn(message: string): void; error(message: string, error?: unknown): void };
type MeterProviderListener = (provider: MeterProvider | undefined) => void;

/** The metrics running in this process: one provider, shared by every holder (apps, the preload). */
interface RunningMetrics {
  readonly description: string;
  /** The provider recorded into; undefined until an own provider is built. */
  provider: MeterProvider | undefined;
  /** otel-nest built it: the last holder shuts it down (which exports the last interval). */
  readonly owned: boolean;
  registeredGlobally: boolean;
  readonly ready: Promise<OtelConfigError | undefined>;
  holders: number;
}

interface MetricsSlot {
  /**
   * The instruments to record into, or undefined while metrics are off: the one check the hooks
   * make per request or message.
   */
  instruments: OtelNestInstruments | undefined;
  running: RunningMetrics | undefined;
  readonly listeners: Set<MeterProviderListener>;
}

/** Process-wide (see processGlobal): a CJS and an ESM copy of otel-nest record into the same provider. */
const slot = processGlobal<MetricsSlot>('metrics', () => ({ instruments: undefined, running: undefined, listeners: new Set() }));

/** The instruments to record into; undefined when metrics are off (the hooks then do nothing more). */
export function activeInstruments(): OtelNestInstruments | undefined {
  return slot.instruments;
}

/**
 * Calls `listener` with the meter provider whenever metrics start (at once if they run) and with
 * undefined when they stop. For instrumentations that take a provider (undici's, for `fetch`).
 * Returns the unsubscribe function.
 */
export function onMeterProvider(listener: MeterProviderListener): () => void {
  slot.listeners.add(listener);
  if (slot.running?.provider !== undefined && slot.instruments !== undefined) {
    listener(slot.running.provider);
  }
  return () => slot.listeners.delete(listener);
}

/** One holder's share of the process-wide metrics. */
export interface MetricsShare {
  /** For the startup summary: `otlp http://…/v1/metrics every 60 s`, `prometheus http://…/metrics`, … */
  readonly description: string;
  /** Why this holder's options could not apply (metrics already ran with others). */
  readonly warnings: readonly string[];
  /** Settles once recording has started; with the configuration error that stopped it, if any. Never rejects. */
  readonly ready: Promise<OtelConfigError | undefined>;
  /** Exports what was recorded so far (bounded). Never rejects. */
  forceFlush(): Promise<void>;
  /** Releases the share; the last holder of an own provider shuts it down (the final export). Never rejects. */
  release(): Promise<void>;
}

const NOOP_METER_CLASS = createNoopMeter().constructor;

/** A real meter provider is registered globally (the API's no-op one hands out no-op meters). */
function globalMeterProviderRegistered(): boolean {
  return !(metrics.getMeterProvider().getMeter(METER_NAME) instanceof NOOP_METER_CLASS);
}

function describe(config: EnabledMetrics, adopted: boolean): string {
  if (config.meterProvider !== undefined) {
    return 'into the MeterProvider given as metrics.meterProvider';
  }
  if (adopted) {
    return "into the application's global MeterProvider";
  }
  const every = `every ${config.intervalMillis / 1000} s`;
  const exporter = config.exporter!;
  switch (exporter.kind) {
    case 'otlp':
      return `otlp ${exporter.url} ${every}`;
    case 'prometheus':
      return `prometheus ${prometheusUrl(exporter)}`;
    case 'console':
      return `console ${every}`;
    case 'instance':
      return `${exporter.exporter.constructor?.name || 'PushMetricExporter'} ${every}`;
  }
}

function start(running: RunningMetrics, provider: MeterProvider): void {
  running.provider = provider;
  slot.instruments = new OtelNestInstruments(provider.getMeter(METER_NAME));
  for (const listener of slot.listeners) {
    listener(provider);
  }
}

export interface AcquireMetricsOptions {
  /** The resource of the traces (an own provider gets the same). */
  resource: () => Resource;
  logger: Logger;
  /** Replaces `import()` (tests). */
  load?: ModuleImporter;
}

/**
 * Takes a share of the process-wide metrics when `config` turns them on; undefined (and nothing
 * loaded) when it does not. The first holder decides how they are made: the `meterProvider` option,
 * else a meter provider registered globally (the application's SDK), else an own provider built from
 * `config` (loaded asynchronously, then registered globally unless one is by then).
 */
export function acquireMetrics(config: ResolvedMetrics, options: AcquireMetricsOptions): MetricsShare | undefined {
  if (!config.enabled) {
    return undefined;
  }
  let running = slot.running;
  const warnings: string[] = [];
  if (running !== undefined) {
    running.holders++;
    const description = describe(config, !running.owned && config.meterProvider === undefined);
    if (description !== running.description) {
      warnings.push(metricsReusedWithDifferentOptions(running.description));
    }
  } else {
    running = create(config, options);
    slot.running = running;
  }
  return share(running, warnings, options.logger);
}

function create(config: EnabledMetrics, options: AcquireMetricsOptions): RunningMetrics {
  const adopted = config.meterProvider ?? (globalMeterProviderRegistered() ? metrics.getMeterProvider() : undefined);
  if (adopted !== undefined) {
    const running: RunningMetrics = {
      description: describe(config, config.meterProvider === undefined),
      provider: undefined,
      owned: false,
      registeredGlobally: false,
      ready: Promise.resolve(undefined),
      holders: 1,
    };
    start(running, adopted);
    return running;
  }
  let resolveReady!: (error: OtelConfigError | undefined) => void;
  const running: RunningMetrics = {
    description: describe(config, false),
    provider: undefined,
    owned: true,
    registeredGlobally: false,
    ready: new Promise((resolve) => (resolveReady = resolve)),
    holders: 1,
  };
  createMeterProvider(config as OwnMetricsConfig, options.resource(), (message, error) => options.logger.error(message, error), options.load).then(
    (provider) => {
      if (slot.running !== running) {
        // Released before it was ready.
        void provider.shutdown().catch(() => undefined);
        resolveReady(undefined);
        return;
      }
      if (!globalMeterProviderRegistered()) {
        running.registeredGlobally = metrics.setGlobalMeterProvider(provider);
      }
      start(running, provider);
      resolveReady(undefined);
    },
    (error: unknown) => {
      if (slot.running === running) {
        slot.running = undefined;
      }
      if (error instanceof OtelConfigError) {
        resolveReady(error);
      } else {
        options.logger.error(metricsStartFailed(), error);
        resolveReady(undefined);
      }
    },
  );
  return running;
}

/** Longest wait of a metrics flush or shutdown: the same bound as the traces' (sdk-handle.ts). */
const METRICS_FLUSH_TIMEOUT_MS = 5000;

function within(promise: Promise<unknown>, logger: Logger): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      logger.error(metricsFlushFailed(), new Error(`timed out after ${METRICS_FLUSH_TIMEOUT_MS} ms`));
      resolve();
    }, METRICS_FLUSH_TIMEOUT_MS);
    timer.unref();
    promise.then(
      () => {
        clearTimeout(timer);
        resolve();
      },
      (error: unknown) => {
        clearTimeout(timer);
        logger.error(metricsFlushFailed(), error);
        resolve();
      },
    );
  });
}

type Flushable = { forceFlush?: () => Promise<void>; shutdown?: () => Promise<void> };

function share(running: RunningMetrics, warnings: readonly string[], logger: Logger): MetricsShare {
  let released = false;
  const flush = async (): Promise<void> => {
    await running.ready;
    await (running.provider as Flushable | undefined)?.forceFlush?.();
  };
  return {
    description: running.description,
    warnings,
    ready: running.ready,
    forceFlush: () => (released ? Promise.resolve() : within(flush(), logger)),
    release: async () => {
      if (released) {
        return;
      }
      released = true;
      if (--running.holders > 0 || !running.owned) {
        // Others still record into it, or it is the application's: this application's last
        // measurements leave now, as its spans do.
        if (running.holders <= 0 && slot.running === running) {
          stop(running);
        }
        await within(flush(), logger);
        return;
      }
      // Recording stops at once (a later application starts its own metrics); the provider's
      // shutdown runs a last collection and export of every reader (PeriodicExportingMetricReader's
      // onShutdown is forceFlush + exporter shutdown), so nothing recorded so far is lost.
      if (slot.running === running) {
        stop(running);
      }
      await within(
        running.ready.then(() => (running.provider as Flushable | undefined)?.shutdown?.()),
        logger,
      );
    },
  };
}

function stop(running: RunningMetrics): void {
  slot.running = undefined;
  slot.instruments = undefined;
  if (running.registeredGlobally && metrics.getMeterProvider() === running.provider) {
    metrics.disable();
  }
  for (const listener of slot.listeners) {
    listener(undefined);
  }
}
