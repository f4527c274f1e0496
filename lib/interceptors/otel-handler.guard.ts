import { Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { getHttpRequestState, setHandler } from '../http/http-server.instrumentation.js';
import { handlerNotNamed } from '../otel.messages.js';
import { getConsumerState, setConsumerHandler } from '../transports/shared/messaging-tracing.js';
import { diagLimited } from '../utils/diag-limited.js';

/**
 * Global guard used instead of the interceptor when `globalInterceptor: false`: names the
 * controller method on the span of the request or message being handled, and lets everything
 * through. Nest's guard pipeline is a loop and a promise per request, far cheaper than its
 * interceptor pipeline; a guard never sees what the handler throws, so no exception event.
 */
@Injectable()
export class OtelHandlerGuard implements CanActivate {
  canActivate(executionContext: ExecutionContext): boolean {
    try {
      const type = executionContext.getType();
      if (type === 'http') {
        const state = getHttpRequestState();
        if (state?.span.isRecording()) {
          setHandler(state, executionContext.getClass().name, executionContext.getHandler().name);
        }
      } else if (type === 'rpc') {
        const state = getConsumerState();
        if (state?.span.isRecording()) {
          setConsumerHandler(state, executionContext.getClass().name, executionContext.getHandler().name);
        }
      }
    } catch (err) {
      diagLimited('error', handlerNotNamed(), err);
    }
    return true;
  }
}
