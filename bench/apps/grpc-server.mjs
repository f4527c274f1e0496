// The called service of the grpc-unary scenario: a Nest gRPC microservice with one unary
// @GrpcMethod, on Nest's own ServerGrpc (untraced, floor) or otel-nest's OtelServerGrpc, in its
// own process. It listens on a free port of 127.0.0.1 and reports it in its ready message.
import 'reflect-metadata';
import { createServer } from 'node:net';
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { GrpcMethod, ServerGrpc } from '@nestjs/microservices';
import { context, propagation, ROOT_CONTEXT, SpanKind, trace } from '@opentelemetry/api';
import { ready, serve } from '../lib/ipc.mjs';
import { decorateClass, decorateMethod, work } from '../lib/nest-js.mjs';
import { probeBatchProcessors } from '../lib/pipeline-probe.mjs';
import { memoryTracker } from '../lib/memory.mjs';
import { startFloorSdk } from './floor.mjs';
import { GRPC_FULL_METHOD, GRPC_METHOD, GRPC_SERVICE, grpcOptions, hostPort, metadataGetter } from './grpc-common.mjs';
import { floor, otelImports, traced } from './msg-common.mjs';

const service = process.env.BENCH_SERVICE ?? 'bench-grpc-server';
let handled = 0;

const onRequest = (data) => {
  handled++;
  return work(String(data?.id ?? '0'));
};

// The floor's SERVER span: parent extracted from the call's metadata, the handler run in its
// context, ended when the handler returns (it is synchronous). Same name and attribute keys as
// otel-nest's SERVER span; the controller and handler names are the constants they are here.
const tracer = floor ? startFloorSdk(service) : undefined;

function serve1(data, metadata, call) {
  const parent = propagation.extract(ROOT_CONTEXT, metadata, metadataGetter);
  const peer = hostPort(call.getPeer());
  const span = tracer.startSpan(
    GRPC_FULL_METHOD,
    {
      kind: SpanKind.SERVER,
      attributes: {
        'rpc.system.name': 'grpc',
        'rpc.method': GRPC_FULL_METHOD,
        'network.peer.address': peer.host,
        'network.peer.port': peer.port,
        'nestjs.controller': 'BenchController',
        'nestjs.handler': 'getOrder',
      },
    },
    parent,
  );
  try {
    return context.with(trace.setSpan(parent, span), onRequest, undefined, data);
  } finally {
    span.setAttribute('rpc.status_code', 'OK');
    span.end();
  }
}

// (data, metadata, call) in every configuration, as Nest passes them to a unary handler.
class BenchController {
  getOrder(data, metadata, call) {
    return tracer ? serve1(data, metadata, call) : onRequest(data);
  }
}
decorateMethod(BenchController, 'getOrder', [GrpcMethod(GRPC_SERVICE, GRPC_METHOD)]);
decorateClass(BenchController, [Controller()]);

class ServerModule {}
decorateClass(ServerModule, [Module({ imports: await otelImports(service), controllers: [BenchController] })]);

async function freePort() {
  const server = createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

const url = `127.0.0.1:${await freePort()}`;
async function strategy() {
  if (!traced) return new ServerGrpc(grpcOptions(url));
  const { OtelServerGrpc } = await import('otel-nest');
  if (!OtelServerGrpc) throw new Error('otel-nest exports no traced gRPC server');
  return new OtelServerGrpc(grpcOptions(url));
}

const app = await NestFactory.createMicroservice(ServerModule, { strategy: await strategy(), logger: ['error', 'warn'] });
await app.listen();
const probe = probeBatchProcessors();
const memory = memoryTracker();

serve({
  mark: () => ({ cpu: process.cpuUsage(), handled, rss: process.memoryUsage().rss, gc: memory.mark() }),
  flush: () => probe.flush(),
  stats: () => ({ handled, ...memory.snapshot(), gc: memory.mark(), processors: probe.found, queued: probe.queued(), ...probe.counters }),
});
ready({ url });
