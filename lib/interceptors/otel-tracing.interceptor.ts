import { Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import { tap, type Observable } from 'rxjs';
import { getHttpRequestState, setHandler } from '../http/http-server.instrumentation.js';
import { getConsumerState, setConsumerHandler } from '../transports/shared/messaging-tracing.js';
import { diagLimited } from '../utils/diag-limited.js';
import { handlerNotNamed } from '../otel.messages.js';

/**
 * Global interceptor: names the controller method on the span of the HTTP request or message
 * being handled, and keeps the first error the handler (or a pipe, or a later interceptor)
 * throws, so that the span records it once, with its type, when it ends. It never changes what
 * the handler returns or throws. The spans themselves are started earlier, before guards, by the
 * HTTP adapter hook and the traced transport servers.
 */
@Injectable()
export class OtelTracingInterceptor implements NestInterceptor {
  intercept(executionContext: ExecutionContext, next: CallHandler): Observable<unknown> {
    const type = executionContext.getType();
    const state = type === 'http' ? getHttpRequestState() : type === 'rpc' ? getConsumerState() : undefined;
    // Nothing to name or record on a span that is not recorded (unsampled): no operator per request.
    if (!state || !state.span.isRecording()) {
      return next.handle();
    }
    try {
      const controller = executionContext.getClass().name;
      const handler = executionContext.getHandler().name;
      if (type === 'http') {
        setHandler(state as NonNullable<ReturnType<typeof getHttpRequestState>>, controller, handler);
      } else {
        setConsumerHandler(state as NonNullable<ReturnType<typeof getConsumerState>>, controller, handler);
      }
    } catch (err) {
      diagLimited('error', handlerNotNamed(), err);
    }
    return next.handle().pipe(
      tap({
        error: (err: unknown) => {
          state.error ??= err;
        },
      }),
    );
  }
}
