import { EventEmitter } from 'node:events';
import { context, propagation, ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { ExportResultCode, W3CTraceContextPropagator, type ExportResult } from '@opentelemetry/core';
import {
  AlwaysOnSampler,
  TracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
  type SpanExporter,
} from '@opentelemetry/sdk-trace';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { OtelModuleOptions } from '../interfaces/otel-module-options.interface.js';
import { describeStartup, resolveSdkConfig } from './config/index.js';
import { OTEL_NEST_SDK_KEY, detectExistingProvider, hasContextManager } from './sdk-factory.js';
import { installExitHandlers, startSdkFromEnv, type ExitProcess } from './preload.js';
import { FLUSH_TIMEOUT_MS, acquireSdk, releaseSdk, type SdkHandle, type SdkLogger } from './sdk-handle.js';

const PRELOAD_KEY = Symbol.for('otel-nest.preload');

/**
 * Keeps what it exported after shutdown (InMemorySpanExporter forgets), and counts shutdowns.
 * Exports asynchronously, like a network exporter, so a flush that is not awaited shows.
 */
class RecordingExporter implements SpanExporter {
  readonly spans: ReadableSpan[] = [];
  shutdowns = 0;
  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    setTimeout(() => {
      this.spans.push(...spans);
      done({ code: ExportResultCode.SUCCESS });
    }, 5);
  }
  shutdown(): Promise<void> {
    this.shutdowns++;
    return Promise.resolve();
  }
  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
}

const handles: SdkHandle[] = [];

function acquire(options: OtelModuleOptions, env: NodeJS.ProcessEnv = {}): SdkHandle {
  const handle = acquireSdk(resolveSdkConfig(options, env));
  handles.push(handle);
  return handle;
}

function sdkState(): { provider: unknown } | undefined {
  return (globalThis as Record<symbol, { provider: unknown } | undefined>)[OTEL_NEST_SDK_KEY];
}

function endSpan(name: string, parent = ROOT_CONTEXT): ReadableSpan {
  const span = trace.getTracer('spec').startSpan(name, {}, parent);
  span.end();
  return span as unknown as ReadableSpan;
}

function fakeProcess(): ExitProcess & EventEmitter & { kill: ReturnType<typeof vi.fn> } {
  return Object.assign(new EventEmitter(), { pid: 4242, kill: vi.fn() });
}

function fakeLogger() {
  return {
    warn: vi.fn<(message: string) => void>(),
    error: vi.fn<(message: string, error?: unknown) => void>(),
  } satisfies SdkLogger;
}

afterEach(async () => {
  await Promise.all(handles.splice(0).map((h) => releaseSdk(h)));
  const preload = (globalThis as Record<symbol, SdkHandle | undefined>)[PRELOAD_KEY];
  await preload?.shutdown();
  delete (globalThis as Record<symbol, unknown>)[PRELOAD_KEY];
  delete (globalThis as Record<symbol, unknown>)[OTEL_NEST_SDK_KEY];
  trace.disable();
  propagation.disable();
  context.disable();
});

describe('acquireSdk / releaseSdk: reference counting', () => {
  it('the first holder registers, later ones share; only the last release unregisters', async () => {
    const exporter = new RecordingExporter();
    const options = { serviceName: 'shared', exporter, batch: false } as const;
    const first = acquire(options);
    const second = acquire(options);

    expect(first).toMatchObject({ owned: true, reused: false, disabled: false, warnings: [] });
    expect(second).toMatchObject({ owned: true, reused: true, disabled: false, warnings: [] });
    expect(second.provider).toBe(first.provider);
    expect(detectExistingProvider()).toBe('otel-nest');

    await releaseSdk(first);
    expect(detectExistingProvider()).toBe('otel-nest');
    expect(hasContextManager()).toBe(true);
    expect(propagation.fields()).toContain('traceparent');
    endSpan('after-first-release');
    await second.forceFlush();
    expect(exporter.spans.map((s) => s.name)).toEqual(['after-first-release']);
    expect(exporter.shutdowns).toBe(0);

    await releaseSdk(second);
    expect(detectExistingProvider()).toBe('none');
    expect(sdkState()).toBeUndefined();
    expect(hasContextManager()).toBe(false);
    expect(propagation.fields()).toEqual([]);
    expect(exporter.shutdowns).toBe(1);
    // The API's no-op tracer now: nothing reaches the old exporter.
    endSpan('after-last-release');
    expect(exporter.spans).toHaveLength(1);
  });

  it('releasing one handle twice counts once', async () => {
    const first = acquire({ exporter: 'none' });
    acquire({ exporter: 'none' });
    await first.shutdown();
    await first.shutdown();
    await releaseSdk(first);
    expect(detectExistingProvider()).toBe('otel-nest');
  });

  it('the last holder releasing twice shuts the provider down once', async () => {
    const exporter = new RecordingExporter();
    const only = acquire({ exporter });
    await releaseSdk(only);
    await releaseSdk(only);
    await only.forceFlush();
    expect(exporter.shutdowns).toBe(1);
  });

  it('the last release flushes buffered spans before shutting down', async () => {
    const exporter = new RecordingExporter();
    const handle = acquire({ exporter, batch: { scheduledDelayMillis: 60_000 } });
    endSpan('buffered');
    expect(exporter.spans).toHaveLength(0);
    await releaseSdk(handle);
    expect(exporter.spans.map((s) => s.name)).toEqual(['buffered']);
  });

  it('a release that is not the last still flushes that application\'s spans', async () => {
    const exporter = new RecordingExporter();
    const options = { exporter, batch: { scheduledDelayMillis: 60_000 } };
    const first = acquire(options);
    acquire(options);
    endSpan('of-first-app');
    await releaseSdk(first);
    expect(exporter.spans.map((s) => s.name)).toEqual(['of-first-app']);
    expect(exporter.shutdowns).toBe(0);
    expect(detectExistingProvider()).toBe('otel-nest');
  });

  it('forceFlush exports buffered spans and keeps the SDK running', async () => {
    const exporter = new RecordingExporter();
    const handle = acquire({ exporter, batch: { scheduledDelayMillis: 60_000 } });
    endSpan('flushed');
    await handle.forceFlush();
    expect(exporter.spans.map((s) => s.name)).toEqual(['flushed']);
    expect(detectExistingProvider()).toBe('otel-nest');
  });

  it('after the last release a later application registers a fresh SDK', async () => {
    const first = acquire({ serviceName: 'one', exporter: 'none' });
    await releaseSdk(first);
    const exporter = new InMemorySpanExporter();
    const second = acquire({ serviceName: 'two', exporter, batch: false });
    expect(second).toMatchObject({ owned: true, reused: false, warnings: [] });
    expect(second.provider).not.toBe(first.provider);
    endSpan('fresh');
    expect(exporter.getFinishedSpans()[0]!.resource.attributes['service.name']).toBe('two');
  });

  it('a stale state whose globals someone disabled is replaced, and its release leaves the new SDK alone', async () => {
    const stale = acquire({ exporter: 'none' });
    trace.disable();
    const fresh = acquire({ exporter: 'none' });
    expect(fresh.reused).toBe(false);
    await releaseSdk(stale);
    expect(detectExistingProvider()).toBe('otel-nest');
    expect(sdkState()?.provider).toBe(fresh.provider);
  });

  it('describes the running SDK', () => {
    const handle = acquire(
      { serviceName: 'orders', sampler: { ratio: 0.25 }, propagators: ['tracecontext', 'b3'] },
      { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' },
    );
    expect(handle).toMatchObject({ serviceName: 'orders', running: handle.config });
    expect(describeStartup(handle, ['fetch'], [])).toBe(
      'otel-nest: Tracing service "orders" (SDK started by OtelModule): exporter otlp http://collector:4318/v1/traces, ' +
        'sampler ParentBased(TraceIdRatio{0.25}), propagators tracecontext,b3; traced: fetch.',
    );
  });
});

describe('acquireSdk: a second application with other options', () => {
  it('warns when the service name or exporter differ, and describes the running SDK', () => {
    const first = acquire({ serviceName: 'gateway', exporter: new InMemorySpanExporter() });
    const second = acquire({ serviceName: 'orders', exporter: 'console' });
    expect(second.reused).toBe(true);
    expect(second.serviceName).toBe('gateway');
    expect(second.running).toBe(first.config);
    expect(second.warnings).toEqual([
      'otel-nest: another OtelModule.forRoot() in this process already started the OpenTelemetry SDK ' +
        '(service "gateway"); "serviceName", "exporter" given here differ and cannot change it, so spans of ' +
        'this application use the running SDK. Give every application in one process the same SDK options, ' +
        'or run them in separate processes.',
    ]);
  });

  it('warns about a differing service name and exporter even when this application set neither', () => {
    acquire({ serviceName: 'gateway', exporter: 'none' });
    const second = acquire({});
    expect(second.warnings).toHaveLength(1);
    expect(second.warnings[0]).toContain('(service "gateway"); "serviceName", "exporter" given here differ');
  });

  it('warns about other explicit SDK options only when they differ', () => {
    acquire({ serviceName: 'svc', exporter: 'none', sampler: 'always_on', batch: false });
    expect(acquire({ serviceName: 'svc', exporter: 'none', sampler: 'always_on', batch: false }).warnings).toEqual([]);
    const differing = acquire({ serviceName: 'svc', exporter: 'none', sampler: 'always_off', spanLimits: { eventCountLimit: 1 } });
    expect(differing.warnings).toHaveLength(1);
    expect(differing.warnings[0]).toContain('"sampler", "spanLimits" given here differ');
  });

  it('compares a given Sampler by identity, not by its description', () => {
    class TenantSampler extends AlwaysOnSampler {
      override toString(): string {
        return 'TenantSampler';
      }
    }
    const sampler = new TenantSampler();
    acquire({ serviceName: 'svc', exporter: 'none', sampler });
    expect(acquire({ serviceName: 'svc', exporter: 'none', sampler }).warnings).toEqual([]);
    // Described alike, but another instance: it may sample differently.
    const other = acquire({ serviceName: 'svc', exporter: 'none', sampler: new TenantSampler() });
    expect(other.warnings).toHaveLength(1);
    expect(other.warnings[0]).toContain('"sampler" given here differs');
  });

  it('compares built-in samplers by name and ratio, whichever way they were given', () => {
    acquire({ serviceName: 'svc', exporter: 'none', sampler: { ratio: 0.25 } });
    const same = acquire(
      { serviceName: 'svc', exporter: 'none', sampler: 'parentbased_traceidratio' },
      { OTEL_TRACES_SAMPLER_ARG: '0.25' },
    );
    expect(same.warnings).toEqual([]);
    expect(acquire({ serviceName: 'svc', exporter: 'none', sampler: { ratio: 0.5 } }).warnings[0]).toContain('"sampler"');
    expect(
      acquire({ serviceName: 'svc', exporter: 'none', sampler: { ratio: 0.25, parentBased: false } }).warnings[0],
    ).toContain('"sampler"');
  });

  it('copies the baggage keys of every current holder', async () => {
    const exporter = new InMemorySpanExporter();
    acquire({ exporter, batch: false, baggageToAttributes: ['tenant.id'] });
    const second = acquire({ exporter, batch: false, baggageToAttributes: ['user.id'] });
    const parent = propagation.setBaggage(
      ROOT_CONTEXT,
      propagation.createBaggage({ 'tenant.id': { value: 't' }, 'user.id': { value: 'u' } }),
    );
    expect(endSpan('both', parent).attributes).toEqual({ 'tenant.id': 't', 'user.id': 'u' });
    await releaseSdk(second);
    expect(endSpan('one', parent).attributes).toEqual({ 'tenant.id': 't' });
  });

  it('warns when a global propagator was already registered by someone else', () => {
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    const handle = acquire({ exporter: 'none', propagators: ['b3'] });
    expect(handle.warnings).toEqual([
      'otel-nest: a global propagator was already registered by someone else and is kept; the "propagators" ' +
        'of otel-nest are not used. Register only one propagator per process.',
    ]);
    expect(propagation.fields()).toEqual(['traceparent', 'tracestate']);
  });
});

describe('acquireSdk: a foreign provider (the application starts its own SDK)', () => {
  it('creates and registers nothing, warns about ignored options and baggage, and never shuts it down', async () => {
    const foreignExporter = new InMemorySpanExporter();
    const foreign = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: foreignExporter })] });
    trace.setGlobalTracerProvider(foreign);
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());

    const handle = acquire({
      serviceName: 'ignored',
      exporter: new InMemorySpanExporter(),
      baggageToAttributes: ['tenant.id', 'user.id'],
    });
    expect(handle).toMatchObject({ owned: false, reused: false, disabled: false, provider: undefined });
    expect(sdkState()).toBeUndefined();
    expect(handle.warnings).toEqual([
      'otel-nest: a tracer provider not started by otel-nest is already registered (your own NodeSDK?); otel-nest ' +
        'uses it as is and ignores "serviceName", "exporter". Configure them on your SDK, or remove it and let ' +
        'OtelModule start one.',
      'otel-nest: "baggageToAttributes" needs a span processor, and the tracer provider was started by your own SDK. ' +
        "Add new BaggageAttributesSpanProcessor(['tenant.id', 'user.id']) (from 'otel-nest') to its spanProcessors.",
      "otel-nest: the application's own tracer provider is used, so otel-nest's redaction (on by default) does not " +
        'apply to it. Add `new RedactionSpanProcessor()` to its span processors, before the one that exports.',
    ]);

    await releaseSdk(handle);
    expect(detectExistingProvider()).toBe('foreign');
    endSpan('still-theirs');
    expect(foreignExporter.getFinishedSpans().map((s) => s.name)).toEqual(['still-theirs']);
  });

  it('warns when the foreign provider came without a context manager', () => {
    trace.setGlobalTracerProvider(new TracerProvider());
    const handle = acquire({ redact: false });
    expect(handle.owned).toBe(false);
    expect(handle.warnings).toEqual([expect.stringContaining('no context manager is')]);
    expect(hasContextManager()).toBe(false);
  });
});

describe('acquireSdk: disabled', () => {
  it.each([
    ['{ disabled: true }', { disabled: true }, {}],
    ['OTEL_SDK_DISABLED=true', {}, { OTEL_SDK_DISABLED: 'true' }],
  ] as const)('%s registers nothing', async (reason, options, env) => {
    const handle = acquire(options, env);
    expect(handle).toMatchObject({ owned: false, reused: false, disabled: true, disabledReason: reason, provider: undefined });
    expect(detectExistingProvider()).toBe('none');
    expect(hasContextManager()).toBe(false);
    expect(sdkState()).toBeUndefined();
    await expect(handle.forceFlush()).resolves.toBeUndefined();
    await expect(releaseSdk(handle)).resolves.toBeUndefined();
  });
});

describe('startSdkFromEnv (the otel-nest/register preload)', () => {
  it('starts the SDK from the environment once, logs environment warnings, and holds its own share', async () => {
    const logger = fakeLogger();
    const proc = fakeProcess();
    const env = { OTEL_SERVICE_NAME: 'preloaded', OTEL_TRACES_EXPORTER: 'none', OTEL_PROPAGATORS: 'xray,b3' };
    const handle = startSdkFromEnv({ env, logger, process: proc });

    expect(handle).toMatchObject({ owned: true, reused: false, serviceName: 'preloaded' });
    expect(handle?.running?.propagators).toEqual({ kind: 'named', names: ['b3'] });
    expect(startSdkFromEnv({ env, logger, process: proc })).toBe(handle);
    expect(logger.warn).toHaveBeenCalledTimes(1);
    expect(logger.warn.mock.calls[0]![0]).toContain('OTEL_PROPAGATORS="xray,b3": "xray" is not supported');

    // A module shares it and applies its baggage keys; its release leaves the preload's share.
    const module = acquire({ baggageToAttributes: ['tenant.id'] }, env);
    expect(module).toMatchObject({ owned: true, reused: true, warnings: [] });
    const parent = propagation.setBaggage(ROOT_CONTEXT, propagation.createBaggage({ 'tenant.id': { value: 't' } }));
    expect(endSpan('with-baggage', parent).attributes).toEqual({ 'tenant.id': 't' });
    await releaseSdk(module);
    expect(detectExistingProvider()).toBe('otel-nest');
    expect(endSpan('after-module', parent).attributes).toEqual({});
  });

  it('names the forRoot() SDK options that cannot change the preloaded SDK', () => {
    startSdkFromEnv({ env: { OTEL_TRACES_EXPORTER: 'none' }, logger: fakeLogger(), process: fakeProcess() });
    const module = acquire({ exporter: 'console', sampler: 'always_off', propagators: ['tracecontext', 'baggage'] });
    expect(module.reused).toBe(true);
    expect(module.warnings).toEqual([
      'otel-nest: the OpenTelemetry SDK was already started by otel-nest/register, so "exporter", "sampler" given ' +
        'to OtelModule.forRoot() cannot change it and are ignored. Set them with environment variables ' +
        '(OTEL_TRACES_EXPORTER / OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG) for ' +
        'the preload, or drop --import otel-nest/register.',
    ]);
  });

  it('does nothing over a foreign provider and installs no exit handler', () => {
    trace.setGlobalTracerProvider(new TracerProvider());
    const proc = fakeProcess();
    const handle = startSdkFromEnv({ env: {}, logger: fakeLogger(), process: proc });
    expect(handle?.owned).toBe(false);
    expect(proc.listenerCount('SIGTERM')).toBe(0);
    expect(proc.listenerCount('beforeExit')).toBe(0);
  });

  it('flushes and releases at beforeExit', async () => {
    const proc = fakeProcess();
    const handle = startSdkFromEnv({ env: { OTEL_TRACES_EXPORTER: 'none' }, logger: fakeLogger(), process: proc });
    expect(handle?.owned).toBe(true);
    proc.emit('beforeExit', 0);
    await vi.waitFor(() => expect(detectExistingProvider()).toBe('none'));
    expect(proc.kill).not.toHaveBeenCalled();
  });
});

describe('installExitHandlers', () => {
  function held(options: OtelModuleOptions): { handle: SdkHandle; exporter: RecordingExporter } {
    const exporter = new RecordingExporter();
    const handle = acquire({ exporter, batch: { scheduledDelayMillis: 60_000 }, ...options });
    return { handle, exporter };
  }

  it('SIGTERM with no other listener: flushes, shuts down, then re-sends SIGTERM to die of it', async () => {
    const { handle, exporter } = held({});
    const proc = fakeProcess();
    installExitHandlers(handle, proc, fakeLogger());
    endSpan('in-flight');

    proc.emit('SIGTERM', 'SIGTERM');
    await vi.waitFor(() => expect(proc.kill).toHaveBeenCalledWith(4242, 'SIGTERM'));
    expect(exporter.spans.map((s) => s.name)).toEqual(['in-flight']);
    expect(exporter.shutdowns).toBe(1);
    expect(detectExistingProvider()).toBe('none');
    expect(proc.listenerCount('SIGTERM')).toBe(0);
  });

  it('SIGTERM while an application still holds the SDK: flushes what it buffered before exiting', async () => {
    const { handle: preload, exporter } = held({});
    acquire({ exporter, batch: { scheduledDelayMillis: 60_000 } });
    const proc = fakeProcess();
    installExitHandlers(preload, proc, fakeLogger());
    endSpan('buffered-by-app');

    proc.emit('SIGTERM', 'SIGTERM');
    await vi.waitFor(() => expect(proc.kill).toHaveBeenCalled());
    expect(exporter.spans.map((s) => s.name)).toEqual(['buffered-by-app']);
  });

  it("SIGTERM with another listener (Nest's shutdown hooks): only flushes, the other listener owns the exit", async () => {
    const { handle, exporter } = held({});
    const proc = fakeProcess();
    installExitHandlers(handle, proc, fakeLogger());
    const appListener = vi.fn();
    proc.on('SIGTERM', appListener);
    endSpan('flushed-only');

    proc.emit('SIGTERM', 'SIGTERM');
    await vi.waitFor(() => expect(exporter.spans.map((s) => s.name)).toEqual(['flushed-only']));
    expect(appListener).toHaveBeenCalled();
    expect(proc.kill).not.toHaveBeenCalled();
    expect(detectExistingProvider()).toBe('otel-nest');
    expect(proc.listenerCount('SIGTERM')).toBe(2);

    // Nest removes its listener and re-sends the signal: now we are alone and finish the job.
    proc.removeListener('SIGTERM', appListener);
    proc.emit('SIGTERM', 'SIGTERM');
    await vi.waitFor(() => expect(proc.kill).toHaveBeenCalledWith(4242, 'SIGTERM'));
    expect(detectExistingProvider()).toBe('none');
  });
});

describe('flush and shutdown are bounded when the exporter never answers', () => {
  /** A collector that accepted the request and never answers: no result, and a shutdown that never ends. */
  class SilentExporter implements SpanExporter {
    exports = 0;
    export(): void {
      this.exports++;
    }
    shutdown(): Promise<void> {
      return new Promise(() => undefined);
    }
  }

  function silent(logger: SdkLogger): { handle: SdkHandle; exporter: SilentExporter } {
    const exporter = new SilentExporter();
    const config = resolveSdkConfig({ exporter, batch: { scheduledDelayMillis: 60_000, exportTimeoutMillis: 120_000 } }, {});
    return { handle: acquireSdk(config, logger), exporter };
  }

  it(`the last release gives up after FLUSH_TIMEOUT_MS (${FLUSH_TIMEOUT_MS} ms) and says how many spans it dropped`, async () => {
    vi.useFakeTimers();
    try {
      const logger = fakeLogger();
      const { handle, exporter } = silent(logger);
      endSpan('a');
      endSpan('b');
      let done = false;
      const shutdown = handle.shutdown().then(() => (done = true));
      await vi.advanceTimersByTimeAsync(FLUSH_TIMEOUT_MS - 1);
      expect(exporter.exports).toBe(1);
      expect(done).toBe(false);
      await vi.advanceTimersByTimeAsync(1);
      await shutdown;
      expect(logger.warn).toHaveBeenCalledTimes(1);
      expect(logger.warn.mock.calls[0]![0]).toMatch(
        /^otel-nest: shutting down: 2 spans not exported to SilentExporter within 5000 ms are dropped; otel-nest stopped waiting for the collector/,
      );
      expect(logger.error).not.toHaveBeenCalled();
      expect(detectExistingProvider()).toBe('none');
    } finally {
      vi.useRealTimers();
    }
  });

  it('a plain forceFlush stops waiting after FLUSH_TIMEOUT_MS and says the export goes on; the SDK keeps running', async () => {
    vi.useFakeTimers();
    try {
      const logger = fakeLogger();
      const { handle } = silent(logger);
      handles.push(handle);
      endSpan('a');
      const flushed = handle.forceFlush();
      await vi.advanceTimersByTimeAsync(FLUSH_TIMEOUT_MS);
      await flushed;
      expect(logger.warn.mock.calls.map((c) => c[0])).toEqual([
        'otel-nest: flushing spans did not finish within 5000 ms (the collector is slow or not answering); 1 span still being exported in the background.',
      ]);
      expect(detectExistingProvider()).toBe('otel-nest');
      // The release that follows is bounded the same way, and counts the span it gives up on.
      const released = handle.shutdown();
      await vi.advanceTimersByTimeAsync(FLUSH_TIMEOUT_MS);
      await released;
      expect(logger.warn.mock.calls[1]![0]).toMatch(/shutting down: 1 span not exported/);
    } finally {
      vi.useRealTimers();
    }
  });
});
