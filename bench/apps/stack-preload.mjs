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
// require-in-the-middle patches on require: `http` is imported by the ESM app, and
// @nestjs/platform-fastify (ESM) imports the CommonJS `fastify`, which the ESM hook does not
// let instrumentation-fastify wrap. Requiring them once here patches the shared CJS exports
// (the same step as test/fixtures/preload-instrumentation-http.mjs).
const require = createRequire(import.meta.url);
require('node:http');
if (process.env.BENCH_FRAMEWORK === 'fastify') require('fastify');
globalThis.__benchStackProvider = provider;
