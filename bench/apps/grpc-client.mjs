// The calling service of the grpc-unary scenario, which is also the load: a Nest application
// context with Nest's ClientGrpcProxy (untraced, floor) or otel-nest's OtelClientGrpc, keeping
// `concurrency` unary calls in flight to the server at BENCH_GRPC_URL.
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ClientsModule, Transport } from '@nestjs/microservices';
import { Metadata, status } from '@grpc/grpc-js';
import { context, propagation, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { lastValueFrom } from 'rxjs';
import { ready, serve } from '../lib/ipc.mjs';
import { decorateClass } from '../lib/nest-js.mjs';
import { probeBatchProcessors } from '../lib/pipeline-probe.mjs';
import { memoryTracker } from '../lib/memory.mjs';
import { percentile } from '../lib/stats.mjs';
import { startFloorSdk } from './floor.mjs';
import { GRPC_FULL_METHOD, GRPC_SERVICE, grpcOptions, hostPort, metadataSetter } from './grpc-common.mjs';
import { floor, otelImports, traced } from './msg-common.mjs';

const service = process.env.BENCH_SERVICE ?? 'bench-grpc-client';
const url = process.env.BENCH_GRPC_URL;
if (!url) throw new Error('BENCH_GRPC_URL is not set (the server reports it when it is ready).');
const CLIENT = 'BENCH_CLIENT';

async function clientEntry() {
  const options = grpcOptions(url);
  if (!traced) return { name: CLIENT, transport: Transport.GRPC, options };
  const { OtelClientGrpc } = await import('otel-nest');
  if (!OtelClientGrpc) throw new Error('otel-nest exports no traced gRPC client');
  return { name: CLIENT, customClass: OtelClientGrpc, options };
}

const tracer = floor ? startFloorSdk(service) : undefined;
class ClientModule {}
decorateClass(ClientModule, [
  Module({ imports: [...(await otelImports(service)), ClientsModule.register([await clientEntry()])] }),
]);

const app = await NestFactory.createApplicationContext(ClientModule, { logger: ['error', 'warn'] });
const orders = app.get(CLIENT).getService(GRPC_SERVICE);
const probe = probeBatchProcessors();
const memory = memoryTracker();

// The floor's CLIENT span: started before the call, its context injected into the call's
// metadata, ended with the reply. Same name and attribute keys as otel-nest's CLIENT span; the
// peer is the url's (a raw call site does not see grpc-js's call object).
const target = hostPort(url);
const statusName = Object.fromEntries(Object.entries(status).map(([name, code]) => [code, name]));
const clientAttributes = {
  'rpc.system.name': 'grpc',
  'rpc.method': GRPC_FULL_METHOD,
  'server.address': target.host,
  'server.port': target.port,
  'network.peer.address': target.host,
  'network.peer.port': target.port,
};

async function call(request) {
  if (!tracer) return lastValueFrom(orders.getOrder(request));
  const span = tracer.startSpan(GRPC_FULL_METHOD, { kind: SpanKind.CLIENT, attributes: clientAttributes }, context.active());
  const ctx = trace.setSpan(context.active(), span);
  const metadata = new Metadata();
  propagation.inject(ctx, metadata, metadataSetter);
  try {
    const reply = await context.with(ctx, () => lastValueFrom(orders.getOrder(request, metadata)));
    span.setAttribute('rpc.status_code', 'OK');
    return reply;
  } catch (err) {
    const name = statusName[err?.code] ?? 'UNKNOWN';
    span.setAttributes({ 'rpc.status_code': name, 'error.type': name });
    span.setStatus({ code: SpanStatusCode.ERROR });
    throw err;
  } finally {
    span.end();
  }
}

// A first call, so that the channel is connected before the first measured segment.
await call({ id: '42' });

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
        await call({ id: '42' });
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

serve({
  requestReply,
  flush: () => probe.flush(),
  stats: () => ({ ...memory.snapshot(), gc: memory.mark(), processors: probe.found, queued: probe.queued(), ...probe.counters }),
});
ready();
