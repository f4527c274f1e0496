import { Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import { tap, type Observable } from 'rxjs';
import { OTEL_INTERNAL_ENHANCER } from '../enhancers/enhancer-spans.config.js';
import { nameHandlerSpan } from './handler-span.js';

/**
 * Global interceptor: names the controller method on the span of the HTTP request or message
 * being handled, and keeps the first error the handler (or a pipe, or a later interceptor)
 * throws, so that the span records it once, with its type, when it ends. It never changes what
 * the handler returns or throws. The spans themselves are started earlier, before guards, by the
 * HTTP adapter hook and the traced transport servers.
 */
@Injectable()
export class OtelTracingInterceptor implements NestInterceptor {
  /** Never wrapped for enhancer spans: the request span is its own. */
  static readonly [OTEL_INTERNAL_ENHANCER] = true;

  intercept(executionContext: ExecutionContext, next: CallHandler): Observable<unknown> {
    const state = nameHandlerSpan(executionContext);
    // Nothing to name or record on a span that is not recorded (unsampled): no operator per request.
    if (!state) {
      return next.handle();
    }
    const capture = (state as { captureResponseBody?: boolean; responseBody?: unknown }).captureResponseBody
      ? (value: unknown) => {
          // http.captureBody.response: the first value is the response body (recorded when it ends).
          (state as { responseBody?: unknown }).responseBody ??= value;
        }
      : undefined;
    return next.handle().pipe(
      tap({
        next: capture,
        error: (err: unknown) => {
          state.error ??= err;
        },
      }),
    );
  }
}
