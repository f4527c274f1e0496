import { diag } from '@opentelemetry/api';
import { exceptionLogsUnavailable } from '../otel.messages.js';
import { processGlobal } from './process-global.js';

/** The variable the semantic conventions define for moving exceptions from span events to logs. */
export const EXCEPTION_SIGNAL_OPT_IN = 'OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN';

/**
 * Whether a failed span gets its `exception` event, per `OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN`
 * (a comma-separated list): absent or without `logs`/`logs/dup`, yes (span events, the default);
 * `logs/dup` (wins over `logs`), yes; `logs`, no. The conventions then want a log record instead,
 * which otel-nest cannot emit (no logs SDK), so either value is reported once through `diag`.
 * Status ERROR and `error.type` are set in every case. Read on each failure: errors are rare, and
 * tests (or a late `process.env` change) see the current value.
 */
export function recordsExceptionEvents(env: NodeJS.ProcessEnv = process.env): boolean {
  const raw = env[EXCEPTION_SIGNAL_OPT_IN];
  if (!raw) {
    return true;
  }
  const values = raw.split(',').map((value) => value.trim().toLowerCase());
  const signal = values.includes('logs/dup') ? 'logs/dup' : values.includes('logs') ? 'logs' : undefined;
  if (signal === undefined) {
    return true;
  }
  const warned = processGlobal('exception-signal-warned', () => new Set<string>());
  if (!warned.has(signal)) {
    warned.add(signal);
    diag.warn(exceptionLogsUnavailable(signal, signal === 'logs/dup'));
  }
  return signal === 'logs/dup';
}
