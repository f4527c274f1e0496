// The calling service of a messaging configuration, which is also the load: a Nest application
// context with a ClientProxy (Nest's, or otel-nest's traced one) that keeps `concurrency`
// requests in flight (request-reply), or a bounded window of unconsumed events (emit).
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ClientsModule, NatsRecordBuilder, RmqRecordBuilder, Transport } from '@nestjs/microservices';
import { context, propagation, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { lastValueFrom } from 'rxjs';
import { ready, serve } from '../lib/ipc.mjs';
import { decorateClass } from '../lib/nest-js.mjs';
import { probeBatchProcessors } from '../lib/pipeline-probe.mjs';
import { memoryTracker } from '../lib/memory.mjs';
import { percentile } from '../lib/stats.mjs';
import { carriers, messagingAttributes, startFloorSdk } from './floor.mjs';
import {
  EVENT_PATTERN,
  RR_PATTERN,
  brokerAddress,
  destinationOf,
  floor,
  nowUs,
  otelImports,
  prefix,
  traced,
  transport,
  transportOptions,
} from './msg-common.mjs';

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

// The floor's producer span: started before Nest's client sends, its context injected into the
// message headers, ended when the reply arrives (send) or the publish is done (emit).
const tracer = floor ? startFloorSdk(service) : undefined;
class ClientModule {}
decorateClass(ClientModule, [
  Module({ imports: [...(await otelImports(service)), ClientsModule.register([await clientEntry()])] }),
]);

const app = await NestFactory.createApplicationContext(ClientModule, { logger: ['error', 'warn'] });
const client = app.get(CLIENT);
await client.connect();
const probe = probeBatchProcessors();
const memory = memoryTracker();

const natsHeaders = transport === 'nats' ? (await import('@nats-io/transport-node')).headers : undefined;
const broker = brokerAddress();
const producer = (pattern, handlerType) => ({
  name: `send ${destinationOf(pattern)}`,
  attributes: messagingAttributes(transport, {
    destination: destinationOf(pattern),
    pattern,
    handlerType,
    ...broker,
    clientId: `${prefix}-client-client`,
  }),
});
const producers = { [RR_PATTERN]: producer(RR_PATTERN, 'message'), [EVENT_PATTERN]: producer(EVENT_PATTERN, 'event') };
const BODY_SIZE = JSON.stringify({ id: '42' }).length;
let sent = 0;

function floorRecord(data, headers) {
  if (transport === 'nats') return new NatsRecordBuilder(data).setHeaders(headers).build();
  if (transport === 'rmq') return new RmqRecordBuilder(data).setOptions({ headers }).build();
  return { value: data, headers };
}

/** `client.send` / `client.emit` (as `method`), with the floor's span when that is the config. */
function dispatch(method, pattern, data, onEnd) {
  if (!tracer) return client[method](pattern, data);
  const { name, attributes } = producers[pattern];
  const span = tracer.startSpan(name, { kind: SpanKind.PRODUCER, attributes }, context.active());
  span.setAttribute('messaging.message.body.size', BODY_SIZE);
  if (method === 'send') span.setAttribute('messaging.message.conversation_id', String(++sent));
  const ctx = trace.setSpan(context.active(), span);
  const headers = natsHeaders ? natsHeaders() : {};
  propagation.inject(ctx, headers, carriers[transport].setter);
  onEnd.span = span;
  return context.with(ctx, () => client[method](pattern, floorRecord(data, headers)));
}

function endSpan(holder, error) {
  if (!holder.span) return;
  if (error) holder.span.setStatus({ code: SpanStatusCode.ERROR });
  holder.span.end();
}

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
      const holder = {};
      try {
        await lastValueFrom(dispatch('send', RR_PATTERN, { id: '42' }, holder));
        endSpan(holder);
        latencies.push(performance.now() - t0);
      } catch {
        endSpan(holder, true);
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
    const holder = {};
    dispatch('emit', EVENT_PATTERN, { id: '42', t: nowUs() }, holder).subscribe({
      complete: () => endSpan(holder),
      error: () => {
        endSpan(holder, true);
        errors++;
      },
    });
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
  stats: () => ({ ...memory.snapshot(), gc: memory.mark(), processors: probe.found, queued: probe.queued(), ...probe.counters }),
});
ready();
