// The calling service of a messaging configuration, which is also the load: a Nest application
// context with a ClientProxy (Nest's, or otel-nest's traced one) that keeps `concurrency`
// requests in flight (request-reply), or a bounded window of unconsumed events (emit).
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ClientsModule, MqttRecordBuilder, NatsRecordBuilder, RmqRecordBuilder, Transport } from '@nestjs/microservices';
import { context, propagation, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { lastValueFrom, Observable } from 'rxjs';
import { ready, serve } from '../lib/ipc.mjs';
import { decorateClass } from '../lib/nest-js.mjs';
import { probeBatchProcessors } from '../lib/pipeline-probe.mjs';
import { memoryTracker } from '../lib/memory.mjs';
import { percentile } from '../lib/stats.mjs';
import { carriers, messagingAttributes, startFloorSdk, tcpRpcAttributes } from './floor.mjs';
import {
  EVENT_PATTERN,
  RR_PATTERN,
  brokerAddress,
  destinationOf,
  floor,
  metadataTransport,
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
    const t = { nats: Transport.NATS, rmq: Transport.RMQ, kafka: Transport.KAFKA, tcp: Transport.TCP, redis: Transport.REDIS, mqtt: Transport.MQTT }[transport];
    return { name: CLIENT, transport: t, options };
  }
  const lib = await import('otel-nest');
  const customClass = {
    nats: lib.OtelClientNats,
    rmq: lib.OtelClientRMQ,
    kafka: lib.OtelClientKafka,
    tcp: lib.OtelClientTCP,
    redis: lib.OtelClientRedis,
    mqtt: lib.OtelClientMqtt,
  }[transport];
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
// TCP / Redis floor: Nest 12's dispatch hook writes the active context into the packet envelope's
// metadata (where otel-nest's clients put it); the send is subscribed in the span's context.
if (tracer && metadataTransport) {
  client.setOnDispatchHook((packet) => {
    const metadata = {};
    propagation.inject(context.active(), metadata, carriers[transport].setter);
    packet.metadata = metadata;
  });
}
await client.connect();
if (transport === 'mqtt') await pinMqttReplySubscription();
const probe = probeBatchProcessors();
const memory = memoryTracker();

const natsHeaders = transport === 'nats' ? (await import('@nats-io/transport-node')).headers : undefined;
const broker = brokerAddress();
// TCP request-reply: an RPC CLIENT span named by the pattern, as otel-nest's (emit: PRODUCER).
// The peer is the server's address (a raw call site does not see Nest's socket).
const rpc = (pattern) => ({
  name: pattern,
  kind: SpanKind.CLIENT,
  rpc: true,
  attributes: { ...tcpRpcAttributes(pattern, broker), 'network.peer.address': broker.server, 'network.peer.port': broker.port },
});
const producer = (pattern, handlerType) => ({
  name: `send ${destinationOf(pattern)}`,
  kind: SpanKind.PRODUCER,
  attributes: messagingAttributes(transport, {
    destination: destinationOf(pattern),
    pattern,
    handlerType,
    ...broker,
    clientId: `${prefix}-client-client`,
  }),
});
const producers = {
  [RR_PATTERN]: transport === 'tcp' ? rpc(RR_PATTERN) : producer(RR_PATTERN, 'message'),
  [EVENT_PATTERN]: producer(EVENT_PATTERN, 'event'),
};
const BODY_SIZE = JSON.stringify({ id: '42' }).length;
let sent = 0;

function floorRecord(data, headers) {
  if (transport === 'nats') return new NatsRecordBuilder(data).setHeaders(headers).build();
  if (transport === 'rmq') return new RmqRecordBuilder(data).setOptions({ headers }).build();
  if (transport === 'mqtt') return new MqttRecordBuilder(data).setProperties({ userProperties: headers }).build();
  return { value: data, headers };
}

/** `client.send` / `client.emit` (as `method`), with the floor's span when that is the config. */
function dispatch(method, pattern, data, onEnd) {
  if (!tracer) return client[method](pattern, data);
  const { name, kind, rpc, attributes } = producers[pattern];
  const span = tracer.startSpan(name, { kind, attributes }, context.active());
  if (!rpc) setPerMessageAttributes(span, method);
  const ctx = trace.setSpan(context.active(), span);
  onEnd.span = span;
  if (metadataTransport) {
    // The dispatch hook injects when Nest builds the packet, after connect(): in this context.
    const source = context.with(ctx, () => client[method](pattern, data));
    return method === 'send' ? new Observable((subscriber) => context.with(ctx, () => source.subscribe(subscriber))) : source;
  }
  const headers = natsHeaders ? natsHeaders() : {};
  propagation.inject(ctx, headers, carriers[transport].setter);
  return context.with(ctx, () => client[method](pattern, floorRecord(data, headers)));
}

/** The per-message attributes otel-nest's PRODUCER span has (a counter for the ids, as the floor knows no packet id). */
function setPerMessageAttributes(span, method) {
  if (transport === 'redis') {
    if (method === 'send') {
      const id = String(++sent);
      span.setAttribute('messaging.message.id', id);
      span.setAttribute('messaging.message.conversation_id', id);
    }
    return;
  }
  span.setAttribute('messaging.message.body.size', BODY_SIZE);
  if (transport === 'mqtt') {
    // Nest's defaults: QoS 0, not retained.
    span.setAttribute('nestjs.mqtt.qos', 0);
    span.setAttribute('nestjs.mqtt.retain', false);
    if (method === 'send') {
      const id = String(++sent);
      span.setAttribute('messaging.message.id', id);
      span.setAttribute('messaging.message.conversation_id', id);
    }
    return;
  }
  if (method === 'send') span.setAttribute('messaging.message.conversation_id', String(++sent));
}

/**
 * Nest's ClientMqtt subscribes to `<pattern>/reply` when a request finds no other in flight and
 * unsubscribes when the last one ends; a request that subscribes while another's UNSUBSCRIBE is on
 * its way publishes after the broker dropped the subscription (the race Nest's client comments on
 * as #17671), its reply is lost and its worker waits forever (the untraced run hung once, its
 * workers waiting 120 s; this race is the likely cause). The
 * bench keeps the reply topic subscribed for the whole run, as a long-lived request would, the
 * same in every configuration (OtelClientMqtt extends ClientMqtt).
 */
async function pinMqttReplySubscription() {
  const channel = client.getResponsePattern(RR_PATTERN);
  await new Promise((resolve, reject) => client.mqttClient.subscribe(channel, (err) => (err ? reject(err) : resolve())));
  client.subscriptionsCount.set(channel, (client.subscriptionsCount.get(channel) ?? 0) + 1);
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
