// The calling service of a messaging configuration, which is also the load: a Nest application
// context with a ClientProxy (Nest's, or otel-nest's traced one) that keeps `concurrency`
// requests in flight (request-reply), or a bounded window of unconsumed events (emit).
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ClientsModule, Transport } from '@nestjs/microservices';
import { lastValueFrom } from 'rxjs';
import { ready, serve } from '../lib/ipc.mjs';
import { decorateClass } from '../lib/nest-js.mjs';
import { probeBatchProcessors } from '../lib/pipeline-probe.mjs';
import { percentile } from '../lib/stats.mjs';
import { EVENT_PATTERN, RR_PATTERN, nowUs, otelImports, traced, transport, transportOptions } from './msg-common.mjs';

const service = process.env.BENCH_SERVICE ?? 'bench-client';
const CLIENT = 'BENCH_CLIENT';

async function clientEntry() {
  const options = transportOptions('client');
  if (!traced) {
    const t = { nats: Transport.NATS, rmq: Transport.RMQ, kafka: Transport.KAFKA }[transport];
    return { name: CLIENT, transport: t, options };
  }
  const lib = await import('otel-nest');
  const customClass = { nats: lib.OtelClientNats, rmq: lib.OtelClientRMQ, kafka: lib.OtelClientKafka }[transport];
  if (!customClass) throw new Error(`otel-nest exports no traced ${transport} client`);
  return { name: CLIENT, customClass, options };
}

class ClientModule {}
decorateClass(ClientModule, [
  Module({ imports: [...(await otelImports(service)), ClientsModule.register([await clientEntry()])] }),
]);

const app = await NestFactory.createApplicationContext(ClientModule, { logger: ['error', 'warn'] });
const client = app.get(CLIENT);
await client.connect();
const probe = probeBatchProcessors();

let consumed = 0;
let wake;
process.on('message', (msg) => {
  if (msg?.type === 'consumed') {
    consumed = msg.consumed;
    wake?.();
  }
});

async function requestReply({ seconds, concurrency = 16 }) {
  const latencies = [];
  let errors = 0;
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  const deadline = start + seconds * 1000;
  const worker = async () => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      try {
        await lastValueFrom(client.send(RR_PATTERN, { id: '42' }));
        latencies.push(performance.now() - t0);
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return {
    messages: latencies.length,
    seconds: elapsed,
    rate: latencies.length / elapsed,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    errors,
    clientCpuUs: cpu.user + cpu.system,
  };
}

/** Emits while fewer than `window` events are unconsumed; returns once all were consumed. */
async function emit({ seconds, window = 256, startConsumed }) {
  consumed = startConsumed;
  let emitted = 0;
  let errors = 0;
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  const deadline = start + seconds * 1000;
  while (performance.now() < deadline) {
    if (emitted - (consumed - startConsumed) >= window) {
      await new Promise((resolve) => {
        wake = resolve;
        setTimeout(resolve, 20);
      });
      continue;
    }
    emitted++;
    client.emit(EVENT_PATTERN, { id: '42', t: nowUs() }).subscribe({ error: () => errors++ });
    // Let replies, confirms and progress messages in every few events.
    if (emitted % 32 === 0) await new Promise(setImmediate);
  }
  const drainDeadline = performance.now() + 10_000;
  while (consumed - startConsumed < emitted && performance.now() < drainDeadline) {
    await new Promise((resolve) => {
      wake = resolve;
      setTimeout(resolve, 20);
    });
  }
  const elapsed = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { emitted, consumed: consumed - startConsumed, seconds: elapsed, errors, clientCpuUs: cpu.user + cpu.system };
}

serve({
  requestReply,
  emit,
  flush: () => probe.flush(),
  stats: () => ({ rss: process.memoryUsage().rss, processors: probe.found, queued: probe.queued(), ...probe.counters }),
});
ready();
