import { Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { OTEL_INTERNAL_ENHANCER } from '../enhancers/enhancer-spans.config.js';
import { nameHandlerSpan } from './handler-span.js';

/**
 * Global guard used instead of the interceptor when `globalInterceptor: false`: names the
 * controller method on the span of the request or message being handled, and lets everything
 * through. Nest's guard pipeline is a loop and a promise per request, far cheaper than its
 * interceptor pipeline; a guard never sees what the handler throws, so no exception event.
 */
@Injectable()
export class OtelHandlerGuard implements CanActivate {
  /** Never wrapped for enhancer spans: the request span is its own. */
  static readonly [OTEL_INTERNAL_ENHANCER] = true;

  canActivate(executionContext: ExecutionContext): boolean {
    nameHandlerSpan(executionContext);
    return true;
  }
}
