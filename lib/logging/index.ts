export {
  DEFAULT_LOG_FIELDS,
  ECS_LOG_FIELDS,
  logCorrelationFields,
  otelPinoMixin,
  otelWinstonFormat,
  otelWinstonMeta,
  type LogCorrelationFieldNames,
  type LogCorrelationOptions,
  type OtelWinstonFormat,
} from './log-correlation.js';
export { OtelConsoleLogger, type OtelConsoleLoggerOptions } from './otel-console.logger.js';
