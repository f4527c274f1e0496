import { NotFoundException } from '@nestjs/common';
import {
  context,
  INVALID_SPAN_CONTEXT,
  propagation,
  SpanKind,
  SpanStatusCode,
  trace,
  type Span,
} from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { startTestingSdk, type TestingSdk } from '../testing/testing-sdk.js';
import { defer, firstValueFrom, of, Subject } from 'rxjs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ATTR_ERROR_TYPE } from '../semconv.js';
import { TRACER_NAME } from '../utils/tracer.js';
import { TraceService } from './trace.service.js';

const service = new TraceService();

describe('TraceService without an SDK', () => {
  beforeAll(() => {
    trace.disable();
    context.disable();
    propagation.disable();
  });

  it('never throws and reports no ids', async () => {
    expect(service.getActiveSpan()).toBeUndefined();
    expect(service.getTraceId()).toBeUndefined();
    expect(service.getSpanId()).toBeUndefined();
    expect(() => {
      service.setAttribute('a', 1);
      service.setAttributes({ b: 2 });
      service.addEvent('e');
      service.addLink({ context: INVALID_SPAN_CONTEXT });
      service.addLinks([{ context: INVALID_SPAN_CONTEXT }]);
      service.recordError(new Error('x'));
    }).not.toThrow();

    const span = service.startSpan('noop');
    expect(span.isRecording()).toBe(false);
    span.end();
    expect(service.getTracer()).toBeDefined();

    expect(service.withSpan('sync', () => 1)).toBe(1);
    await expect(service.withSpan('async', async () => 2)).resolves.toBe(2);
    expect(await firstValueFrom(service.withSpan('obs', () => of(3)))).toBe(3);
    expect(service.withSpan('traceId', () => service.getTraceId())).toBeUndefined();

    expect(service.withUser('u1', () => 'ran')).toBe('ran');
    expect(service.getAllBaggage()).toEqual({});
    expect(service.getUserId()).toBeUndefined();
    expect(service.injectContext()).toEqual({});
    expect(trace.getSpanContext(service.extractContext({ traceparent: 'garbage' }))).toBeUndefined();
  });
});

describe('TraceService with an SDK', () => {
  const exporter = new InMemorySpanExporter();
  let sdk: TestingSdk;

  beforeAll(() => {
    sdk = startTestingSdk({ exporter });
  });
  afterEach(() => exporter.reset());
  afterAll(() => sdk.shutdown());

  const only = (name: string): ReadableSpan => {
    const spans = exporter.getFinishedSpans().filter((span) => span.name === name);
    expect(spans).toHaveLength(1);
    return spans[0]!;
  };

  it('getTracer() starts spans in the otel-nest scope', () => {
    service.getTracer().startSpan('scoped').end();
    expect(only('scoped').instrumentationScope.name).toBe(TRACER_NAME);
  });

  it('reports the active span and its ids, and nothing outside a span', () => {
    expect(service.getActiveSpan()).toBeUndefined();
    expect(service.getTraceId()).toBeUndefined();
    const seen = service.withSpan('ids', (span) => ({
      active: service.getActiveSpan(),
      span,
      traceId: service.getTraceId(),
      spanId: service.getSpanId(),
    }));
    const exported = only('ids');
    expect(seen.active).toBe(seen.span);
    expect(seen.traceId).toBe(exported.spanContext().traceId);
    expect(seen.spanId).toBe(exported.spanContext().spanId);
    expect(seen.traceId).toMatch(/^[0-9a-f]{32}$/);
  });

  it('returns undefined ids for an invalid active span context', () => {
    const invalid = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);
    context.with(trace.setSpan(context.active(), invalid), () => {
      expect(service.getActiveSpan()).toBe(invalid);
      expect(service.getTraceId()).toBeUndefined();
      expect(service.getSpanId()).toBeUndefined();
    });
  });

  it('sets attributes, events and links on the active span', () => {
    const other = service.startSpan('other');
    other.end();
    const another = service.startSpan('another');
    another.end();
    service.withSpan('decorated', () => {
      service.setAttribute('order.id', 'o-1');
      service.setAttributes({ 'order.total': 12.5, 'order.express': true });
      service.addEvent('payment.authorized', { 'payment.provider': 'acme' });
      service.addLink({ context: other.spanContext(), attributes: { why: 'retry-of' } });
      service.addLinks([{ context: another.spanContext() }]);
    });
    const span = only('decorated');
    expect(span.attributes).toMatchObject({ 'order.id': 'o-1', 'order.total': 12.5, 'order.express': true });
    expect(span.events.map((event) => [event.name, event.attributes])).toEqual([
      ['payment.authorized', { 'payment.provider': 'acme' }],
    ]);
    expect(span.links.map((link) => link.context.spanId)).toEqual([
      other.spanContext().spanId,
      another.spanContext().spanId,
    ]);
    expect(span.links[0]!.attributes).toEqual({ why: 'retry-of' });
  });

  it('recordError() fails the active span once per error object', () => {
    const error = new TypeError('bad input');
    service.withSpan('failing', () => {
      service.recordError(error);
      service.recordError(error);
    });
    const span = only('failing');
    expect(span.status).toEqual({ code: SpanStatusCode.ERROR, message: 'bad input' });
    expect(span.attributes[ATTR_ERROR_TYPE]).toBe('TypeError');
    expect(span.events.filter((event) => event.name === 'exception')).toHaveLength(1);
  });

  it('startSpan() creates a child of the active span without activating it', () => {
    let started!: Span;
    service.withSpan('outer', (outer) => {
      started = service.startSpan('manual', { kind: SpanKind.CLIENT, attributes: { a: 1 } });
      expect(service.getActiveSpan()).toBe(outer);
      expect(service.getSpanId()).toBe(outer.spanContext().spanId);
    });
    expect(exporter.getFinishedSpans().filter((span) => span.name === 'manual')).toHaveLength(0);
    started.end();
    const manual = only('manual');
    expect(manual.kind).toBe(SpanKind.CLIENT);
    expect(manual.attributes.a).toBe(1);
    expect(manual.parentSpanContext?.spanId).toBe(only('outer').spanContext().spanId);
  });

  it('withSpan() accepts options before or after the function and nests spans', () => {
    service.withSpan('parent', { kind: SpanKind.PRODUCER, attributes: { order: 1 } }, () => {
      service.withSpan('child', () => undefined, { kind: SpanKind.CONSUMER });
    });
    const parent = only('parent');
    const child = only('child');
    expect(parent.kind).toBe(SpanKind.PRODUCER);
    expect(parent.attributes.order).toBe(1);
    expect(child.kind).toBe(SpanKind.CONSUMER);
    expect(child.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    expect(child.spanContext().traceId).toBe(parent.spanContext().traceId);
  });

  it('withSpan() with root: true starts a new trace', () => {
    service.withSpan('first', () => service.withSpan('fresh', () => undefined, { root: true }));
    expect(only('fresh').parentSpanContext).toBeUndefined();
    expect(only('fresh').spanContext().traceId).not.toBe(only('first').spanContext().traceId);
  });

  it('withSpan() ends on Promise settle and rethrows the same error', async () => {
    const error = new RangeError('late');
    const pending = service.withSpan('later', async () => {
      await new Promise((resolve) => setTimeout(resolve, 1));
      throw error;
    });
    expect(exporter.getFinishedSpans()).toHaveLength(0);
    await expect(pending).rejects.toBe(error);
    expect(only('later').status.code).toBe(SpanStatusCode.ERROR);
    expect(only('later').attributes[ATTR_ERROR_TYPE]).toBe('RangeError');
  });

  it('withSpan() treats a 4xx HttpException as expected, and honours isError', () => {
    const notFound = new NotFoundException();
    expect(() => service.withSpan('404', () => { throw notFound; })).toThrow(notFound);
    expect(only('404').status.code).toBe(SpanStatusCode.UNSET);
    const error = new Error('fine');
    expect(() => service.withSpan('custom', { isError: () => false }, () => { throw error; })).toThrow(error);
    expect(only('custom').status.code).toBe(SpanStatusCode.UNSET);
  });

  it('withSpan() ends on Observable completion and runs the subscription in the span', () => {
    const source = new Subject<number>();
    const values: number[] = [];
    service
      .withSpan('observed', () =>
        defer(() => {
          service.startSpan('on-subscribe').end();
          return source;
        }),
      )
      .subscribe((value) => values.push(value));
    source.next(5);
    expect(exporter.getFinishedSpans().filter((span) => span.name === 'observed')).toHaveLength(0);
    source.complete();
    expect(values).toEqual([5]);
    expect(only('on-subscribe').parentSpanContext?.spanId).toBe(only('observed').spanContext().spanId);
  });

  it('reads, adds and merges baggage', () => {
    expect(service.getAllBaggage()).toEqual({});
    const seen = service.withBaggage({ region: 'eu', plan: 'free' }, () =>
      service.withBaggage({ plan: 'pro' }, () => ({
        region: service.getBaggage('region'),
        all: service.getAllBaggage(),
      })),
    );
    expect(seen).toEqual({ region: 'eu', all: { region: 'eu', plan: 'pro' } });
    expect(service.getBaggage('region')).toBeUndefined();
  });

  it('withUser() and withTenant() set user.id and tenant.id', async () => {
    const seen = await service.withTenant('acme', () =>
      service.withUser('u-42', async () => {
        await new Promise((resolve) => setTimeout(resolve, 1));
        return { user: service.getUserId(), tenant: service.getTenantId(), raw: service.getBaggage('user.id') };
      }),
    );
    expect(seen).toEqual({ user: 'u-42', tenant: 'acme', raw: 'u-42' });
    expect(service.getUserId()).toBeUndefined();
    expect(service.getTenantId()).toBeUndefined();
  });

  it('withBaggage() binds a returned Observable so its subscription sees the baggage', async () => {
    const result = service.withTenant('acme', () => defer(() => of(service.getTenantId())));
    expect(await firstValueFrom(result)).toBe('acme');
  });

  it('injectContext() writes traceparent and baggage for the active context', () => {
    const carrier = service.withSpan('injecting', () => service.withUser('u-1', () => service.injectContext()));
    const { traceId, spanId } = only('injecting').spanContext();
    expect(carrier.traceparent).toBe(`00-${traceId}-${spanId}-01`);
    expect(carrier.baggage).toBe('user.id=u-1');

    const target: Record<string, string> = { existing: 'kept' };
    expect(service.withSpan('into', () => service.injectContext(target))).toBe(target);
    expect(target.existing).toBe('kept');
    expect(target.traceparent).toContain(only('into').spanContext().traceId);
  });

  it('extractContext() reads a remote parent and baggage, and ignores malformed headers', () => {
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    const parentId = 'b7ad6b7169203331';
    const ctx = service.extractContext({ traceparent: `00-${traceId}-${parentId}-01`, baggage: 'tenant.id=t-9' });
    expect(trace.getSpanContext(ctx)).toMatchObject({ traceId, spanId: parentId, isRemote: true });
    context.with(ctx, () => {
      expect(service.getTenantId()).toBe('t-9');
      service.withSpan('continued', () => undefined);
    });
    const continued = only('continued');
    expect(continued.spanContext().traceId).toBe(traceId);
    expect(continued.parentSpanContext?.spanId).toBe(parentId);

    const bad = service.withSpan('current', () => service.extractContext({ traceparent: '00-zz-yy-01' }));
    expect(trace.getSpanContext(bad)).toBeUndefined();
  });
});
