import { defaultTextMapGetter, defaultTextMapSetter, ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { AlwaysOffSampler, InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { describe, expect, it } from 'vitest';
import { RandomTraceFlagSpanProcessor } from './random-flag.processor.js';
import { TRACE_FLAG_RANDOM, W3CTraceContextPropagator } from './trace-context.propagator.js';

const propagator = new W3CTraceContextPropagator();

function setup(withProcessor: boolean) {
  const exporter = new InMemorySpanExporter();
  const provider = new TracerProvider({
    spanProcessors: [...(withProcessor ? [new RandomTraceFlagSpanProcessor()] : []), new SimpleSpanProcessor({ exporter })],
  });
  return { exporter, tracer: provider.getTracer('t') };
}

describe('RandomTraceFlagSpanProcessor (Level 2 random flag on our spans)', () => {
  it('a child of a remote parent with the random flag keeps it, on the exported span and the sent header', () => {
    const { exporter, tracer } = setup(true);
    const parent = propagator.extract(ROOT_CONTEXT, { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03' }, defaultTextMapGetter);
    const span = tracer.startSpan('server', {}, parent);
    const child = tracer.startSpan('child', {}, trace.setSpan(parent, span));
    const out: Record<string, string> = {};
    propagator.inject(trace.setSpan(ROOT_CONTEXT, child), out, defaultTextMapSetter);
    child.end();
    span.end();
    expect(exporter.getFinishedSpans().map((s) => s.spanContext().traceFlags)).toEqual([3, 3]);
    expect(out.traceparent).toMatch(/-03$/);
  });

  it('without the processor the SDK drops it (what this processor is for)', () => {
    const { exporter, tracer } = setup(false);
    const parent = propagator.extract(ROOT_CONTEXT, { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03' }, defaultTextMapGetter);
    tracer.startSpan('server', {}, parent).end();
    expect(exporter.getFinishedSpans()[0]!.spanContext().traceFlags).toBe(1);
  });

  it('a parent without the flag: the child has none; a new root (random SDK trace id) has it', () => {
    const { exporter, tracer } = setup(true);
    const parent = propagator.extract(ROOT_CONTEXT, { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' }, defaultTextMapGetter);
    tracer.startSpan('continued', {}, parent).end();
    tracer.startSpan('root', {}, ROOT_CONTEXT).end();
    const [continued, root] = exporter.getFinishedSpans();
    expect(continued!.spanContext().traceFlags & TRACE_FLAG_RANDOM).toBe(0);
    expect(root!.spanContext().traceFlags).toBe(1 | TRACE_FLAG_RANDOM);
  });

  it('an unsampled child of a random remote parent still sends the flag (from the context)', () => {
    const provider = new TracerProvider({ sampler: new AlwaysOffSampler(), spanProcessors: [new RandomTraceFlagSpanProcessor()] });
    const parent = propagator.extract(ROOT_CONTEXT, { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-02' }, defaultTextMapGetter);
    const span = provider.getTracer('t').startSpan('server', {}, parent);
    const out: Record<string, string> = {};
    propagator.inject(trace.setSpan(parent, span), out, defaultTextMapSetter);
    expect(out.traceparent).toMatch(/^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-02$/);
  });
});
