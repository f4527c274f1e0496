// The consuming service of a messaging configuration: a Nest microservice with one
// @MessagePattern (request-reply) and one @EventPattern, on Nest's own server (untraced) or the
// otel-nest one (traced), in its own process.
import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { context, propagation, ROOT_CONTEXT, SpanKind, trace } from '@opentelemetry/api';
import { createServer } from 'node:net';
import {
  Ctx,
  EventPattern,
  MessagePattern,
  Payload,
  ServerKafka,
  ServerMqtt,
  ServerNats,
  ServerRedis,
  ServerRMQ,
  ServerTCP,
} from '@nestjs/microservices';
import { ready, serve } from '../lib/ipc.mjs';
import { decorateClass, decorateMethod, decorateParams, work } from '../lib/nest-js.mjs';
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
  nowUs,
  otelImports,
  prefix,
  traced,
  transport,
  transportOptions,
} from './msg-common.mjs';

const service = process.env.BENCH_SERVICE ?? 'bench-server';

// TCP: the server listens on a free port of 127.0.0.1 and reports it in its ready message.
async function freePort() {
  const server = createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}
if (transport === 'tcp') process.env.BENCH_SERVER_URL = `127.0.0.1:${await freePort()}`;
let handled = 0;
let consumed = 0;
let eventLatencies = [];

const onRequest = (data) => {
  handled++;
  return work(String(data?.id ?? '0'));
};
const onEvent = (data) => {
  consumed++;
  if (typeof data?.t === 'number') eventLatencies.push((nowUs() - data.t) / 1000);
  work(String(data?.id ?? '0'));
};

// The floor's consumer span: parent extracted from the message headers, handler run in its
// context, ended when the handler returns (the handlers here are synchronous).
const tracer = floor ? startFloorSdk(service) : undefined;
const broker = brokerAddress();
const consumerAttributes = (pattern, handlerType) =>
  messagingAttributes(transport, {
    destination: destinationOf(pattern),
    pattern,
    handlerType,
    ...broker,
    clientId: `${prefix}-server-server`,
    groupId: `${prefix}-server-server`,
    consumer: true,
  });
// TCP request-reply: an RPC SERVER span named by the pattern, as otel-nest's (events: CONSUMER).
const tcpRpc = transport === 'tcp';
const floorAttributes = {
  message: tcpRpc ? tcpRpcAttributes(RR_PATTERN, broker) : consumerAttributes(RR_PATTERN, 'message'),
  event: consumerAttributes(EVENT_PATTERN, 'event'),
};
const floorNames = { message: tcpRpc ? RR_PATTERN : `process ${destinationOf(RR_PATTERN)}`, event: `process ${destinationOf(EVENT_PATTERN)}` };
const floorKinds = { message: tcpRpc ? SpanKind.SERVER : SpanKind.CONSUMER, event: SpanKind.CONSUMER };
const BODY_SIZE = JSON.stringify({ id: '42' }).length;
let delivered = 0;

function headersOf(ctx) {
  if (transport === 'nats') return ctx.getHeaders();
  if (transport === 'rmq') return ctx.getMessage().properties.headers;
  if (transport === 'tcp' || transport === 'redis') return ctx.getMetadata();
  if (transport === 'mqtt') return ctx.getPacket().properties?.userProperties;
  return ctx.getMessage().headers;
}

function perMessageAttributes(ctx, kind) {
  if (transport === 'tcp') {
    const socket = ctx.getSocketRef().netSocket;
    return { 'network.peer.address': socket.remoteAddress, 'network.peer.port': socket.remotePort };
  }
  if (transport === 'mqtt') {
    const packet = ctx.getPacket();
    const attributes = { 'messaging.message.body.size': packet.payload.length, 'nestjs.mqtt.qos': packet.qos, 'nestjs.mqtt.retain': packet.retain };
    if (kind === 'message') {
      const id = String(++delivered);
      attributes['messaging.message.id'] = id;
      attributes['messaging.message.conversation_id'] = id;
    }
    return attributes;
  }
  if (transport === 'redis') {
    // Requests carry Nest's packet id (a counter here); events have none.
    if (kind === 'event') return { 'messaging.message.body.size': BODY_SIZE };
    const id = String(++delivered);
    return { 'messaging.message.id': id, 'messaging.message.conversation_id': id, 'messaging.message.body.size': BODY_SIZE };
  }
  if (transport === 'rmq') {
    const message = ctx.getMessage();
    return {
      'messaging.rabbitmq.message.delivery_tag': message.fields.deliveryTag,
      'messaging.message.conversation_id': message.properties.correlationId,
      'messaging.message.body.size': message.content.length,
    };
  }
  if (transport === 'kafka') {
    return {
      'messaging.message.body.size': BODY_SIZE,
      'messaging.destination.partition.id': String(ctx.getPartition()),
      'messaging.kafka.offset': Number(ctx.getMessage().offset),
    };
  }
  return { 'messaging.message.conversation_id': String(++delivered), 'messaging.message.body.size': BODY_SIZE };
}

function consume(kind, ctx, handler, data) {
  const parent = propagation.extract(ROOT_CONTEXT, headersOf(ctx), carriers[transport].getter);
  const span = tracer.startSpan(
    floorNames[kind],
    { kind: floorKinds[kind], attributes: { ...floorAttributes[kind], ...perMessageAttributes(ctx, kind) } },
    parent,
  );
  span.setAttribute('nestjs.controller', 'BenchController');
  span.setAttribute('nestjs.handler', kind === 'message' ? 'request' : 'event');
  try {
    return context.with(trace.setSpan(parent, span), handler, undefined, data);
  } finally {
    span.end();
  }
}

// @Ctx() in every configuration, so that the untraced one pays the same for it.
class BenchController {
  request(data, ctx) {
    return tracer ? consume('message', ctx, onRequest, data) : onRequest(data);
  }
  event(data, ctx) {
    return tracer ? consume('event', ctx, onEvent, data) : onEvent(data);
  }
}
decorateParams(BenchController, 'request', [Payload(), Ctx()]);
decorateMethod(BenchController, 'request', [MessagePattern(RR_PATTERN)]);
decorateParams(BenchController, 'event', [Payload(), Ctx()]);
decorateMethod(BenchController, 'event', [EventPattern(EVENT_PATTERN)]);
decorateClass(BenchController, [Controller()]);

class ServerModule {}
decorateClass(ServerModule, [Module({ imports: await otelImports(service), controllers: [BenchController] })]);

async function strategy() {
  const options = transportOptions('server');
  if (!traced) {
    const Server = { nats: ServerNats, rmq: ServerRMQ, kafka: ServerKafka, tcp: ServerTCP, redis: ServerRedis, mqtt: ServerMqtt }[transport];
    return new Server(options);
  }
  const lib = await import('otel-nest');
  const Server = {
    nats: lib.OtelServerNats,
    rmq: lib.OtelServerRMQ,
    kafka: lib.OtelServerKafka,
    tcp: lib.OtelServerTCP,
    redis: lib.OtelServerRedis,
    mqtt: lib.OtelServerMqtt,
  }[transport];
  if (!Server) throw new Error(`otel-nest exports no traced ${transport} server`);
  return new Server(options);
}

const app = await NestFactory.createMicroservice(ServerModule, { strategy: await strategy(), logger: ['error', 'warn'] });
await app.listen();
const probe = probeBatchProcessors();
const memory = memoryTracker();

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
  mark: () => ({ cpu: process.cpuUsage(), handled, consumed, rss: process.memoryUsage().rss, gc: memory.mark() }),
  takeEventLatencies: () => {
    const result = { count: eventLatencies.length, p50: percentile(eventLatencies, 50), p99: percentile(eventLatencies, 99) };
    eventLatencies = [];
    return result;
  },
  flush: () => probe.flush(),
  stats: () => ({ handled, consumed, ...memory.snapshot(), gc: memory.mark(), processors: probe.found, queued: probe.queued(), ...probe.counters }),
});
ready({ consumed, ...(transport === 'tcp' ? { url: process.env.BENCH_SERVER_URL } : {}) });
