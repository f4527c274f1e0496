import { diag, DiagLogLevel, propagation, ROOT_CONTEXT, type Context, type DiagLogger } from '@opentelemetry/api';
import {
  TracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type Span,
} from '@opentelemetry/sdk-trace';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { BaggageAttributesSpanProcessor } from './baggage-attributes.processor.js';

function withBaggage(entries: Record<string, string>): Context {
  const baggage = propagation.createBaggage(
    Object.fromEntries(Object.entries(entries).map(([key, value]) => [key, { value }])),
  );
  return propagation.setBaggage(ROOT_CONTEXT, baggage);
}

function spyDiag(): { warn: ReturnType<typeof vi.fn> } {
  const logger = { error: vi.fn(), warn: vi.fn(), info: vi.fn(), debug: vi.fn(), verbose: vi.fn() };
  diag.setLogger(logger as DiagLogger, DiagLogLevel.WARN);
  return logger;
}

describe('BaggageAttributesSpanProcessor', () => {
  let exporter: InMemorySpanExporter;
  let processor: BaggageAttributesSpanProcessor;
  let provider: TracerProvider;

  beforeEach(() => {
    exporter = new InMemorySpanExporter();
    processor = new BaggageAttributesSpanProcessor(['tenant.id', 'user.id']);
    provider = new TracerProvider({ spanProcessors: [processor, new SimpleSpanProcessor({ exporter })] });
  });
  afterEach(async () => {
    await provider.shutdown();
    diag.disable();
  });

  function finishSpan(parent: Context, attributes?: Record<string, string>): Record<string, unknown> {
    provider.getTracer('test').startSpan('op', { attributes }, parent).end();
    const spans = exporter.getFinishedSpans();
    return spans[spans.length - 1]!.attributes;
  }

  it('copies the listed baggage keys of the parent context onto the span, and only those', () => {
    const attributes = finishSpan(withBaggage({ 'tenant.id': 't-42', 'user.id': 'u-7', secret: 'nope' }));
    expect(attributes).toEqual({ 'tenant.id': 't-42', 'user.id': 'u-7' });
  });

  it('copies nothing when the parent context carries no baggage or no listed key', () => {
    expect(finishSpan(ROOT_CONTEXT)).toEqual({});
    expect(finishSpan(withBaggage({ other: 'x' }))).toEqual({});
  });

  it('takes new keys after construction (a preloaded provider configured later by the module)', () => {
    const late = new BaggageAttributesSpanProcessor();
    const lateExporter = new InMemorySpanExporter();
    const lateProvider = new TracerProvider({ spanProcessors: [late, new SimpleSpanProcessor({ exporter: lateExporter })] });
    const parent = withBaggage({ 'tenant.id': 't-1', region: 'eu' });

    lateProvider.getTracer('t').startSpan('before', {}, parent).end();
    late.setKeys(['region', 'region']);
    lateProvider.getTracer('t').startSpan('after', {}, parent).end();

    const [before, after] = lateExporter.getFinishedSpans();
    expect(before!.attributes).toEqual({});
    expect(after!.attributes).toEqual({ region: 'eu' });
    expect(late.getKeys()).toEqual(['region']);
    void lateProvider.shutdown();
  });

  it('keeps an attribute given explicitly to startSpan over the baggage value', () => {
    const attributes = finishSpan(withBaggage({ 'tenant.id': 'from-baggage' }), { 'tenant.id': 'explicit' });
    expect(attributes).toEqual({ 'tenant.id': 'explicit' });
  });

  it('never throws: a failing span is reported through diag', () => {
    const logger = spyDiag();
    const broken = {
      attributes: {},
      setAttribute: () => {
        throw new Error('boom');
      },
    } as unknown as Span;
    expect(() => processor.onStart(broken, withBaggage({ 'tenant.id': 't' }))).not.toThrow();
    expect(logger.warn).toHaveBeenCalledWith(
      expect.stringContaining('BaggageAttributesSpanProcessor could not copy baggage onto a span'),
      expect.any(Error),
    );
  });

  it('ignores keys that are not non-empty strings, with a diag warning', () => {
    const logger = spyDiag();
    processor.setKeys(['tenant.id', '', 42 as unknown as string]);
    expect(processor.getKeys()).toEqual(['tenant.id']);
    processor.setKeys('tenant.id' as unknown as string[]);
    expect(processor.getKeys()).toEqual([]);
    expect(logger.warn).toHaveBeenCalledTimes(2);
    expect(logger.warn.mock.calls[0]![0]).toContain('takes an array of non-empty baggage keys');
  });

  it('has nothing to flush or shut down', async () => {
    await expect(processor.forceFlush()).resolves.toBeUndefined();
    await expect(processor.shutdown()).resolves.toBeUndefined();
  });
});
