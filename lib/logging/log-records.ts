import { context } from '@opentelemetry/api';
import { logRecordEmitFailed } from '../otel.messages.js';
import { diagLimited } from '../utils/diag-limited.js';

/**
 * The part of an `@opentelemetry/api-logs` LoggerProvider used here. Typed locally: api-logs is
 * an optional peer, loaded only when `logs` is on, and this file is on every logger's path.
 */
export interface LogRecordSink {
  getLogger(name: string): {
    emit(record: {
      severityNumber?: number;
      severityText?: string;
      body?: unknown;
      attributes?: Record<string, unknown>;
      context?: unknown;
    }): void;
  };
}

/**
 * Where the LoggerProvider of `OtelModule.forRoot({ logs })` is published for the loggers: a
 * global symbol, so that a CJS and an ESM copy of this package share it, like the SDK state.
 */
export const OTEL_NEST_LOGS_KEY = Symbol.for('otel-nest.logs');

type Slots = Record<symbol, LogRecordSink | undefined>;

export function setLogRecordSink(sink: LogRecordSink | undefined): void {
  (globalThis as unknown as Slots)[OTEL_NEST_LOGS_KEY] = sink;
}

export function getLogRecordSink(): LogRecordSink | undefined {
  return (globalThis as unknown as Slots)[OTEL_NEST_LOGS_KEY];
}

/** Nest's levels as OpenTelemetry severities (log data model: TRACE 1, DEBUG 5, INFO 9, WARN 13, ERROR 17, FATAL 21). */
const SEVERITY: Readonly<Record<string, readonly [number, string]>> = {
  verbose: [1, 'TRACE'],
  debug: [5, 'DEBUG'],
  log: [9, 'INFO'],
  warn: [13, 'WARN'],
  error: [17, 'ERROR'],
  fatal: [21, 'FATAL'],
};

/** A message as a LogRecord body: strings and plain data as they are, an Error as its message, anything else as text. */
function body(message: unknown): unknown {
  if (message instanceof Error) {
    return message.message;
  }
  if (typeof message === 'function') {
    return message.name;
  }
  if (message === null || ['string', 'number', 'boolean'].includes(typeof message)) {
    return message;
  }
  try {
    return JSON.parse(JSON.stringify(message)) as unknown;
  } catch {
    return String(message);
  }
}

/**
 * Emits one LogRecord per message, in the active context (the SDK takes the trace and span ids
 * from it), when a LoggerProvider is published; does nothing otherwise. The scope is the Nest
 * logger context (`OrdersService`), as log bridges name it after the logger. Never throws.
 */
export function emitLogRecord(messages: readonly unknown[], nestContext: string | undefined, level: string): void {
  const sink = getLogRecordSink();
  if (sink === undefined) {
    return;
  }
  try {
    const [severityNumber, severityText] = SEVERITY[level] ?? SEVERITY.log!;
    const logger = sink.getLogger(nestContext || 'nestjs');
    const active = context.active();
    for (const message of messages) {
      const attributes: Record<string, unknown> = {};
      if (message instanceof Error) {
        attributes['exception.type'] = message.name;
        attributes['exception.message'] = message.message;
        if (message.stack) {
          attributes['exception.stacktrace'] = message.stack;
        }
      }
      logger.emit({ severityNumber, severityText, body: body(message), attributes, context: active });
    }
  } catch (error) {
    diagLimited('warn', logRecordEmitFailed(), error);
  }
}
