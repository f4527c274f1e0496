import { ConsoleLogger, Injectable, Optional, type ConsoleLoggerOptions } from '@nestjs/common';
import { context } from '@opentelemetry/api';
import { logCorrelationFields, resolveLogFields, type LogCorrelationFieldNames, type ResolvedLogFields } from './log-correlation.js';

/** Options of {@link OtelConsoleLogger}: Nest's `ConsoleLoggerOptions` (`json`, `colors`, `logLevels`, ...) plus the field names. */
export interface OtelConsoleLoggerOptions extends ConsoleLoggerOptions {
  /** Names of the correlation fields; `false` leaves one out. Default: `trace_id`, `span_id`, `trace_flags`, `request_id`. */
  fields?: LogCorrelationFieldNames;
}

/**
 * Nest's `ConsoleLogger` with the trace of the caller on every line written inside a traced
 * request or message, and nothing on the others (bootstrap, timers outside a request):
 *
 * - text: `... [OrdersService] order placed trace_id=4bf9... span_id=00f0... trace_flags=01`
 * - JSON (`json: true`): `{"level":"log",...,"message":"order placed","trace_id":"4bf9...","span_id":"00f0...","trace_flags":"01"}`
 *
 * ```ts
 * const app = await NestFactory.create(AppModule, { logger: new OtelConsoleLogger({ json: true }) });
 * // or: app.useLogger(new OtelConsoleLogger());
 * ```
 * Only Nest's own protected formatting seams (`formatMessage`, `getJsonLogObject`) are overridden.
 */
@Injectable()
export class OtelConsoleLogger extends ConsoleLogger {
  private readonly fieldNames: ResolvedLogFields;

  constructor();
  constructor(context: string);
  constructor(options: OtelConsoleLoggerOptions);
  constructor(context: string, options: OtelConsoleLoggerOptions);
  constructor(@Optional() contextOrOptions?: string | OtelConsoleLoggerOptions, @Optional() options?: OtelConsoleLoggerOptions) {
    // ConsoleLogger sorts out (), (context), (options) and (context, options) itself.
    super(contextOrOptions as string, options as ConsoleLoggerOptions);
    const given = typeof contextOrOptions === 'object' ? contextOrOptions : options;
    this.fieldNames = resolveLogFields(given?.fields);
  }

  /** Text mode: `key=value` pairs at the end of the line (the ids and flags are hex, request ids have no spaces). */
  protected override formatMessage(...args: any[]): string {
    const line = (super.formatMessage as (...a: unknown[]) => string)(...args);
    const fields = logCorrelationFields(context.active(), this.fieldNames);
    if (fields === undefined) {
      return line;
    }
    let suffix = '';
    for (const [name, value] of Object.entries(fields)) {
      suffix += ` ${name}=${value}`;
    }
    return line.endsWith('\n') ? `${line.slice(0, -1)}${suffix}\n` : `${line}${suffix}`;
  }

  /** JSON mode: the fields next to `level`, `message` and `context`. */
  protected override getJsonLogObject(...args: any[]): any {
    const object = (super.getJsonLogObject as (...a: unknown[]) => Record<string, unknown>)(...args);
    const fields = logCorrelationFields(context.active(), this.fieldNames);
    return fields === undefined ? object : Object.assign(object, fields);
  }
}
