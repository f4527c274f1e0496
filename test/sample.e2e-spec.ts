import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { startTraceViewer, type TraceViewer } from '../lib/devtools/index.js';
import { browserUnavailableReason, launchBrowser, type Browser } from './support/browser.js';
import { ROOT } from './support/child-app.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './support/otlp-receiver.js';
import { KIND, ReceivedTrace, STATUS_ERROR, dbSystem, runSample, serviceOf, type SampleRun } from './support/sample-run.js';

/**
 * `npm run sample -- --once` on the real brokers and databases of this machine (PostgreSQL, Redis,
 * RabbitMQ, NATS; Kafka through the local Kafka-protocol broker the sample starts), exporting to an
 * OTLP receiver. Every assertion is about what the five services sent over OTLP: one trace per
 * order across HTTP (into the gateway), gRPC (gateway → orders), RabbitMQ, NATS and Kafka.
 */

const SERVICES = ['gateway', 'orders', 'inventory', 'payment', 'notification'];
const RUN_TIMEOUT_MS = 100_000;

let receiver: OtlpReceiver;
let run: SampleRun;

/** The order id the gateway answered with, from the sample's output (`→ 201 {"id":"..."`). */
function orderId(status: number): string {
  const match = new RegExp(`→ ${status} (\\{.*\\})`).exec(run.output);
  expect(match, `no "→ ${status}" response in the sample's output:\n${run.output}`).not.toBeNull();
  return (JSON.parse(match![1]!) as { id: string }).id;
}

/** The trace of the order the gateway answered with `status`: found by its gateway SERVER span. */
function traceOf(status: number): ReceivedTrace {
  const roots = receiver.spans.filter(
    (span) =>
      serviceOf(span) === 'gateway' &&
      span.kind === KIND.SERVER &&
      span.name === 'POST /orders' &&
      span.attributes['http.response.status_code'] === status,
  );
  expect(roots).toHaveLength(1);
  return new ReceivedTrace(receiver.spans.filter((span) => span.traceId === roots[0]!.traceId));
}

/** The port the orders service's gRPC server bound, from its ready line in the sample's output. */
function ordersPort(): number {
  const match = /\[orders\] .*ready: gRPC [\d.]+:(\d+)/.exec(run.output);
  expect(match, `no orders ready line in the sample's output:\n${run.output}`).not.toBeNull();
  return Number(match![1]);
}

const PLACE_ORDER = 'orders.v1.OrderService/PlaceOrder';

/** The gateway's PlaceOrder call: its CLIENT span and the orders SERVER span under it, both with the gRPC conventions' names. */
function placeOrderCall(t: ReceivedTrace): { client: ReceivedSpan; server: ReceivedSpan } {
  const client = t.one({ name: PLACE_ORDER, service: 'gateway', kind: KIND.CLIENT });
  const server = t.one({ name: PLACE_ORDER, service: 'orders', kind: KIND.SERVER, parent: client });
  for (const span of [client, server]) {
    expect(span.attributes, `${serviceOf(span)}: ${span.name}`).toMatchObject({ 'rpc.system.name': 'grpc', 'rpc.method': PLACE_ORDER });
    expect(typeof span.attributes['network.peer.port'], `${serviceOf(span)}: network.peer.port`).toBe('number');
  }
  expect(server.attributes).toMatchObject({ 'nestjs.controller': 'OrdersController', 'nestjs.handler': 'placeOrder' });
  return { client, server };
}

const hasLinkTo = (span: ReceivedSpan, target: ReceivedSpan): boolean =>
  span.links.some((link) => link.traceId === target.traceId && link.spanId === target.spanId);

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  run = await runSample({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, TRACE_VIEWER_PORT: '0' }, RUN_TIMEOUT_MS);
}, RUN_TIMEOUT_MS + 10_000);

afterAll(async () => {
  await receiver?.close();
});

describe('npm run sample -- --once', () => {
  it('exits 0 after printing both traces as trees and the viewer URL', () => {
    expect(run.code, run.output).toBe(0);
    expect(run.output).toMatch(/✓/);
    expect(run.output).not.toMatch(/✗/);
    expect(run.output).toMatch(/^ {3}trace [0-9a-f]{32}: \d+ spans, 5 services/m);
    expect(run.output).toMatch(/^ {3}POST \/orders +gateway +SERVER +[\d.]+ ms {2}201$/m);
    expect(run.output).toMatch(/saga\.compensation reserve +orders +INTERNAL/);
    expect(run.output).toMatch(/Trace viewer: http:\/\/127\.0\.0\.1:\d+\//);
  });

  it('prints, after each trace, its log lines: found by trace id, from all five services, each with the id of a span of that trace', () => {
    const printed = run.output.split('\n').filter((line) => /^ {5}\[\w+\] /.test(line));
    for (const status of [201, 402]) {
      const t = traceOf(status);
      const traceId = t.spans[0]!.traceId;
      const lines = printed.filter((line) => line.includes(`trace_id=${traceId} `));
      expect(run.output).toContain(`log lines of this trace (${lines.length}, found by trace_id`);
      expect(new Set(lines.map((line) => /^ {5}\[(\w+)\]/.exec(line)![1])), `${status}:\n${lines.join('\n')}`).toEqual(new Set(SERVICES));
      const spanIds = new Set(t.spans.map((span) => span.spanId));
      for (const line of lines) {
        expect(spanIds.has(/ span_id=([0-9a-f]{16})/.exec(line)![1]!), line).toBe(true);
      }
    }
    expect(printed.length).toBeGreaterThanOrEqual(10);
    const orderTraces = [traceOf(201).spans[0]!.traceId, traceOf(402).spans[0]!.traceId];
    expect(printed.filter((line) => !orderTraces.some((traceId) => line.includes(`trace_id=${traceId} `)))).toEqual([]);
    // The ready lines, written outside any request, carry none.
    expect(run.output).toMatch(/\[gateway\] LOG \[Gateway\] ready: http:\S+$/m);
  });

  it('prints metric figures after each trace, from the RED metrics the services export (also forwarded to the collector)', () => {
    const sections = run.output.split('metrics so far (cumulative').slice(1);
    expect(sections).toHaveLength(2);
    // After the first order: the gateway's POST /orders answered 201 once.
    expect(sections[0]).toMatch(/^ {5}gateway +http\.server\.request\.duration +POST \/orders 201 +n=1 +p50≈[\d.>]+ ms$/m);
    expect(sections[0]).toMatch(/^ {5}orders +rpc\.server\.call\.duration +orders\.v1\.OrderService\/PlaceOrder OK +n=1 /m);
    expect(sections[0]).toMatch(/^ {5}payment +messaging\.process\.duration +payment\.charge +n=1 /m);
    // After the second: the declined charge is a series of its own, with its error.type.
    expect(sections[1]).toMatch(/^ {5}gateway +http\.server\.request\.duration +POST \/orders 402 +n=1 /m);
    expect(sections[1]).toMatch(/^ {5}payment +messaging\.process\.duration +payment\.charge +n=1 +p50≈[\d.>]+ ms {2}error\.type=RpcException$/m);
    const gateway = receiver.metricPoints.filter(
      (p) => p.service === 'gateway' && p.name === 'http.server.request.duration' && p.attributes['http.route'] === '/orders',
    );
    expect(gateway.length).toBeGreaterThan(0);
    expect(gateway.every((p) => p.unit === 's')).toBe(true);
  });

  it('every span reached the receiver over OTLP/JSON, and every message consumer span belongs to one of the two orders', () => {
    expect(receiver.requests.length).toBeGreaterThan(0);
    expect(receiver.requests.every((request) => request.statusCode === 200 && request.contentType === 'application/json')).toBe(true);
    const orderTraces = new Set([traceOf(201).spans[0]!.traceId, traceOf(402).spans[0]!.traceId]);
    const consumers = receiver.spans.filter((span) => span.kind === KIND.CONSUMER);
    expect(consumers.length).toBeGreaterThanOrEqual(7);
    expect(consumers.filter((span) => !orderTraces.has(span.traceId)).map((span) => span.name)).toEqual([]);
  });
});

describe('the successful order: one trace through all five services', () => {
  let t: ReceivedTrace;
  let id: string;
  beforeAll(() => {
    t = traceOf(201);
    id = orderId(201);
  });

  it('has spans from all five services, every one from a resource with its service.name', () => {
    expect([...t.services()].sort()).toEqual([...SERVICES].sort());
    expect(t.spans.every((span) => span.status.code !== STATUS_ERROR)).toBe(true);
  });

  it('gateway → orders over gRPC: the HTTP SERVER span → a gRPC CLIENT span → the gRPC SERVER span, the saga inside it', () => {
    const gateway = t.one({ service: 'gateway', kind: KIND.SERVER });
    expect(gateway.parentSpanId).toBeUndefined();
    expect(gateway.attributes['http.route']).toBe('/orders');
    const { client, server } = placeOrderCall(t);
    expect(client.parentSpanId).toBe(gateway.spanId);
    expect(server.parentSpanId).toBe(client.spanId);
    expect(client.attributes).toMatchObject({ 'rpc.status_code': 'OK', 'server.address': '127.0.0.1', 'server.port': ordersPort() });
    expect(server.attributes).toMatchObject({ 'rpc.status_code': 'OK', 'network.peer.address': '127.0.0.1' });
    for (const span of [client, server]) {
      expect(span.status.code).toBe(0);
      expect(span.attributes['error.type']).toBeUndefined();
    }
    // The baggage crossed the gRPC metadata too: the orders SERVER span has the caller.
    expect(server.attributes).toMatchObject({ 'tenant.id': 'acme', 'user.id': 'user-42' });
    const saga = t.one({ name: 'saga place-order', parent: server });
    expect(saga.attributes).toMatchObject({ 'saga.id': id, 'saga.name': 'place-order', 'saga.outcome': 'completed' });
    expect(t.children(saga).map((span) => span.name)).toEqual([
      'saga.step create',
      'saga.step reserve',
      'saga.step charge',
      'saga.step confirm',
    ]);
  });

  it('crosses all five protocols: HTTP, gRPC, RabbitMQ, NATS, Kafka', () => {
    expect(t.one({ service: 'gateway', kind: KIND.SERVER }).attributes['http.request.method']).toBe('POST');
    expect(t.all({ kind: KIND.CLIENT }).filter((span) => span.attributes['rpc.system.name'] === 'grpc').map(serviceOf)).toEqual(['gateway']);
    expect(t.all({ kind: KIND.SERVER }).filter((span) => span.attributes['rpc.system.name'] === 'grpc').map(serviceOf)).toEqual(['orders']);
    const messaging = new Set(t.spans.map((span) => span.attributes['messaging.system']).filter((system) => system !== undefined));
    expect([...messaging].sort()).toEqual(['kafka', 'nats', 'rabbitmq']);
  });

  it('reserve: PRODUCER in orders → CONSUMER in inventory over RabbitMQ, with PostgreSQL and Redis spans under it', () => {
    const step = t.one({ name: 'saga.step reserve' });
    const send = t.one({ kind: KIND.PRODUCER, pattern: 'inventory.reserve', parent: step });
    const process = t.one({ kind: KIND.CONSUMER, pattern: 'inventory.reserve', parent: send });
    expect(serviceOf(send)).toBe('orders');
    expect(serviceOf(process)).toBe('inventory');
    expect(process.attributes['messaging.system']).toBe('rabbitmq');
    const below = t.subtree(process);
    const pg = below.filter((span) => dbSystem(span) === 'postgresql' && span.kind === KIND.CLIENT);
    const redis = below.filter((span) => dbSystem(span) === 'redis' && span.kind === KIND.CLIENT);
    expect(pg.map((span) => span.name)).toContain('pg.query:UPDATE test');
    expect(redis.map((span) => span.name)).toEqual(['set']);
    expect([...pg, ...redis].every((span) => serviceOf(span) === 'inventory')).toBe(true);
  });

  it('charge: PRODUCER in orders → CONSUMER in payment over NATS request-reply', () => {
    const step = t.one({ name: 'saga.step charge' });
    const send = t.one({ kind: KIND.PRODUCER, pattern: 'payment.charge', parent: step });
    const process = t.one({ kind: KIND.CONSUMER, pattern: 'payment.charge', parent: send });
    expect(serviceOf(process)).toBe('payment');
    expect(process.attributes['messaging.system']).toBe('nats');
    expect(t.one({ name: 'payment.authorize', parent: process }).attributes['payment.card.last4']).toBe('4242');
  });

  it('orders writes to PostgreSQL inside its steps (create inserts, confirm updates)', () => {
    const insert = t.all({ service: 'orders', name: /^pg\.query:INSERT/ });
    const update = t.all({ service: 'orders', name: /^pg\.query:UPDATE/ });
    expect(insert).toHaveLength(1);
    expect(update).toHaveLength(1);
    expect(t.subtree(t.one({ name: 'saga.step create' }))).toContain(insert[0]);
    expect(t.subtree(t.one({ name: 'saga.step confirm' }))).toContain(update[0]);
    expect(insert[0]!.attributes['db.statement'] ?? insert[0]!.attributes['db.query.text']).toMatch(/INSERT INTO shop\.orders/);
  });

  it('notification consumes order.created from Kafka: linked to the PRODUCER span (and its child, in this trace)', () => {
    const orders = t.one({ service: 'orders', kind: KIND.SERVER });
    const send = t.one({ name: 'send order.created', kind: KIND.PRODUCER, parent: orders });
    const process = t.one({ name: 'process order.created', kind: KIND.CONSUMER });
    expect(serviceOf(process)).toBe('notification');
    expect(process.attributes).toMatchObject({ 'messaging.system': 'kafka', 'messaging.kafka.message.key': id });
    expect(hasLinkTo(process, send)).toBe(true);
    expect(process.parentSpanId).toBe(send.spanId);
    expect(t.one({ name: 'notification.send', parent: process }).attributes['notification.recipient']).toBe('user-42');
  });

  it('baggage set at the gateway (tenant.id, user.id) and by the saga (saga.id, saga.name) became attributes of the remote spans', () => {
    const remote = t.spans.filter((span) => ['inventory', 'payment', 'notification'].includes(serviceOf(span) as string));
    expect(remote.length).toBeGreaterThanOrEqual(7);
    for (const span of remote) {
      expect(span.attributes, `${serviceOf(span)}: ${span.name}`).toMatchObject({ 'tenant.id': 'acme', 'user.id': 'user-42' });
    }
    const inSaga = remote.filter((span) => serviceOf(span) !== 'notification');
    for (const span of inSaga) {
      expect(span.attributes, `${serviceOf(span)}: ${span.name}`).toMatchObject({ 'saga.id': id, 'saga.name': 'place-order' });
    }
    // The order event is published after the saga ended: its baggage has the caller, not the saga.
    expect(t.one({ name: 'process order.created' }).attributes['saga.id']).toBeUndefined();
  });
});

describe('the declined order: the failing payment step and the compensations in reverse order', () => {
  let t: ReceivedTrace;
  let id: string;
  beforeAll(() => {
    t = traceOf(402);
    id = orderId(402);
  });

  it('is one trace through all five services, answered 402 at the gateway', () => {
    expect([...t.services()].sort()).toEqual([...SERVICES].sort());
    expect(t.one({ service: 'gateway', kind: KIND.SERVER }).parentSpanId).toBeUndefined();
  });

  it('PlaceOrder failed with FAILED_PRECONDITION: an ERROR on the gateway\'s CLIENT span, not on the orders SERVER span (a caller\'s error)', () => {
    const gateway = t.one({ service: 'gateway', kind: KIND.SERVER });
    const { client, server } = placeOrderCall(t);
    expect(client.parentSpanId).toBe(gateway.spanId);
    expect(client.status).toMatchObject({ code: STATUS_ERROR, message: 'charge: The card was declined.' });
    expect(client.attributes).toMatchObject({ 'rpc.status_code': 'FAILED_PRECONDITION', 'error.type': 'FAILED_PRECONDITION' });
    expect(server.attributes['rpc.status_code']).toBe('FAILED_PRECONDITION');
    expect(server.status.code).not.toBe(STATUS_ERROR);
    expect(server.attributes['error.type']).toBeUndefined();
    // 402 is the gateway's answer to the caller: its SERVER span stays UNSET, as for any 4xx.
    expect(gateway.status.code).not.toBe(STATUS_ERROR);
    expect(t.one({ name: 'saga place-order', parent: server }).status.code).toBe(STATUS_ERROR);
  });

  it('the charge step failed in payment and in orders, and the saga ended compensated', () => {
    const saga = t.one({ name: 'saga place-order' });
    expect(saga.status.code).toBe(STATUS_ERROR);
    expect(saga.attributes).toMatchObject({ 'saga.id': id, 'saga.outcome': 'compensated', 'saga.failed_step': 'charge' });
    const step = t.one({ name: 'saga.step charge', parent: saga });
    const send = t.one({ kind: KIND.PRODUCER, pattern: 'payment.charge', parent: step });
    const process = t.one({ kind: KIND.CONSUMER, pattern: 'payment.charge', parent: send });
    for (const span of [step, send, process]) {
      expect(span.status.code, `${serviceOf(span)}: ${span.name}`).toBe(STATUS_ERROR);
    }
    expect(process.status.message).toBe('The card was declined.');
    expect(t.one({ name: 'payment.authorize', parent: process }).attributes['payment.card.last4']).toBe('0002');
    expect(t.all({ name: 'saga.step confirm' })).toEqual([]);
  });

  it('compensates charge, reserve, create: in that order, one after the other, each linked to the step it undoes', () => {
    const compensate = t.one({ name: 'saga.compensate place-order' });
    const compensations = t.children(compensate);
    expect(compensations.map((span) => span.name)).toEqual([
      'saga.compensation charge',
      'saga.compensation reserve',
      'saga.compensation create',
    ]);
    // One after the other. The SDK takes start times from Date.now() (whole milliseconds) and end
    // times from the high-resolution clock, so "after" holds to within a millisecond.
    for (let i = 1; i < compensations.length; i++) {
      expect(BigInt(compensations[i]!.startTimeUnixNano) + 1_000_000n).toBeGreaterThanOrEqual(BigInt(compensations[i - 1]!.endTimeUnixNano));
    }
    for (const compensation of compensations) {
      const undone = t.one({ name: compensation.name.replace('saga.compensation', 'saga.step') });
      expect(hasLinkTo(compensation, undone), compensation.name).toBe(true);
    }
  });

  it('the compensations reached the other services: refund in payment, release in inventory (Redis, PostgreSQL), reject in orders (PostgreSQL)', () => {
    const refund = t.one({ name: 'saga.compensation charge' });
    const refundSend = t.one({ kind: KIND.PRODUCER, pattern: 'payment.refund', parent: refund });
    expect(serviceOf(t.one({ kind: KIND.CONSUMER, pattern: 'payment.refund', parent: refundSend }))).toBe('payment');

    const release = t.one({ name: 'saga.compensation reserve' });
    const releaseSend = t.one({ kind: KIND.PRODUCER, pattern: 'inventory.release', parent: release });
    const released = t.one({ kind: KIND.CONSUMER, pattern: 'inventory.release', parent: releaseSend });
    expect(serviceOf(released)).toBe('inventory');
    expect(released.attributes['saga.id']).toBe(id);
    expect(t.children(released).map((span) => span.name)).toEqual(expect.arrayContaining(['getdel', 'pg.query:UPDATE test']));

    const reject = t.one({ name: 'saga.compensation create' });
    expect(t.subtree(reject).some((span) => serviceOf(span) === 'orders' && dbSystem(span) === 'postgresql' && /UPDATE/.test(span.name))).toBe(true);
  });

  it('notification consumed order.failed, linked to its PRODUCER span', () => {
    const send = t.one({ name: 'send order.failed', kind: KIND.PRODUCER });
    const process = t.one({ name: 'process order.failed', kind: KIND.CONSUMER });
    expect(serviceOf(process)).toBe('notification');
    expect(hasLinkTo(process, send)).toBe(true);
  });
});

describe('sample/deploy (no Docker engine here: parsed and cross-checked, not run)', () => {
  const DEPLOY = join(ROOT, 'sample', 'deploy');
  const yamlFiles = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
      entry.isDirectory() ? yamlFiles(join(dir, entry.name)) : /\.ya?ml$/.test(entry.name) ? [join(dir, entry.name)] : [],
    );
  const load = (file: string): any[] =>
    parseAllDocuments(readFileSync(file, 'utf8'), { merge: true }).map((doc) => {
      expect(doc.errors, file).toEqual([]);
      return doc.toJS({ maxAliasCount: -1 });
    });

  /** Every variable the services read (sample/shared/config.ts), and the OpenTelemetry ones otel-nest reads. */
  const serviceVariables = new Set([...readFileSync(join(ROOT, 'sample/shared/config.ts'), 'utf8').matchAll(/\benv\.([A-Z0-9_]+)/g)].map((m) => m[1]!));
  const otelVariables = new Set(readFileSync(join(ROOT, 'README.md'), 'utf8').match(/\bOTEL_[A-Z0-9_]+/g));
  const unknownVariables = (names: string[]): string[] =>
    names.filter((name) => !serviceVariables.has(name) && !(name.startsWith('OTEL_') && otelVariables.has(name)));

  it('every YAML file parses', () => {
    const files = yamlFiles(DEPLOY).map((file) => file.slice(DEPLOY.length + 1)).sort();
    expect(files).toEqual(['docker-compose.yml', 'k8s/orders.yaml', 'otel-collector.tempo.yaml', 'otel-collector.yaml']);
    for (const file of yamlFiles(DEPLOY)) {
      expect(load(file).length).toBeGreaterThan(0);
    }
  });

  it('the collector: OTLP in, tail sampling keeping every error and a ratio of the rest, batch, export to Jaeger (and Tempo)', () => {
    const [collector] = load(join(DEPLOY, 'otel-collector.yaml'));
    expect(Object.keys(collector.receivers.otlp.protocols).sort()).toEqual(['grpc', 'http']);
    const policies = collector.processors.tail_sampling.policies as Array<Record<string, any>>;
    expect(policies.find((p) => p.type === 'status_code')?.status_code.status_codes).toEqual(['ERROR']);
    expect(policies.find((p) => p.type === 'probabilistic')?.probabilistic.sampling_percentage).toBeGreaterThan(0);
    const pipeline = collector.service.pipelines.traces;
    expect(pipeline.receivers).toEqual(['otlp']);
    // Sampling before batching, on whole traces.
    expect(pipeline.processors.indexOf('tail_sampling')).toBeLessThan(pipeline.processors.indexOf('batch'));
    for (const name of [...pipeline.receivers, ...pipeline.processors, ...pipeline.exporters]) {
      expect({ ...collector.receivers, ...collector.processors, ...collector.exporters }, name).toHaveProperty([name]);
    }
    expect(collector.exporters['otlp/jaeger'].endpoint).toBe('jaeger:4317');
    const [tempo] = load(join(DEPLOY, 'otel-collector.tempo.yaml'));
    expect(tempo.service.pipelines.traces.exporters).toEqual(['otlp/jaeger', 'otlp/tempo']);
    expect(Object.keys(tempo.exporters)).toEqual(['otlp/tempo']);
  });

  it('docker-compose: brokers, databases, collector, Jaeger and the five services, whose variables are the ones the code reads', () => {
    const [compose] = load(join(DEPLOY, 'docker-compose.yml'));
    for (const name of [...SERVICES, 'postgres', 'redis', 'rabbitmq', 'nats', 'kafka', 'otel-collector', 'jaeger']) {
      expect(compose.services, name).toHaveProperty([name]);
    }
    for (const name of SERVICES) {
      const service = compose.services[name];
      expect(service.environment.OTEL_SERVICE_NAME).toBe(name);
      expect(unknownVariables(Object.keys(service.environment)), name).toEqual([]);
      expect(service.command.at(-1)).toBe(`sample/${name}/main.js`);
      // The services that use pg or ioredis start with the instrumentation preload.
      expect(service.command.includes('./sample/instrumentation.js')).toBe(['orders', 'inventory'].includes(name));
      expect(existsSync(join(ROOT, 'sample', name, 'main.ts'))).toBe(true);
    }
    expect(compose.services.gateway.environment.OTEL_EXPORTER_OTLP_ENDPOINT).toBe('http://otel-collector:4318');
    // Bind mounts point at files of the repository.
    for (const service of Object.values(compose.services) as Array<{ volumes?: string[] }>) {
      for (const volume of service.volumes ?? []) {
        expect(existsSync(join(DEPLOY, volume.split(':')[0]!)), volume).toBe(true);
      }
    }
    expect(existsSync(join(DEPLOY, compose.services.gateway.build.context, compose.services.gateway.build.dockerfile))).toBe(true);
    // The gateway calls orders over gRPC: a host:port target (no scheme) naming the orders service.
    const target = compose.services.gateway.environment.ORDERS_URL as string;
    expect(target).toMatch(/^[a-z-]+:\d+$/);
    expect(compose.services, target).toHaveProperty([target.split(':')[0]!]);
  });

  it('the Dockerfile puts the proto files where the compiled services read them', () => {
    const dockerfile = readFileSync(join(DEPLOY, 'Dockerfile'), 'utf8');
    // The build stage copies sample/proto beside the compiled sample, which the runtime stage copies as sample/.
    expect(dockerfile).toMatch(/cp -r sample\/proto \.build\/sample\//);
    expect(dockerfile).toMatch(/COPY --from=build \/app\/\.build\/sample \.\/sample/);
    expect(readFileSync(join(ROOT, 'sample/shared/contracts.ts'), 'utf8')).toContain("new URL('../proto/orders.proto', import.meta.url)");
    expect(existsSync(join(ROOT, 'sample/proto/orders.proto'))).toBe(true);
  });

  it('Kubernetes: orders with the collector as an agent in its pod; env names match the code and the agent config', () => {
    const docs = load(join(DEPLOY, 'k8s', 'orders.yaml'));
    expect(docs.map((doc) => doc.kind)).toEqual(['ConfigMap', 'Deployment', 'Service']);
    const [configMap, deployment] = docs;
    const [app, agent] = deployment.spec.template.spec.containers;
    const env = (container: any): Record<string, any> => Object.fromEntries(container.env.map((e: any) => [e.name, e]));
    expect(unknownVariables(Object.keys(env(app)))).toEqual([]);
    expect(env(app).OTEL_SERVICE_NAME.value).toBe('orders');
    expect(env(app).ORDERS_PORT.value).toBe(String(app.ports[0].containerPort));
    // The app exports to the agent in its pod, which listens there.
    const [agentConfig] = parseAllDocuments(configMap.data['agent.yaml']).map((doc) => doc.toJS());
    expect(new URL(env(app).OTEL_EXPORTER_OTLP_ENDPOINT.value).host).toBe(agentConfig.receivers.otlp.protocols.http.endpoint);
    expect(agentConfig.service.pipelines.traces.processors).not.toContain('tail_sampling');
    // Every ${env:X} of the agent config is set on the agent container.
    const placeholders = [...configMap.data['agent.yaml'].matchAll(/\$\{env:([A-Z0-9_]+)\}/g)].map((m: RegExpMatchArray) => m[1]);
    expect(placeholders.length).toBeGreaterThan(0);
    expect(placeholders.filter((name: string) => !(name in env(agent)))).toEqual([]);
    const mount = agent.volumeMounts[0];
    expect(agent.args).toEqual([`--config=${mount.mountPath}/agent.yaml`]);
    expect(deployment.spec.template.spec.volumes[0].configMap.name).toBe(configMap.metadata.name);
  });

  it('.env.example documents exactly the variables the services read', () => {
    const lines = readFileSync(join(ROOT, 'sample', '.env.example'), 'utf8').split('\n');
    const documented = lines.map((line) => /^#?\s*([A-Z][A-Z0-9_]+)=/.exec(line)?.[1]).filter((name): name is string => name !== undefined);
    expect([...serviceVariables].filter((name) => !documented.includes(name))).toEqual([]);
    expect(unknownVariables(documented).filter((name) => name !== 'TRACE_VIEWER_PORT')).toEqual([]);
  });
});

const noBrowser = browserUnavailableReason();
if (noBrowser) {
  console.warn(`sample browser test skipped: ${noBrowser}`);
}

describe.skipIf(noBrowser !== undefined)('the declined order in the trace viewer (headless Chromium)', () => {
  let viewer: TraceViewer;
  let browser: Browser;
  let page: Page;
  let declined: ReceivedTrace;

  beforeAll(async () => {
    // The viewer gets exactly what the five services sent: every OTLP request, replayed as is.
    viewer = await startTraceViewer({ port: 0 });
    for (const request of receiver.requests) {
      const response = await fetch(viewer.otlpUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: request.body,
      });
      expect(response.status).toBe(200);
    }
    declined = traceOf(402);
    browser = await launchBrowser();
    page = await browser.context.newPage();
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await viewer?.close();
  });

  it('opens the declined order: a waterfall with all five services and the compensations, then a screenshot', async () => {
    const traceId = declined.spans[0]!.traceId;
    await page.goto(viewer.url);
    await page.locator(`tr.trace-row[data-trace-id="${traceId}"] a.root-name`).click();
    await page.waitForSelector('.span-row');
    const rows = await page.$$eval('.span-row', (elements) =>
      elements.map((row) => {
        const { dataset } = row as unknown as { dataset: Record<string, string> };
        return {
          service: dataset.service!,
          depth: Number(dataset.depth),
          name: row.querySelector('.span-name')!.textContent!,
          error: row.querySelector('.error-badge') !== null,
        };
      }),
    );
    expect(rows).toHaveLength(declined.spans.length);
    expect(new Set(rows.map((row) => row.service))).toEqual(new Set(SERVICES));
    // The gRPC hop: the gateway's CLIENT span (ERROR: FAILED_PRECONDITION) right under its request,
    // the orders SERVER span (not an error) right under that, the saga under the server span.
    expect(rows.slice(0, 3).map(({ service, depth, name }) => [service, depth, name])).toEqual([
      ['gateway', 0, 'POST /orders'],
      ['gateway', 1, PLACE_ORDER],
      ['orders', 2, PLACE_ORDER],
    ]);
    expect(rows.slice(0, 3).map((row) => row.error)).toEqual([false, true, false]);
    expect(rows.find((row) => row.name === 'saga place-order')?.depth).toBe(3);
    const compensations = rows.filter((row) => row.name.startsWith('saga.compensation ')).map((row) => row.name);
    expect(compensations).toEqual(['saga.compensation charge', 'saga.compensation reserve', 'saga.compensation create']);
    expect(rows.some((row) => row.name === 'saga.compensate place-order')).toBe(true);
    expect(rows.find((row) => row.name === 'saga.step charge')?.error).toBe(true);
    await page.screenshot({ path: join(ROOT, '.build', 'sample-declined-order.png'), fullPage: true });
  });

  it('shows the log lines the sample printed for the trace under the waterfall, each naming the span it was written in', async () => {
    const traceId = declined.spans[0]!.traceId;
    // What scripts/sample.mjs gives its viewer: the services' lines that carry this trace id.
    const printed = run.output.split('\n').filter((line) => /^ {5}\[\w+\] /.test(line) && line.includes(`trace_id=${traceId} `));
    expect(printed.length).toBeGreaterThanOrEqual(5);
    viewer.store.addLogs(
      printed.map((line, index) => {
        const [, service, text] = /^ {5}\[(\w+)\] (.*)$/.exec(line)!;
        const spanId = / span_id=([0-9a-f]{16})/.exec(line)![1]!;
        return { traceId, spanId, service: service!, severity: /^([A-Z]+)/.exec(text!)![1]!, timeUnixNano: String(index + 1), body: text! };
      }),
    );
    await page.goto(`${viewer.url.replace(/\/$/, '')}/#/trace/${traceId}`);
    await page.waitForSelector('.log-row');
    const logs = await page.$$eval('.log-row', (elements) => elements.map((row) => Array.from(row.querySelectorAll('td'), (cell) => (cell as { textContent: string | null }).textContent ?? '')));
    expect(logs).toHaveLength(printed.length);
    const byId = new Map(declined.spans.map((span) => [span.spanId, span.name]));
    logs.forEach(([, service, severity, spanName, body], index) => {
      expect(printed[index]).toContain(`[${service}] ${body}`);
      expect(['LOG', 'WARN']).toContain(severity);
      expect(spanName).toBe(byId.get(/ span_id=([0-9a-f]{16})/.exec(printed[index]!)![1]!));
    });
    expect(logs.find(([, service, severity]) => service === 'payment' && severity === 'WARN')?.[4]).toMatch(/card ending 0002 declined/);
  });
});

