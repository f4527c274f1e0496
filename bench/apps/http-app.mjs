// One HTTP benchmark configuration in its own process (fresh SDK per configuration).
//   BENCH_FRAMEWORK  express | fastify
//   BENCH_TRACING    none (A, F0, and E whose SDK is preloaded) | otel-nest (B, C, D, outage)
//                    | floor (F1: one bare SDK span per request from a raw hook, apps/floor.mjs)
//   BENCH_ROUTE      orders (default: build and serialise a small order) | pg (read a row from
//                    PostgreSQL through a pg Pool, return a 20-item list; BENCH_PG_URL)
//   BENCH_RATIO      otel-nest sampler ratio; unset = the default parentbased_always_on
//   BENCH_NO_INTERCEPTOR  set: OtelModule.forRoot({ globalInterceptor: false })
//   BENCH_REDACT     off: OtelModule.forRoot({ redact: false }) (B-noredact; redaction is on by default)
//   BENCH_ENHANCERS  1: the route gets 1 guard, 2 pipes on `id` (ParseIntPipe + a pass-through) and
//                    1 interceptor, all class references (Nest's injector creates them)
//   BENCH_INSTRUMENT 1: NestFactory.create(..., { instrument: otelInstrument() })
//   BENCH_ENHANCER_SPANS  1: enhancerSpans: true | nocollapse: enhancerSpans: { collapseAbove: false }
//   BENCH_METRICS    1: metrics: { exporter: { url: BENCH_OTLP_METRICS_URL }, interval: 10000 }
//   BENCH_OTLP_URL   where spans go;  BENCH_SERVICE  service.name (the receiver counts per name)
//   BENCH_DIAG       diagnostic pieces on an untraced app (see http-diagnostics.mjs)
import 'reflect-metadata';
import { Controller, Get, Injectable, Module, Param, ParseIntPipe, UseGuards, UseInterceptors } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ready, serve } from '../lib/ipc.mjs';
import { decorateClass, decorateMethod, decorateParams, work } from '../lib/nest-js.mjs';
import { probeBatchProcessors } from '../lib/pipeline-probe.mjs';
import { memoryTracker } from '../lib/memory.mjs';
import { installHttpFloor } from './floor.mjs';
import { applyDiagnostics } from './http-diagnostics.mjs';

const framework = process.env.BENCH_FRAMEWORK ?? 'express';
const tracing = process.env.BENCH_TRACING ?? 'none';
const service = process.env.BENCH_SERVICE ?? 'bench';
const route = process.env.BENCH_ROUTE ?? 'orders';
const enhancers = process.env.BENCH_ENHANCERS === '1';

let handled = 0;

// pg is imported here, after a preload (apps/pg-preload.mjs) had the chance to hook it.
const pool = route === 'pg' ? await createPool() : undefined;

async function createPool() {
  const { default: pg } = await import('pg');
  return new pg.Pool({ connectionString: process.env.BENCH_PG_URL, max: 10 });
}

class OrdersController {
  order(id) {
    handled++;
    // With the enhancers, ParseIntPipe made `id` a number.
    return pool ? productList(id) : work(String(id));
  }
}

/** The enhancers of BENCH_ENHANCERS: as cheap as such enhancers get, so that what costs is Nest's pipeline and otel-nest's. */
class AllowGuard {
  canActivate() {
    return true;
  }
}
class PassPipe {
  transform(value) {
    return value;
  }
}
class PassInterceptor {
  intercept(context, next) {
    return next.handle();
  }
}
for (const Enhancer of [AllowGuard, PassPipe, PassInterceptor]) decorateClass(Enhancer, [Injectable()]);

/** The realistic route: one row read from PostgreSQL, a 20-item JSON list built from it. */
async function productList(id) {
  const { rows } = await pool.query('SELECT id, sku, name, price_cents, stock FROM otel_nest_bench.products WHERE id = $1', [Number(id)]);
  const row = rows[0];
  const items = [];
  for (let i = 0; i < 20; i++) {
    items.push({ sku: `${row.sku}-${i}`, name: `${row.name} (${i + 1})`, priceCents: row.price_cents + i * 5, inStock: row.stock > i });
  }
  return { id: row.id, count: items.length, items };
}
decorateParams(OrdersController, 'order', [enhancers ? Param('id', ParseIntPipe, PassPipe) : Param('id')]);
decorateMethod(OrdersController, 'order', [Get(':id'), ...(enhancers ? [UseGuards(AllowGuard), UseInterceptors(PassInterceptor)] : [])]);
decorateClass(OrdersController, [Controller('orders')]);

const imports = [];
let instrument;
if (tracing === 'otel-nest') {
  const { OtelModule, otelInstrument } = await import('otel-nest');
  const ratio = process.env.BENCH_RATIO;
  const enhancerSpans = { 1: true, nocollapse: { collapseAbove: false } }[process.env.BENCH_ENHANCER_SPANS ?? ''];
  imports.push(
    OtelModule.forRoot({
      serviceName: service,
      exporter: { url: process.env.BENCH_OTLP_URL },
      ...(ratio !== undefined && ratio !== '' ? { sampler: { ratio: Number(ratio) } } : {}),
      logSummary: false,
      ...(process.env.BENCH_NO_INTERCEPTOR ? { globalInterceptor: false } : {}),
      ...(process.env.BENCH_REDACT === 'off' ? { redact: false } : {}),
      ...(enhancerSpans ? { enhancerSpans } : {}),
      ...(process.env.BENCH_METRICS === '1' ? { metrics: { exporter: { url: process.env.BENCH_OTLP_METRICS_URL }, interval: 10_000 } } : {}),
    }),
  );
  if (process.env.BENCH_INSTRUMENT === '1') instrument = otelInstrument();
}

class AppModule {}
decorateClass(AppModule, [Module({ imports, controllers: [OrdersController] })]);

let app;
const appOptions = { logger: ['error', 'warn'], ...(instrument ? { instrument } : {}) };
if (framework === 'fastify') {
  const { FastifyAdapter } = await import('@nestjs/platform-fastify');
  app = await NestFactory.create(AppModule, new FastifyAdapter(), appOptions);
} else {
  app = await NestFactory.create(AppModule, appOptions);
}
await applyDiagnostics(app, process.env.BENCH_DIAG ?? '');
if (tracing === 'floor') installHttpFloor(app, service);
await app.listen(0, '127.0.0.1');
const { port } = app.getHttpServer().address();

const probe = probeBatchProcessors(globalThis.__benchStackProvider);
const memory = memoryTracker();
let maxRss = process.memoryUsage().rss;
let maxQueued = 0;
const rssSampler = setInterval(() => {
  maxRss = Math.max(maxRss, process.memoryUsage().rss);
  maxQueued = Math.max(maxQueued, probe.queued());
}, 250);
rssSampler.unref();

serve({
  /** A point to measure from: CPU time so far, requests handled so far. */
  mark: () => ({ cpu: process.cpuUsage(), handled, rss: process.memoryUsage().rss, gc: memory.mark(), hrUs: Number(process.hrtime.bigint() / 1000n) }),
  resetMaxRss: () => {
    maxRss = process.memoryUsage().rss;
  },
  flush: async () => {
    await probe.flush();
  },
  /** Writes a heap snapshot after a full GC (bench/heap-diff.mjs); returns its path. */
  heapSnapshot: async ({ file }) => {
    await probe.flush();
    globalThis.gc?.();
    const { writeHeapSnapshot } = await import('node:v8');
    return writeHeapSnapshot(file);
  },
  stats: () => ({
    handled,
    // With --expose-gc, the snapshot also has what is live after a full collection.
    ...memory.snapshot(),
    maxRss,
    processors: probe.found,
    queued: probe.queued(),
    maxQueued,
    maxQueueSize: probe.maxQueueSize ?? null,
    ...probe.counters,
  }),
});
ready({ port, url: `http://127.0.0.1:${port}/orders/` });
