// The floor configurations of issue 14: what any tracer has to pay, with no Nest integration.
//   F0  a context per request: an AsyncLocalStorage context manager and context.with() around the
//       rest of the request, from the framework's first hook (the same as the A+als diagnostic)
//   F1  F0 + one bare SDK span per request, started and ended by that hook, with the attributes,
//       sampler (parent-based always-on), batch processor settings and OTLP/HTTP exporter of B
// Messaging: the same idea on Nest's untraced transport: a producer span around client.send/emit
// with the context injected into the message headers through @opentelemetry/api's propagation,
// and a consumer span in the handler, its parent extracted from the headers, the handler run in
// its context.
import { context, propagation, ROOT_CONTEXT, SpanKind, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOnSampler, BatchSpanProcessor, ParentBasedSampler, TracerProvider } from '@opentelemetry/sdk-trace';

/** The context manager alone (F0, and the base of every floor). */
export function enableContext() {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
}

/**
 * The SDK as otel-nest's defaults build it for B (lib/sdk/resolve-config.ts, sdk-factory.ts):
 * default resource + service.name, parent-based always-on, a BatchSpanProcessor with 2048 / 512 /
 * 5000 ms / 30000 ms, the OTLP/HTTP (JSON) exporter; W3C trace context + baggage. Registered
 * globally, so that the pipeline probe finds its processor.
 */
export function startFloorSdk(serviceName) {
  enableContext();
  const provider = new TracerProvider({
    resource: defaultResource().merge(resourceFromAttributes({ 'service.name': serviceName })),
    sampler: new ParentBasedSampler({ root: new AlwaysOnSampler() }),
    spanProcessors: [
      new BatchSpanProcessor({
        exporter: new OTLPTraceExporter({ url: process.env.BENCH_OTLP_URL }),
        maxQueueSize: 2048,
        maxExportBatchSize: 512,
        scheduledDelayMillis: 5000,
        exportTimeoutMillis: 30_000,
      }),
    ],
  });
  propagation.setGlobalPropagator(new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }));
  trace.setGlobalTracerProvider(provider);
  return provider.getTracer('bench-floor');
}

// ---------------------------------------------------------------------------------------------
// HTTP

const headerGetter = {
  get: (headers, key) => headers[key],
  keys: (headers) => Object.keys(headers),
};

/**
 * F1 on a Nest app, from the framework's first hook (F0 is the A+als diagnostic, see
 * http-diagnostics.mjs). The span carries the attribute keys B's span has (the report compares
 * them with what the receiver got from B); the Nest controller and handler names, which a raw hook
 * cannot know, are the bench app's constants.
 */
export function installHttpFloor(app, serviceName) {
  const adapter = app.getHttpAdapter();
  const fastify = adapter.getType() === 'fastify';
  const tracer = startFloorSdk(serviceName);
  const enter = (req, res, routeOf, next) => {
    const parent = propagation.extract(ROOT_CONTEXT, req.headers, headerGetter);
    const method = req.method;
    const url = req.url;
    const q = url.indexOf('?');
    const host = req.headers.host ?? '';
    const colon = host.lastIndexOf(':');
    const socket = req.socket;
    const span = tracer.startSpan(
      method,
      {
        kind: SpanKind.SERVER,
        attributes: {
          'http.request.method': method,
          'url.path': q < 0 ? url : url.slice(0, q),
          'url.scheme': 'http',
          'server.address': colon < 0 ? host : host.slice(0, colon),
          'server.port': colon < 0 ? 80 : Number(host.slice(colon + 1)),
          'client.address': socket.remoteAddress,
          'network.peer.address': socket.remoteAddress,
          'network.peer.port': socket.remotePort,
          'network.protocol.version': req.httpVersion,
          'user_agent.original': req.headers['user-agent'],
        },
      },
      parent,
    );
    res.once('finish', () => {
      const route = routeOf();
      if (route) {
        span.updateName(`${method} ${route}`);
        span.setAttribute('http.route', route);
      }
      span.setAttribute('nestjs.controller', 'OrdersController');
      span.setAttribute('nestjs.handler', 'order');
      span.setAttribute('http.response.status_code', res.statusCode);
      span.end();
    });
    return context.with(trace.setSpan(parent, span), next);
  };
  if (fastify) {
    adapter.getInstance().addHook('onRequest', (request, reply, done) => enter(request.raw, reply.raw, () => request.routeOptions?.url, done));
  } else {
    app.use((req, res, next) => enter(req, res, () => req.route?.path, next));
  }
}

// ---------------------------------------------------------------------------------------------
// Messaging: carriers per transport, as plain object literals (header names come from the
// global propagator only).

const bufferAware = (v) => (Buffer.isBuffer(v) ? v.toString() : Array.isArray(v) ? bufferAware(v[0]) : v);

export const carriers = {
  nats: {
    setter: { set: (h, k, v) => h.set(k, v) },
    getter: { get: (h, k) => h?.get(k) || undefined, keys: (h) => (h ? h.keys() : []) },
  },
  rmq: {
    setter: { set: (h, k, v) => (h[k] = v) },
    getter: { get: (h, k) => (h ? bufferAware(h[k]) : undefined), keys: (h) => (h ? Object.keys(h) : []) },
  },
  kafka: {
    setter: { set: (h, k, v) => (h[k] = v) },
    getter: { get: (h, k) => (h ? bufferAware(h[k]) : undefined), keys: (h) => (h ? Object.keys(h) : []) },
  },
};
// TCP and Redis: Nest 12's packet envelope `metadata` (a plain object of strings); MQTT 5: user
// properties (a value may arrive as an array when a key was repeated).
carriers.tcp = carriers.redis = carriers.mqtt = carriers.kafka;

const SYSTEM = { nats: 'nats', rmq: 'rabbitmq', kafka: 'kafka', redis: 'redis', mqtt: 'mqtt', tcp: 'nestjs_tcp' };

/**
 * TCP `send()`: otel-nest's spans are RPC CLIENT/SERVER spans named by the pattern (Nest's TCP
 * protocol is direct request-reply, no intermediary); the same keys as theirs.
 */
export function tcpRpcAttributes(pattern, { server, port }) {
  return {
    'rpc.system.name': SYSTEM.tcp,
    'rpc.method': pattern,
    'nestjs.pattern': pattern,
    'nestjs.handler.type': 'message',
    'server.address': server,
    'server.port': port,
  };
}

/** The attributes otel-nest's producer and consumer spans carry for this transport (keys as B's). */
export function messagingAttributes(transport, { destination, pattern, handlerType, server, port, clientId, groupId, consumer }) {
  const op = consumer ? 'process' : 'send';
  const attributes = {
    'messaging.system': SYSTEM[transport],
    'messaging.operation.name': op,
    'messaging.operation.type': op,
    'messaging.destination.name': destination,
    'nestjs.pattern': pattern,
    'nestjs.handler.type': handlerType,
    'server.address': server,
    'server.port': port,
  };
  if (transport === 'rmq') attributes['messaging.rabbitmq.destination.routing_key'] = destination;
  if (transport === 'kafka' || transport === 'mqtt') {
    attributes['messaging.client.id'] = clientId;
    if (consumer && transport === 'kafka') attributes['messaging.consumer.group.name'] = groupId;
  }
  return attributes;
}
