// Configuration E, "the stack users run today": what the OpenTelemetry docs tell a Node (ESM)
// application to preload: NodeTracerProvider + BatchSpanProcessor + OTLP/HTTP exporter, and
// instrumentation-http, -express, -fastify, -nestjs-core, with the ESM loader hook.
// Run as: node --import ./bench/apps/stack-preload.mjs bench/apps/http-app.mjs
import { register } from 'node:module';
import { createRequire } from 'node:module';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { ExpressInstrumentation } from '@opentelemetry/instrumentation-express';
import { FastifyInstrumentation } from '@opentelemetry/instrumentation-fastify';
import { NestInstrumentation } from '@opentelemetry/instrumentation-nestjs-core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, NodeTracerProvider } from '@opentelemetry/sdk-trace-node';

// import-in-the-middle: lets the instrumentations patch modules the ESM app imports.
register('@opentelemetry/instrumentation/hook.mjs', import.meta.url);

const provider = new NodeTracerProvider({
  resource: resourceFromAttributes({ 'service.name': process.env.BENCH_SERVICE ?? 'bench-stack' }),
  spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: process.env.BENCH_OTLP_URL }))],
});
provider.register();

registerInstrumentations({
  instrumentations: [
    new HttpInstrumentation(),
    new ExpressInstrumentation(),
    new FastifyInstrumentation(),
    new NestInstrumentation(),
  ],
});
// Built-ins are patched on require; the ESM app imports `http`, so require it once here
// (the same step as test/fixtures/preload-instrumentation-http.mjs).
// Measured: instrumentation-express adds its spans (5 per request here); instrumentation-fastify
// 0.57 (deprecated upstream for @fastify/otel) adds none to @nestjs/platform-fastify 12, whose ESM
// named import of `fastify` it cannot wrap (requiring `fastify` here first does not change that);
// instrumentation-nestjs-core 0.70/0.71 declares `@nestjs/core >=4 <12` and so does nothing on
// Nest 12. E is still exactly what such a user runs.
createRequire(import.meta.url)('node:http');
globalThis.__benchStackProvider = provider;
