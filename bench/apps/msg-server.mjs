// The consuming service of a messaging configuration: a Nest microservice with one
// @MessagePattern (request-reply) and one @EventPattern, on Nest's own server (untraced) or the
// otel-nest one (traced), in its own process.
import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { EventPattern, MessagePattern, Payload, ServerKafka, ServerNats, ServerRMQ } from '@nestjs/microservices';
import { ready, serve } from '../lib/ipc.mjs';
import { decorateClass, decorateMethod, decorateParams, work } from '../lib/nest-js.mjs';
import { probeBatchProcessors } from '../lib/pipeline-probe.mjs';
import { percentile } from '../lib/stats.mjs';
import { EVENT_PATTERN, RR_PATTERN, nowUs, otelImports, traced, transport, transportOptions } from './msg-common.mjs';

const service = process.env.BENCH_SERVICE ?? 'bench-server';
let handled = 0;
let consumed = 0;
let eventLatencies = [];

class BenchController {
  request(data) {
    handled++;
    return work(String(data?.id ?? '0'));
  }
  event(data) {
    consumed++;
    if (typeof data?.t === 'number') eventLatencies.push((nowUs() - data.t) / 1000);
    work(String(data?.id ?? '0'));
  }
}
decorateParams(BenchController, 'request', [Payload()]);
decorateMethod(BenchController, 'request', [MessagePattern(RR_PATTERN)]);
decorateParams(BenchController, 'event', [Payload()]);
decorateMethod(BenchController, 'event', [EventPattern(EVENT_PATTERN)]);
decorateClass(BenchController, [Controller()]);

class ServerModule {}
decorateClass(ServerModule, [Module({ imports: await otelImports(service), controllers: [BenchController] })]);

async function strategy() {
  const options = transportOptions('server');
  if (!traced) {
    return { nats: () => new ServerNats(options), rmq: () => new ServerRMQ(options), kafka: () => new ServerKafka(options) }[transport]();
  }
  const lib = await import('otel-nest');
  const Server = { nats: lib.OtelServerNats, rmq: lib.OtelServerRMQ, kafka: lib.OtelServerKafka }[transport];
  if (!Server) throw new Error(`otel-nest exports no traced ${transport} server`);
  return new Server(options);
}

const app = await NestFactory.createMicroservice(ServerModule, { strategy: await strategy(), logger: ['error', 'warn'] });
await app.listen();
const probe = probeBatchProcessors();

// The emitting client keeps a bounded window of unconsumed events; it learns the consumed count
// from these progress messages (relayed by the orchestrator).
let reported = 0;
setInterval(() => {
  if (consumed !== reported) {
    reported = consumed;
    process.send({ type: 'progress', consumed });
  }
}, 2).unref();

serve({
  mark: () => ({ cpu: process.cpuUsage(), handled, consumed, rss: process.memoryUsage().rss }),
  takeEventLatencies: () => {
    const result = { count: eventLatencies.length, p50: percentile(eventLatencies, 50), p99: percentile(eventLatencies, 99) };
    eventLatencies = [];
    return result;
  },
  flush: () => probe.flush(),
  stats: () => ({ handled, consumed, rss: process.memoryUsage().rss, processors: probe.found, queued: probe.queued(), ...probe.counters }),
});
ready({ consumed });
