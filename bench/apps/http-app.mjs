// One HTTP benchmark configuration in its own process (fresh SDK per configuration).
//   BENCH_FRAMEWORK  express | fastify
//   BENCH_TRACING    none (A, and E whose SDK is preloaded) | otel-nest (B, C, D, outage)
//   BENCH_RATIO      otel-nest sampler ratio; unset = the default parentbased_always_on
//   BENCH_OTLP_URL   where spans go;  BENCH_SERVICE  service.name (the receiver counts per name)
//   BENCH_DIAG       diagnostic pieces on an untraced app (see http-diagnostics.mjs)
import 'reflect-metadata';
import { Controller, Get, Module, Param } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ready, serve } from '../lib/ipc.mjs';
import { decorateClass, decorateMethod, decorateParams, work } from '../lib/nest-js.mjs';
import { probeBatchProcessors } from '../lib/pipeline-probe.mjs';
import { applyDiagnostics } from './http-diagnostics.mjs';

const framework = process.env.BENCH_FRAMEWORK ?? 'express';
const tracing = process.env.BENCH_TRACING ?? 'none';
const service = process.env.BENCH_SERVICE ?? 'bench';

let handled = 0;

class OrdersController {
  order(id) {
    handled++;
    return work(id);
  }
}
decorateParams(OrdersController, 'order', [Param('id')]);
decorateMethod(OrdersController, 'order', [Get(':id')]);
decorateClass(OrdersController, [Controller('orders')]);

const imports = [];
if (tracing === 'otel-nest') {
  const { OtelModule } = await import('otel-nest');
  const ratio = process.env.BENCH_RATIO;
  imports.push(
    OtelModule.forRoot({
      serviceName: service,
      exporter: { url: process.env.BENCH_OTLP_URL },
      ...(ratio !== undefined && ratio !== '' ? { sampler: { ratio: Number(ratio) } } : {}),
      logSummary: false,
    }),
  );
}

class AppModule {}
decorateClass(AppModule, [Module({ imports, controllers: [OrdersController] })]);

let app;
if (framework === 'fastify') {
  const { FastifyAdapter } = await import('@nestjs/platform-fastify');
  app = await NestFactory.create(AppModule, new FastifyAdapter(), { logger: ['error', 'warn'] });
} else {
  app = await NestFactory.create(AppModule, { logger: ['error', 'warn'] });
}
await applyDiagnostics(app, process.env.BENCH_DIAG ?? '');
await app.listen(0, '127.0.0.1');
const { port } = app.getHttpServer().address();

const probe = probeBatchProcessors(globalThis.__benchStackProvider);
let maxRss = process.memoryUsage().rss;
let maxQueued = 0;
const rssSampler = setInterval(() => {
  maxRss = Math.max(maxRss, process.memoryUsage().rss);
  maxQueued = Math.max(maxQueued, probe.queued());
}, 250);
rssSampler.unref();

serve({
  /** A point to measure from: CPU time so far, requests handled so far. */
  mark: () => ({ cpu: process.cpuUsage(), handled, rss: process.memoryUsage().rss, hrUs: Number(process.hrtime.bigint() / 1000n) }),
  resetMaxRss: () => {
    maxRss = process.memoryUsage().rss;
  },
  flush: async () => {
    await probe.flush();
  },
  stats: () => {
    const rss = process.memoryUsage().rss;
    // With --expose-gc: what is live after a full collection, apart from the GC's slack.
    globalThis.gc?.();
    const afterGc = process.memoryUsage();
    return {
    handled,
    rss,
    rssAfterGc: afterGc.rss,
    heapUsedAfterGc: afterGc.heapUsed,
    maxRss,
    heapUsed: process.memoryUsage().heapUsed,
    processors: probe.found,
    queued: probe.queued(),
    maxQueued,
    maxQueueSize: probe.maxQueueSize ?? null,
    ...probe.counters,
    };
  },
});
ready({ port, url: `http://127.0.0.1:${port}/orders/` });
