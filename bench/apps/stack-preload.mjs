// Configuration E, "the stack users run today": what the OpenTelemetry docs tell a Node (ESM)
// application to preload: an SDK 3 TracerProvider + BatchSpanProcessor + OTLP/HTTP exporter, and
// instrumentation-http, -express, -nestjs-core, with the ESM loader hook.
// Run as: node --import ./bench/apps/stack-preload.mjs bench/apps/http-app.mjs
import { register } from 'node:module';
import { createRequire } from 'node:module';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { ExpressInstrumentation } from '@opentelemetry/instrumentation-express';
import { NestInstrumentation } from '@opentelemetry/instrumentation-nestjs-core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import { BatchSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';

// import-in-the-middle: lets the instrumentations patch modules the ESM app imports.
register('@opentelemetry/instrumentation/hook.mjs', import.meta.url);

const provider = new TracerProvider({
  resource: resourceFromAttributes({ 'service.name': process.env.BENCH_SERVICE ?? 'bench-stack' }),
  spanProcessors: [new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url: process.env.BENCH_OTLP_URL }) })],
});
// SDK 3 has no provider.register(): the three globals are set one by one.
context.setGlobalContextManager(new AsyncLocalStorageContextManager());
propagation.setGlobalPropagator(
  new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }),
);
trace.setGlobalTracerProvider(provider);

registerInstrumentations({
  instrumentations: [
    new HttpInstrumentation(),
    new ExpressInstrumentation(),
    new NestInstrumentation(),
  ],
});
// Built-ins are patched on require; the ESM app imports `http`, so require it once here
// (the same step as test/fixtures/preload-instrumentation-http.mjs).
// Measured: instrumentation-express adds its spans (5 per request here). instrumentation-fastify is
// left out: deprecated upstream for @fastify/otel, it has no SDK 3 release (its core 2 peers
// api < 1.10) and added no span to @nestjs/platform-fastify 12 anyway (an ESM named import of
// `fastify` it cannot wrap); @fastify/otel has no SDK 3 release either. instrumentation-nestjs-core 0.70/0.71 declares `@nestjs/core >=4 <12` and so does nothing on
// Nest 12. E is still exactly what such a user runs.
createRequire(import.meta.url)('node:http');
globalThis.__benchStackProvider = provider;
