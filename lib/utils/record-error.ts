import { SpanStatusCode, type Exception, type Span } from '@opentelemetry/api';
import { ATTR_ERROR_TYPE, ERROR_TYPE_VALUE_OTHER } from '../semconv.js';
import { processGlobal } from './process-global.js';
import { recordsExceptionEvents } from './exception-signal.js';

/**
 * Errors already recorded as an exception event. The same error usually bubbles through several
 * nested spans (a `@Traced` method inside a handler inside a request); the semantic conventions
 * ask for it to be recorded once, so only the innermost span gets the event. Every span it fails
 * still gets status ERROR and `error.type`.
 */
const recorded = processGlobal('recorded-errors', () => new WeakSet<object>());

/** The low-cardinality `error.type` of a thrown value: its class name, else `_OTHER`. */
export function errorTypeOf(error: unknown): string {
  if (error instanceof Error) {
    const name = error.constructor?.name;
    return name && name !== 'Object' ? name : error.name || ERROR_TYPE_VALUE_OTHER;
  }
  if (error !== null && typeof error === 'object') {
    const name = (error as object).constructor?.name;
    return name && name !== 'Object' ? name : ERROR_TYPE_VALUE_OTHER;
  }
  return ERROR_TYPE_VALUE_OTHER;
}

function messageOf(error: unknown): string {
  if (error instanceof Error) {
    return error.message;
  }
  if (typeof error === 'string') {
    return error;
  }
  try {
    return JSON.stringify(error) ?? String(error);
  } catch {
    return String(error);
  }
}

/**
 * Marks `span` as failed by `error`: status ERROR with the error's message, `error.type`, and the
 * exception event the first time this error object is seen (unless
 * `OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN=logs`). Never throws.
 */
export function recordError(span: Span, error: unknown, errorType: string = errorTypeOf(error)): void {
  try {
    span.setAttribute(ATTR_ERROR_TYPE, errorType);
    span.setStatus({ code: SpanStatusCode.ERROR, message: messageOf(error) });
    const isObject = error !== null && typeof error === 'object';
    if (isObject && recorded.has(error)) {
      return;
    }
    if (isObject) {
      recorded.add(error);
    }
    // exception.type is the class (`PaymentDeclinedError`), which `error.name` often is not.
    const exception: Exception = { name: errorTypeOf(error), message: messageOf(error) };
    if (error instanceof Error && error.stack) {
      exception.stack = error.stack;
    }
    // OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN=logs asks for no span event (see exception-signal.ts).
    if (recordsExceptionEvents()) {
      span.recordException(exception);
    }
  } catch {
    // A span implementation that throws must not turn the user's error into ours.
  }
}
