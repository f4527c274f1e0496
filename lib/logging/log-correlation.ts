import { context, isSpanContextValid, trace, type Context } from '@opentelemetry/api';
import { logCorrelationFailed } from '../otel.messages.js';
import { getRequestId } from '../propagation/request-id.propagator.js';
import { diagLimited } from '../utils/diag-limited.js';

/**
 * The names of the fields a log line gets; `false` leaves a field out. The defaults are those of
 * the OpenTelemetry log data model's JSON form and of the contrib pino/winston instrumentations.
 */
export interface LogCorrelationFieldNames {
  /** The trace id, 32 lower-case hex digits. Default `'trace_id'`. */
  traceId?: string | false;
  /** The id of the span active when the line is written, 16 hex digits. Default `'span_id'`. */
  spanId?: string | false;
  /** The W3C trace flags as two hex digits (`'01'` sampled, `'00'` not). Default `'trace_flags'`. */
  traceFlags?: string | false;
  /** The request id of the `requestId` bridge, when there is one. Default `'request_id'`. */
  requestId?: string | false;
}

/** Options of the log-correlation helpers. */
export interface LogCorrelationOptions {
  /** Field names; see {@link LogCorrelationFieldNames}. Default: `trace_id`, `span_id`, `trace_flags`, `request_id`. */
  fields?: LogCorrelationFieldNames;
}

export const DEFAULT_LOG_FIELDS: Readonly<Required<LogCorrelationFieldNames>> = {
  traceId: 'trace_id',
  spanId: 'span_id',
  traceFlags: 'trace_flags',
  requestId: 'request_id',
};

/**
 * The Elastic Common Schema names: `trace.id`, `span.id`, `http.request.id` (ECS has no trace
 * flags). Use as `{ fields: ECS_LOG_FIELDS }`.
 */
export const ECS_LOG_FIELDS: Readonly<Required<LogCorrelationFieldNames>> = {
  traceId: 'trace.id',
  spanId: 'span.id',
  traceFlags: false,
  requestId: 'http.request.id',
};

/** Field names with the defaults applied. */
export type ResolvedLogFields = Readonly<Required<LogCorrelationFieldNames>>;

export function resolveLogFields(fields: LogCorrelationFieldNames | undefined): ResolvedLogFields {
  return { ...DEFAULT_LOG_FIELDS, ...fields };
}

/**
 * The correlation fields of `ctx` (default: the active context): the trace id, span id and
 * trace flags of its span when it has a valid one (sampled or not: an unsampled request's lines
 * still share its trace id, with `trace_flags` `'00'`), and the request id when the bridge set
 * one. Undefined outside a trace and a request: no field at all, never empty ones. Never throws.
 */
export function logCorrelationFields(
  ctx: Context = context.active(),
  names: ResolvedLogFields = DEFAULT_LOG_FIELDS,
): Record<string, string> | undefined {
  try {
    let fields: Record<string, string> | undefined;
    const spanContext = trace.getSpan(ctx)?.spanContext();
    if (spanContext !== undefined && isSpanContextValid(spanContext)) {
      fields = {};
      if (names.traceId !== false) {
        fields[names.traceId] = spanContext.traceId;
      }
      if (names.spanId !== false) {
        fields[names.spanId] = spanContext.spanId;
      }
      if (names.traceFlags !== false) {
        fields[names.traceFlags] = (spanContext.traceFlags & 0xff).toString(16).padStart(2, '0');
      }
    }
    if (names.requestId !== false) {
      const requestId = getRequestId(ctx);
      if (requestId !== undefined) {
        (fields ??= {})[names.requestId] = requestId;
      }
    }
    return fields;
  } catch (error) {
    diagLimited('warn', logCorrelationFailed(), error);
    return undefined;
  }
}

/**
 * A pino `mixin`: every line written inside a traced request or message gets `trace_id`,
 * `span_id`, `trace_flags` (and `request_id`); lines outside one get nothing.
 *
 * ```ts
 * pino({ mixin: otelPinoMixin() })
 * LoggerModule.forRoot({ pinoHttp: { mixin: otelPinoMixin() } }) // nestjs-pino
 * ```
 * pino calls it synchronously in the logging call, so the fields are those of the caller's context.
 */
export function otelPinoMixin(options: LogCorrelationOptions = {}): () => Record<string, string> {
  const names = resolveLogFields(options.fields);
  // A fresh object per line: pino's default merge strategy assigns the line's own fields onto it.
  return () => logCorrelationFields(context.active(), names) ?? {};
}

/**
 * What winston (logform) asks of a format: a `transform`. Structurally a `winston.Logform.Format`
 * (typed loosely, so that winston's types are not needed to compile against this package).
 */
export interface OtelWinstonFormat {
  transform(info: any, options?: unknown): any;
  options?: object;
}

/**
 * A winston format that adds `trace_id`, `span_id`, `trace_flags` (and `request_id`) to every
 * entry written inside a traced request or message. Put it first in `format.combine`, before
 * the format that renders the line:
 *
 * ```ts
 * winston.createLogger({ format: winston.format.combine(otelWinstonFormat(), winston.format.json()), transports })
 * WinstonModule.createLogger({ ... }) // nest-winston, same options
 * ```
 * Formats run when winston's logger stream transforms an entry: in the logging call, unless a
 * slow transport holds the stream back (then later, outside the caller's context). For that
 * case, {@link otelWinstonMeta} as `defaultMeta` reads the ids in the logging call itself.
 */
export function otelWinstonFormat(options: LogCorrelationOptions = {}): OtelWinstonFormat {
  const names = resolveLogFields(options.fields);
  return {
    transform(info) {
      if (info[CAPTURED] !== true) {
        const fields = logCorrelationFields(context.active(), names);
        if (fields !== undefined) {
          Object.assign(info, fields);
        }
      }
      return info;
    },
  };
}

/** Set by {@link otelWinstonMeta} on an entry whose ids it already read. */
const CAPTURED = Symbol.for('otel-nest.log-correlation.captured');

/**
 * A winston `defaultMeta` whose fields are the correlation fields of the context active when
 * winston reads it: in `logger.log()` / `logger.info()`, synchronously in the caller's context,
 * even when a slow transport delays the formats. Pass it as is (`defaultMeta: otelWinstonMeta()`),
 * not spread into another object (a copy would freeze the ids of the moment it was made).
 */
export function otelWinstonMeta(options: LogCorrelationOptions = {}): Record<string, unknown> {
  const names = resolveLogFields(options.fields);
  const current = (): Record<string | symbol, unknown> => {
    const fields: Record<string | symbol, unknown> = { ...logCorrelationFields(context.active(), names) };
    fields[CAPTURED] = true;
    return fields;
  };
  // Winston copies defaultMeta with Object.assign, which asks for the own keys and then reads each
  // of them: both traps answer from the active context.
  return new Proxy({} as Record<string, unknown>, {
    ownKeys: () => Reflect.ownKeys(current()),
    getOwnPropertyDescriptor: (_target, key) => {
      const fields = current();
      return key in fields ? { value: fields[key], enumerable: true, configurable: true, writable: false } : undefined;
    },
    get: (_target, key) => current()[key],
    has: (_target, key) => key in current(),
  });
}
