import { SpanKind, type Context } from '@opentelemetry/api';
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace';
import { requestIdNotRecorded } from '../otel.messages.js';
import { getRequestId, REQUEST_ID_DEFAULTS } from '../propagation/request-id.propagator.js';
import { diagLimited } from '../utils/diag-limited.js';

/**
 * Records the request id of the parent context (see `RequestIdPropagator`) on the spans that
 * receive a request or a message: SERVER and CONSUMER spans, whichever instrumentation starts
 * them (otel-nest's HTTP, gRPC and transport servers, instrumentation-http). Spans inside the
 * request do not repeat it: the trace id joins them to it.
 *
 * OtelModule adds it for `requestId`; with your own SDK, add it yourself next to the propagator.
 */
export class RequestIdSpanProcessor implements SpanProcessor {
  constructor(private readonly attribute: string = REQUEST_ID_DEFAULTS.attribute) {}

  onStart(span: Span, parentContext: Context): void {
    try {
      if (span.kind !== SpanKind.SERVER && span.kind !== SpanKind.CONSUMER) {
        return;
      }
      const id = getRequestId(parentContext);
      if (id !== undefined && span.attributes[this.attribute] === undefined) {
        span.setAttribute(this.attribute, id);
      }
    } catch (error) {
      diagLimited('warn', requestIdNotRecorded(), error);
    }
  }

  onEnd(_span: ReadableSpan): void {}

  forceFlush(): Promise<void> {
    return Promise.resolve();
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}
