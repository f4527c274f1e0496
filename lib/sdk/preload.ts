import { preloadFailed, sdkShutdownFailed } from '../otel.messages.js';
import { resolveSdkConfig } from './config/index.js';
import { FLUSH_TIMEOUT_MS, acquireSdk, type SdkHandle, type SdkLogger } from './sdk-handle.js';

// The preload (`node --import otel-nest/register`): the SDK started from the environment alone,
// and the exit handlers that release it.

const PRELOAD_KEY = Symbol.for('otel-nest.preload');

type GlobalSlots = Record<symbol, unknown>;

/**
 * The exit handlers' own limit, a safety net: the release they run already stops waiting after
 * {@link FLUSH_TIMEOUT_MS} and reports what it dropped.
 */
export const EXIT_FLUSH_TIMEOUT_MS = FLUSH_TIMEOUT_MS + 1000;

/** The part of `process` the exit handlers use (a fake one in tests). */
export interface ExitProcess {
  readonly pid: number;
  once(event: 'beforeExit', listener: () => void): unknown;
  on(event: 'SIGTERM', listener: (signal: NodeJS.Signals) => void): unknown;
  removeListener(event: 'SIGTERM', listener: (signal: NodeJS.Signals) => void): unknown;
  listenerCount(event: 'SIGTERM'): number;
  kill(pid: number, signal: NodeJS.Signals): unknown;
}

export interface StartSdkFromEnvOptions {
  /** Default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Default: `console.warn` / `console.error` (the preload runs before any Nest logger exists). */
  logger?: SdkLogger;
  /** Default `process`. */
  process?: ExitProcess;
}

const consoleSdkLogger: SdkLogger = {
  warn: (message) => console.warn(message),
  error: (message, error) => console.error(message, error ?? ''),
};

/**
 * Starts the SDK from `OTEL_*` variables alone, for the preload. Idempotent: a second call (the
 * preload imported twice, or through two paths) returns the first handle. The preload holds its
 * own share until the process exits, so the SDK outlives every Nest application that reuses it.
 * Never throws: a preload that fails leaves the application running without tracing.
 */
export function startSdkFromEnv(options: StartSdkFromEnvOptions = {}): SdkHandle | undefined {
  const slots = globalThis as GlobalSlots;
  const started = slots[PRELOAD_KEY] as SdkHandle | undefined;
  if (started !== undefined) {
    return started;
  }
  const logger = options.logger ?? consoleSdkLogger;
  try {
    // `{}` has no explicit option to reject: environment problems come back as warnings.
    const config = resolveSdkConfig({}, options.env ?? process.env);
    const handle = acquireSdk(config, logger, 'preload');
    slots[PRELOAD_KEY] = handle;
    [...config.warnings, ...handle.warnings].forEach((warning) => logger.warn(warning));
    // Metrics that cannot start (the Prometheus exporter not installed) leave the application running without them.
    void handle.metrics?.ready.then((error) => error && logger.error(error.message));
    if (handle.owned) {
      installExitHandlers(handle, options.process ?? process, logger);
    }
    return handle;
  } catch (error) {
    logger.error(preloadFailed(), error);
    return undefined;
  }
}

/**
 * Releases the preload's share when the process ends, so buffered spans are exported:
 * - `beforeExit` (the event loop ran dry, e.g. after `app.close()`): flush, then release, which
 *   shuts the SDK down once no Nest application holds it any more.
 * - SIGTERM: listening to it replaces Node's default "terminate". If another listener exists (Nest's
 *   `enableShutdownHooks()`, a user handler) that listener owns the exit: we only flush. Nest
 *   closes the app, removes its listener and re-sends SIGTERM, which then finds us alone. Alone,
 *   we release (which flushes; bounded by {@link FLUSH_TIMEOUT_MS}), remove our listener and re-send the
 *   signal, so the process dies of SIGTERM exactly as without us: the parent sees the signal (exit
 *   status 143 in a shell), which `process.exit(143)` would only imitate.
 */
export function installExitHandlers(handle: SdkHandle, proc: ExitProcess, logger: SdkLogger): void {
  // The release flushes even when an application that never closed still holds the SDK (its batch
  // processor's timer does not keep Node alive), within one bound for the flush and the shutdown.
  const flushAndRelease = (): Promise<void> => handle.shutdown();
  // Set when another SIGTERM listener took over the exit. Nest's enableShutdownHooks() removes its
  // listener and re-sends the signal once its shutdown is over, but a signal sent to an idle
  // process is never dispatched (signal handles do not keep the event loop alive): the loop ends
  // instead, with 0. Then the signal is re-raised here, but only when that listener is gone: a
  // handler of the application's that is still registered chose to let the process end by itself.
  let sigtermOwnedByOthers = false;
  proc.once('beforeExit', () => {
    void flushAndRelease().finally(() => {
      if (sigtermOwnedByOthers && proc.listenerCount('SIGTERM') === 1) {
        proc.removeListener('SIGTERM', onSigterm);
        proc.kill(proc.pid, 'SIGTERM');
      }
    });
  });
  const onSigterm = (): void => {
    if (proc.listenerCount('SIGTERM') > 1) {
      sigtermOwnedByOthers = true;
      void handle.forceFlush();
      return;
    }
    proc.removeListener('SIGTERM', onSigterm);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        logger.error(sdkShutdownFailed(), new Error(`timed out after ${EXIT_FLUSH_TIMEOUT_MS} ms`));
        resolve();
      }, EXIT_FLUSH_TIMEOUT_MS);
    });
    void Promise.race([flushAndRelease(), timeout]).finally(() => {
      clearTimeout(timer);
      proc.kill(proc.pid, 'SIGTERM');
    });
  };
  proc.on('SIGTERM', onSigterm);
}
