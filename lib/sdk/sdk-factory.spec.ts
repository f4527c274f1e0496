import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  context,
  defaultTextMapGetter,
  defaultTextMapSetter,
  diag,
  DiagLogLevel,
  propagation,
  ROOT_CONTEXT,
  trace,
  TraceFlags,
  type Context,
  type DiagLogger,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import {
  TracerProvider,
  ConsoleSpanExporter,
  InMemorySpanExporter,
  type ReadableSpan,
  type Span,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace';

import { afterEach, describe, expect, it, vi } from 'vitest';
import type { OtelModuleOptions } from '../interfaces/otel-module-options.interface.js';
import { resolveSdkConfig } from './config/index.js';
import {
  OTEL_NEST_SDK_KEY,
  createExporter,
  exportDeadlineMillis,
  createTracerProvider,
  detectExistingProvider,
  hasContextManager,
  registerGlobals,
  unregisterGlobals,
} from './sdk-factory.js';

const REMOTE_TRACE_ID = '0af7651916cd43dd8448eb211c80319c';
const REMOTE_SPAN_ID = 'b7ad6b7169203331';

const providers: TracerProvider[] = [];

function build(options: OtelModuleOptions, env: NodeJS.ProcessEnv = {}) {
  const bundle = createTracerProvider(resolveSdkConfig(options, env));
  providers.push(bundle.provider);
  return bundle;
}

function remoteParent(flags: TraceFlags): Context {
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: REMOTE_TRACE_ID,
    spanId: REMOTE_SPAN_ID,
    traceFlags: flags,
    isRemote: true,
  });
}

afterEach(async () => {
  await Promise.all(providers.splice(0).map((p) => p.shutdown()));
  trace.disable();
  propagation.disable();
  context.disable();
  delete (globalThis as Record<symbol, unknown>)[OTEL_NEST_SDK_KEY];
  diag.disable();
});

describe('createTracerProvider', () => {
  it('exports spans to a given SpanExporter (batch: false) with service and default resource attributes', () => {
    const exporter = new InMemorySpanExporter();
    const { provider } = build(
      { serviceName: 'orders', serviceVersion: '1.4.2', resourceAttributes: { team: 'payments' }, exporter, batch: false },
      { OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=test' },
    );
    provider.getTracer('t').startSpan('op').end();

    const [span] = exporter.getFinishedSpans();
    expect(span?.name).toBe('op');
    expect(span!.resource.attributes).toMatchObject({
      'service.name': 'orders',
      'service.version': '1.4.2',
      team: 'payments',
      'deployment.environment.name': 'test',
      'telemetry.sdk.language': 'nodejs',
      'telemetry.sdk.name': 'opentelemetry',
    });
  });

  it('batches by default: nothing is exported before a flush', async () => {
    const exporter = new InMemorySpanExporter();
    const { provider } = build({ exporter, batch: { scheduledDelayMillis: 60_000 } });
    provider.getTracer('t').startSpan('buffered').end();
    expect(exporter.getFinishedSpans()).toHaveLength(0);
    await provider.forceFlush();
    expect(exporter.getFinishedSpans().map((s) => s.name)).toEqual(['buffered']);
  });

  it('sampler ratio 0 drops root spans', () => {
    const exporter = new InMemorySpanExporter();
    const { provider } = build({ exporter, batch: false, sampler: { ratio: 0, parentBased: false } });
    const span = provider.getTracer('t').startSpan('dropped');
    expect(span.isRecording()).toBe(false);
    span.end();
    expect(exporter.getFinishedSpans()).toHaveLength(0);
  });

  it('parent-based ratio 0 drops a root span but honours a sampled remote parent', () => {
    const exporter = new InMemorySpanExporter();
    const { provider } = build({ exporter, batch: false, sampler: { ratio: 0 } });
    const tracer = provider.getTracer('t');
    tracer.startSpan('root').end();
    tracer.startSpan('child-of-sampled', {}, remoteParent(TraceFlags.SAMPLED)).end();
    tracer.startSpan('child-of-unsampled', {}, remoteParent(TraceFlags.NONE)).end();

    const spans = exporter.getFinishedSpans();
    expect(spans.map((s) => s.name)).toEqual(['child-of-sampled']);
    expect(spans[0]!.spanContext().traceId).toBe(REMOTE_TRACE_ID);
    expect(spans[0]!.parentSpanContext?.spanId).toBe(REMOTE_SPAN_ID);
  });

  it('always_off from the environment records nothing', () => {
    const exporter = new InMemorySpanExporter();
    const { provider } = build({ exporter, batch: false }, { OTEL_TRACES_SAMPLER: 'always_off' });
    provider.getTracer('t').startSpan('x', {}, remoteParent(TraceFlags.SAMPLED)).end();
    expect(exporter.getFinishedSpans()).toHaveLength(0);
  });

  it('applies span limits', () => {
    const exporter = new InMemorySpanExporter();
    const { provider } = build({ exporter, batch: false, spanLimits: { attributeCountLimit: 1, attributeValueLengthLimit: 3 } });
    provider.getTracer('t').startSpan('x', { attributes: { a: 'abcdef', b: 'kept?' } }).end();
    expect(exporter.getFinishedSpans()[0]!.attributes).toEqual({ a: 'abc' });
  });

  it('runs the random-flag and baggage processors first, then the user processors, then the exporter', () => {
    const exporter = new InMemorySpanExporter();
    const seen: string[] = [];
    const userProcessor: SpanProcessor = {
      onStart: (span: Span) => seen.push(`start tenant=${String(span.attributes['tenant.id'])}`),
      onEnd: (span: ReadableSpan) => {
        seen.push(`end exported=${exporter.getFinishedSpans().includes(span)}`);
        // What a redaction processor changes here is what the exporter's processor then exports.
        (span.attributes as Record<string, unknown>)['tenant.id'] = 'redacted';
      },
      forceFlush: () => Promise.resolve(),
      shutdown: () => Promise.resolve(),
    };
    const { provider, baggageProcessor } = build({
      exporter,
      batch: false,
      spanProcessors: [userProcessor],
      baggageToAttributes: ['tenant.id'],
    });
    const parent = propagation.setBaggage(ROOT_CONTEXT, propagation.createBaggage({ 'tenant.id': { value: 't-9' } }));
    provider.getTracer('t').startSpan('x', {}, parent).end();

    expect(baggageProcessor.getKeys()).toEqual(['tenant.id']);
    expect(seen).toEqual(['start tenant=t-9', 'end exported=false']);
    // Baggage before the exporter's processor cannot be observed through spans (the exporter reads
    // them at onEnd), so the order is checked on the SDK's processor list (sdk-trace internals).
    const internals = provider as unknown as { _activeSpanProcessor: { _spanProcessors: SpanProcessor[] } };
    const processors = internals._activeSpanProcessor._spanProcessors;
    expect(processors.map((p) => p.constructor.name)).toEqual([
      'RandomTraceFlagSpanProcessor',
      'BaggageAttributesSpanProcessor',
      'Object',
      // Redaction after the user's processors, right before the export.
      'RedactionSpanProcessor',
      'SimpleSpanProcessor',
    ]);
    expect(processors[1]).toBe(baggageProcessor);
    expect(processors[2]).toBe(userProcessor);
    expect(exporter.getFinishedSpans()[0]!.attributes).toEqual({ 'tenant.id': 'redacted' });
  });

  it("exporter 'none' records spans for the other processors but exports nothing", () => {
    expect(createExporter({ kind: 'none' })).toBeUndefined();
    const ended: string[] = [];
    const { provider } = build({
      exporter: 'none',
      spanProcessors: [
        { onStart: () => undefined, onEnd: (s) => ended.push(s.name), forceFlush: async () => {}, shutdown: async () => {} },
      ],
    });
    const span = provider.getTracer('t').startSpan('kept-local');
    expect(span.isRecording()).toBe(true);
    span.end();
    expect(ended).toEqual(['kept-local']);
  });

  it('gives up on an export after the OTLP timeout plus a grace period, before the batch processor times out', () => {
    const otlp = (timeoutMillis: number) => ({ kind: 'otlp' as const, url: 'http://127.0.0.1:1/v1/traces', headers: {}, timeoutMillis });
    const batch = (exportTimeoutMillis: number) => ({ maxQueueSize: 2048, maxExportBatchSize: 512, scheduledDelayMillis: 5000, exportTimeoutMillis });
    expect(exportDeadlineMillis({ exporter: otlp(10_000), batch: batch(30_000) })).toBe(11_000);
    expect(exportDeadlineMillis({ exporter: otlp(800), batch: batch(3000) })).toBe(1800);
    expect(exportDeadlineMillis({ exporter: otlp(10_000), batch: batch(5000) })).toBe(4900);
    expect(exportDeadlineMillis({ exporter: otlp(10_000), batch: false })).toBe(11_000);
    expect(exportDeadlineMillis({ exporter: { kind: 'instance', exporter: new InMemorySpanExporter() }, batch: false })).toBeUndefined();
  });

  it("builds a ConsoleSpanExporter for 'console' and an OTLPTraceExporter for 'otlp'", () => {
    expect(createExporter({ kind: 'console' })).toBeInstanceOf(ConsoleSpanExporter);
    const otlp = createExporter({ kind: 'otlp', url: 'http://127.0.0.1:1/v1/traces', headers: {}, timeoutMillis: 10 });
    expect(otlp).toBeInstanceOf(OTLPTraceExporter);
    void otlp!.shutdown();
  });
});

describe('createTracerProvider: OTLP/HTTP to a real HTTP server', () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    server = undefined;
  });

  it('POSTs JSON to the resolved url with the resolved headers', async () => {
    const received: Array<{ url?: string; headers: IncomingHttpHeaders; body: string }> = [];
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        received.push({ url: req.url, headers: req.headers, body });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;

    const { provider } = build(
      { serviceName: 'otlp-check', batch: false },
      {
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
        OTEL_EXPORTER_OTLP_HEADERS: 'x-api-key=k%201',
        OTEL_EXPORTER_OTLP_TIMEOUT: '2000',
      },
    );
    provider.getTracer('t').startSpan('sent').end();
    await provider.forceFlush();

    expect(received).toHaveLength(1);
    const [request] = received;
    expect(request!.url).toBe('/v1/traces');
    expect(request!.headers['x-api-key']).toBe('k 1');
    expect(request!.headers['content-type']).toContain('application/json');
    const payload = JSON.parse(request!.body) as {
      resourceSpans: Array<{
        resource: { attributes: Array<{ key: string; value: { stringValue?: string } }> };
        scopeSpans: Array<{ spans: Array<{ name: string }> }>;
      }>;
    };
    const resourceSpans = payload.resourceSpans[0]!;
    expect(resourceSpans.resource.attributes).toContainEqual({ key: 'service.name', value: { stringValue: 'otlp-check' } });
    expect(resourceSpans.scopeSpans[0]!.spans.map((s) => s.name)).toEqual(['sent']);
  });
});

describe('createTracerProvider: propagators', () => {
  function injected(options: OtelModuleOptions, env: NodeJS.ProcessEnv = {}) {
    const { provider, propagator } = build({ exporter: 'none', ...options }, env);
    const span = provider.getTracer('t').startSpan('x');
    const carrier: Record<string, string> = {};
    const ctx = propagation.setBaggage(
      trace.setSpan(ROOT_CONTEXT, span),
      propagation.createBaggage({ 'tenant.id': { value: 't1' } }),
    );
    propagator.inject(ctx, carrier, defaultTextMapSetter);
    const { traceId, spanId } = span.spanContext();
    span.end();
    return { carrier, traceId, spanId, propagator };
  }

  it('defaults to W3C trace context (Level 2: a new root is sampled and random) and baggage', () => {
    const { carrier, traceId, spanId } = injected({});
    expect(carrier).toEqual({ traceparent: `00-${traceId}-${spanId}-03`, baggage: 'tenant.id=t1' });
  });

  it("'b3' injects the single b3 header", () => {
    const { carrier, traceId, spanId } = injected({ propagators: ['b3'] });
    expect(carrier).toEqual({ b3: `${traceId}-${spanId}-1` });
  });

  it("'b3multi' injects the X-B3-* headers", () => {
    const { carrier, traceId, spanId } = injected({ propagators: ['b3multi'] });
    expect(carrier).toMatchObject({ 'x-b3-traceid': traceId, 'x-b3-spanid': spanId, 'x-b3-sampled': '1' });
    expect(carrier).not.toHaveProperty('b3');
  });

  it("'b3' from OTEL_PROPAGATORS injects the single b3 header", () => {
    const { carrier, traceId, spanId } = injected({}, { OTEL_PROPAGATORS: 'b3' });
    expect(carrier.b3).toBe(`${traceId}-${spanId}-1`);
  });

  it("'none' injects nothing", () => {
    expect(injected({ propagators: ['none'] }).carrier).toEqual({});
  });

  it('extracts a b3 context', () => {
    const { propagator } = injected({ propagators: ['tracecontext', 'b3'] });
    const ctx = propagator.extract(ROOT_CONTEXT, { b3: `${REMOTE_TRACE_ID}-${REMOTE_SPAN_ID}-1` }, defaultTextMapGetter);
    expect(trace.getSpanContext(ctx)).toMatchObject({ traceId: REMOTE_TRACE_ID, spanId: REMOTE_SPAN_ID, isRemote: true });
  });
});

describe('registerGlobals / unregisterGlobals / detectExistingProvider', () => {
  function spyDiag(): { error: ReturnType<typeof vi.fn> } {
    const logger = { error: vi.fn(), warn: vi.fn(), info: vi.fn(), debug: vi.fn(), verbose: vi.fn() };
    diag.setLogger(logger as DiagLogger, DiagLogLevel.WARN);
    return logger;
  }

  it('registers provider, propagator and an AsyncLocalStorage context manager, and undoes exactly that', async () => {
    expect(detectExistingProvider()).toBe('none');
    expect(hasContextManager()).toBe(false);
    const exporter = new InMemorySpanExporter();
    const { provider, propagator } = build({ exporter, batch: false, propagators: ['b3'] });

    const registered = registerGlobals(provider, propagator);
    expect(registered).toEqual({ tracerProvider: true, propagator: true, contextManager: true });
    expect(hasContextManager()).toBe(true);

    // Context survives an await, and the global propagator is ours.
    const tracer = trace.getTracer('t');
    await tracer.startActiveSpan('parent', async (parent) => {
      await new Promise((resolve) => setTimeout(resolve, 1));
      tracer.startSpan('child').end();
      const carrier: Record<string, string> = {};
      propagation.inject(context.active(), carrier);
      expect(Object.keys(carrier)).toEqual(['b3']);
      parent.end();
    });
    const [child, parent] = exporter.getFinishedSpans();
    expect(child!.parentSpanContext?.spanId).toBe(parent!.spanContext().spanId);

    // Ours, but not marked as otel-nest's: the mark is the state under the global symbol.
    expect(detectExistingProvider()).toBe('foreign');
    (globalThis as Record<symbol, unknown>)[OTEL_NEST_SDK_KEY] = { provider: new TracerProvider() };
    expect(detectExistingProvider()).toBe('foreign');
    (globalThis as Record<symbol, unknown>)[OTEL_NEST_SDK_KEY] = { provider };
    expect(detectExistingProvider()).toBe('otel-nest');

    unregisterGlobals(registered);
    expect(detectExistingProvider()).toBe('none');
    expect(hasContextManager()).toBe(false);
    expect(propagation.fields()).toEqual([]);
  });

  it("keeps an existing context manager and propagator without diag's duplicate-registration error", () => {
    const logger = spyDiag();
    const existing = new AsyncLocalStorageContextManager().enable();
    context.setGlobalContextManager(existing);
    const { provider, propagator } = build({ exporter: 'none' });
    const foreignPropagator = build({ exporter: 'none', propagators: ['b3'] }).propagator;
    propagation.setGlobalPropagator(foreignPropagator);

    const registered = registerGlobals(provider, propagator);
    expect(registered).toEqual({ tracerProvider: true, propagator: false, contextManager: false });
    expect(logger.error).not.toHaveBeenCalled();

    unregisterGlobals(registered);
    // The application's context manager and propagator are still there.
    expect(hasContextManager()).toBe(true);
    expect(propagation.fields()).toEqual(['b3']);
  });

  it('detects a provider registered by someone else as foreign', () => {
    trace.setGlobalTracerProvider(new TracerProvider());
    expect(detectExistingProvider()).toBe('foreign');
  });
});
