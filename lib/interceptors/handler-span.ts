import type { ExecutionContext } from '@nestjs/common';
import type { Span } from '@opentelemetry/api';
import { getHttpRequestState } from '../http/http-server.instrumentation.js';
import { handlerNotNamed } from '../otel.messages.js';
import { ATTR_NESTJS_CONTROLLER, ATTR_NESTJS_HANDLER } from '../semconv.js';
import { getConsumerState } from '../transports/shared/messaging-tracing.js';
import { captureMessageBody } from '../transports/shared/message-capture.js';
import { diagLimited } from '../utils/diag-limited.js';

/** What the interceptor and the guard share of an HTTP request's or a message's state. */
export interface HandledSpanState {
  readonly span: Span;
  /** The first error seen; recorded once when the span ends. */
  error?: unknown;
}

/**
 * The state of the recording span of the HTTP request or message `executionContext` handles,
 * after naming the controller method on it; `undefined` when there is none to record on (another
 * context type, untraced, or unsampled).
 */
export function nameHandlerSpan(executionContext: ExecutionContext): HandledSpanState | undefined {
  const type = executionContext.getType();
  const state: HandledSpanState | undefined = type === 'http' ? getHttpRequestState() : type === 'rpc' ? getConsumerState() : undefined;
  if (!state?.span.isRecording()) {
    return undefined;
  }
  try {
    state.span.setAttribute(ATTR_NESTJS_CONTROLLER, executionContext.getClass().name);
    state.span.setAttribute(ATTR_NESTJS_HANDLER, executionContext.getHandler().name);
  } catch (err) {
    diagLimited('error', handlerNotNamed(), err);
  }
  const consumer = type === 'rpc' ? (state as ReturnType<typeof getConsumerState>) : undefined;
  if (consumer?.capture !== undefined) {
    // The handler's data, as Nest deserialized it: what a message body means to the application.
    captureMessageBody(consumer.capture, executionContext.switchToRpc().getData(), state.span);
    consumer.capture = undefined;
  }
  return state;
}
