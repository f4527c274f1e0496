import { Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import { diag } from '@opentelemetry/api';
import { tap, type Observable } from 'rxjs';
import { getHttpRequestState, setHandler } from '../http/http-server.instrumentation.js';

/**
 * Global interceptor for HTTP handlers: names the controller method on the request's SERVER span
 * and keeps the error a handler throws, so that the 5xx answer Nest makes of it is recorded once
 * with its type. It never changes what the handler returns or throws.
 */
@Injectable()
export class HttpTracingInterceptor implements NestInterceptor {
  intercept(executionContext: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (executionContext.getType() !== 'http') {
      return next.handle();
    }
    const state = getHttpRequestState();
    if (!state) {
      return next.handle();
    }
    try {
      setHandler(state, executionContext.getClass().name, executionContext.getHandler().name);
    } catch (err) {
      diag.error('otel-nest: could not name the HTTP handler on its span.', err);
    }
    return next.handle().pipe(
      tap({
        error: (err: unknown) => {
          state.error = err;
        },
      }),
    );
  }
}
