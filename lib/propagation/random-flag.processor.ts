import { trace, type Context } from '@opentelemetry/api';
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace';
import { isRandomTrace, TRACE_FLAG_RANDOM } from './trace-context.propagator.js';

/**
 * Keeps W3C Trace Context Level 2's random flag on the spans otel-nest's SDK starts: a span whose
 * parent's trace has the flag (a remote parent that sent it, or a local span that has it) gets it,
 * and so does a new root, because the SDK's default id generator makes random trace ids. The SDK
 * itself computes trace flags from the sampling decision alone and drops the bit.
 *
 * Runs for recording spans (processors see only those); for spans that are not recorded the
 * propagator still sends the flag of a trace that arrived with it. Only installed on providers
 * otel-nest creates (their id generator is the SDK's random one); on a provider of yours, add it
 * only if your id generator makes random trace ids.
 */
export class RandomTraceFlagSpanProcessor implements SpanProcessor {
  onStart(span: Span, parentContext: Context): void {
    const parent = trace.getSpanContext(parentContext);
    if (parent === undefined || isRandomTrace(parentContext, parent)) {
      // The span context object of an SDK span is the one it reports and exports.
      span.spanContext().traceFlags |= TRACE_FLAG_RANDOM;
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
