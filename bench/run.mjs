// `npm run bench`: the cost of tracing, as RATIOS measured within one run, with the
// configurations interleaved (A, B, C, A, B, C, ...; warm-up excluded). Every configuration runs
// in its own process; load comes from separate processes; spans go over OTLP/HTTP to a local
// receiver process. Prints a table and writes bench/results/latest.json and latest.md.
//
//   node bench/run.mjs [--quick] [--only http-express,nats-rr,...] [--rounds 3] [--seconds 4]
//                      [--warmup 3] [--msg-seconds 4] [--outage-seconds 30] [--connections 16]
//                      [--concurrency 16] [--node PATH|22.15.0] [--node-flags "..."]
//                      [--semi-space MB|auto] [--max-semi-space-size MB] [--list]
//                      [--features redaction,enhancers,metrics|all]
//
// The processes under test run on the project's Node (the `node` devDependency, Node 24) unless
// --node names another; the load generator and the receiver always run on the project's Node.
//
// Exits non-zero only when a scenario could not run (a broker down, an app that did not start);
// a slow result is a result, not a failure.
import { cpus, loadavg, totalmem } from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ALL_HTTP_CONFIGS, ALL_MSG_CONFIGS, FEATURES, HTTP_CONFIGS, MSG_CONFIGS, PG_CONFIGS } from './lib/configs.mjs';
import { buildFeatureCosts } from './lib/features.mjs';
import { startChild, startChildren } from './lib/ipc.mjs';
import { startKafkaBroker } from './lib/kafka.mjs';
import { PG_URL, preparePg } from './lib/pg-setup.mjs';
import { snapshotLibrary } from './lib/snapshot.mjs';
import { projectNode, resolveNode } from './lib/runtime.mjs';
import { median, sum } from './lib/stats.mjs';
import { renderMarkdown } from './lib/report.mjs';
import { buildSummary, evaluateTargets, renderTargets } from './lib/targets.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const SCENARIOS = {
  'http-express': { kind: 'http', framework: 'express', title: 'HTTP, express' },
  'http-fastify': { kind: 'http', framework: 'fastify', title: 'HTTP, fastify' },
  'http-pg': { kind: 'http', framework: 'express', route: 'pg', title: 'HTTP, express, a PostgreSQL read (pg Pool) + 20-item list' },
  'nats-rr': { kind: 'msg', transport: 'nats', mode: 'rr', title: 'NATS request-reply' },
  'rmq-rr': { kind: 'msg', transport: 'rmq', mode: 'rr', title: 'RabbitMQ request-reply' },
  'tcp-rr': {
    kind: 'msg',
    transport: 'tcp',
    mode: 'rr',
    labels: {
      untraced: 'Nest TCP (ServerTCP / ClientTCP), untraced',
      floor: 'floor: Nest TCP + context + bare CLIENT/SERVER spans, context in packet metadata',
      'otel-nest': 'otel-nest OtelServerTCP / OtelClientTCP, 100%',
      'otel-nest-noi': 'otel-nest OtelServerTCP / OtelClientTCP, 100%, globalInterceptor: false',
    },
    title: 'TCP request-reply (Nest TCP transport, 127.0.0.1)',
  },
  'redis-rr': {
    kind: 'msg',
    transport: 'redis',
    mode: 'rr',
    labels: {
      untraced: 'Nest Redis (ServerRedis / ClientRedis), untraced',
      floor: 'floor: Nest Redis + context + bare PRODUCER/CONSUMER spans, context in packet metadata',
      'otel-nest': 'otel-nest OtelServerRedis / OtelClientRedis, 100%',
      'otel-nest-noi': 'otel-nest OtelServerRedis / OtelClientRedis, 100%, globalInterceptor: false',
    },
    title: 'Redis pub/sub request-reply (127.0.0.1:6379)',
  },
  'mqtt-rr': {
    kind: 'msg',
    transport: 'mqtt',
    mode: 'rr',
    labels: {
      untraced: 'Nest MQTT (ServerMqtt / ClientMqtt), MQTT 5, untraced',
      floor: 'floor: Nest MQTT + context + bare PRODUCER/CONSUMER spans, context in MQTT 5 user properties',
      'otel-nest': 'otel-nest OtelServerMqtt / OtelClientMqtt, 100%',
      'otel-nest-noi': 'otel-nest OtelServerMqtt / OtelClientMqtt, 100%, globalInterceptor: false',
    },
    title: 'MQTT 5 request-reply (Mosquitto 127.0.0.1:1883)',
  },
  'rmq-emit': { kind: 'msg', transport: 'rmq', mode: 'emit', title: 'RabbitMQ emit + consume' },
  'kafka-emit': { kind: 'msg', transport: 'kafka', mode: 'emit', title: 'Kafka emit + consume' },
  'grpc-unary': {
    kind: 'msg',
    transport: 'grpc',
    mode: 'rr',
    apps: { server: 'apps/grpc-server.mjs', client: 'apps/grpc-client.mjs' },
    labels: {
      untraced: 'Nest gRPC (ServerGrpc / ClientGrpcProxy), untraced',
      floor: 'floor: Nest gRPC + context + bare CLIENT/SERVER spans, traceparent in metadata',
      'otel-nest': 'otel-nest OtelServerGrpc / OtelClientGrpc, 100%',
    },
    title: 'gRPC unary (Nest ServerGrpc / ClientGrpcProxy)',
  },
  outage: { kind: 'outage', framework: 'express', title: 'Exporter outage (express, otel-nest 100%)' },
};

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    rounds: { type: 'string' },
    seconds: { type: 'string' },
    warmup: { type: 'string' },
    'msg-seconds': { type: 'string' },
    'outage-seconds': { type: 'string' },
    connections: { type: 'string' },
    concurrency: { type: 'string' },
    configs: { type: 'string' },
    features: { type: 'string' },
    node: { type: 'string' },
    'node-flags': { type: 'string' },
    'max-semi-space-size': { type: 'string' },
    'semi-space': { type: 'string' },
    list: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (args.help || args.list) {
  console.log('Scenarios:');
  for (const [id, s] of Object.entries(SCENARIOS)) console.log(`  ${id.padEnd(14)} ${s.title}`);
  console.log('\nHTTP configurations (--configs, A is always measured first, as the base):');
  for (const c of ALL_HTTP_CONFIGS) console.log(`  ${c.id.padEnd(14)} ${c.label}`);
  console.log(`\nRealistic route (http-pg): ${PG_CONFIGS.map((c) => c.id).join(', ')}. Messaging: ${ALL_MSG_CONFIGS.map((c) => c.id).join(', ')}.`);
  console.log('\nFeatures (--features a,b | all; their configurations are added to the HTTP and messaging runs):');
  for (const [id, f] of Object.entries(FEATURES)) console.log(`  ${id.padEnd(14)} HTTP ${f.http.join(', ')}${f.msg.length ? `; messaging ${f.msg.join(', ')}` : ''}`);
  console.log('\nOptions: --quick --only a,b --configs A,B,... --rounds N --seconds S --warmup S --msg-seconds S --outage-seconds S --connections N --concurrency N');
  console.log('         --node PATH|X.Y.Z (Node of the processes under test) --node-flags "..." (their flags)');
  console.log('         --semi-space MB|auto (young generation pinned, default 16; auto: V8 sizes it) --max-semi-space-size MB (auto, capped)');
  console.log('         --features redaction,enhancers,metrics|all (the feature configurations, not run by default)');
  process.exit(0);
}

const featureIds = args.features === 'all' ? Object.keys(FEATURES) : (args.features ?? '').split(',').map((f) => f.trim()).filter(Boolean);
for (const id of featureIds) {
  if (!FEATURES[id]) {
    console.error(`Unknown feature "${id}". Known: ${Object.keys(FEATURES).join(', ')}, all.`);
    process.exit(2);
  }
}
const unique = (ids) => [...new Set(ids)];
const httpConfigIds = unique([
  ...(args.configs ? ['A', ...args.configs.split(',').map((c) => c.trim()).filter((c) => c && c !== 'A')] : HTTP_CONFIGS.map((c) => c.id)),
  ...featureIds.flatMap((id) => FEATURES[id].http),
]);
/** Messaging: the default four, then the features' (otel-nest-metrics). */
const msgConfigs = unique([...MSG_CONFIGS.map((c) => c.id), ...featureIds.flatMap((id) => FEATURES[id].msg)]).map((id) => ALL_MSG_CONFIGS.find((c) => c.id === id));
const httpConfigs = httpConfigIds.map((id) => {
  const config = ALL_HTTP_CONFIGS.find((c) => c.id === id);
  if (!config) {
    console.error(`Unknown HTTP configuration "${id}". Known: ${ALL_HTTP_CONFIGS.map((c) => c.id).join(', ')}.`);
    process.exit(2);
  }
  return config;
});
const quick = args.quick;
const num = (v, fallback) => (v === undefined ? fallback : Number(v));
const opts = {
  quick,
  rounds: Math.max(3, num(args.rounds, 3)),
  seconds: num(args.seconds, quick ? 0.75 : 4),
  warmup: num(args.warmup, quick ? 0.5 : 2),
  msgSeconds: num(args['msg-seconds'], quick ? 0.75 : 3),
  outageSeconds: num(args['outage-seconds'], quick ? 3 : 30),
  connections: num(args.connections, 16),
  concurrency: num(args.concurrency, 16),
  httpConfigs: httpConfigIds,
  msgConfigs: msgConfigs.map((c) => c.id),
  features: featureIds,
  nodeFlags: [...youngGenerationFlags(), ...(args['node-flags'] ?? '').split(/\s+/).filter(Boolean)],
};

/**
 * The young generation of every process under test is pinned (min = max semi-space, 16 MB by
 * default), so that configurations are compared at equal GC settings: left to itself, V8 grows
 * the new space of one process to 128 MB and leaves another's at 16 MB, which moves CPU per
 * request by more than the context floor costs (measured, see README). `--semi-space auto` is
 * V8's own sizing, as users run it (the RSS experiments); `--max-semi-space-size MB` caps it.
 */
function youngGenerationFlags() {
  if (args['max-semi-space-size']) return [`--max-semi-space-size=${Number(args['max-semi-space-size'])}`];
  const pin = args['semi-space'] ?? '16';
  if (pin === 'auto') return [];
  if (!(Number(pin) > 0)) {
    console.error(`--semi-space ${pin}: give a size in MB or "auto".`);
    process.exit(2);
  }
  return [`--min-semi-space-size=${Number(pin)}`, `--max-semi-space-size=${Number(pin)}`];
}
let runtime;
try {
  runtime = resolveNode(args.node);
} catch (err) {
  console.error(err.message);
  process.exit(2);
}
/**
 * How every process under test is started: the chosen Node, --expose-gc, the experiment's flags,
 * and the hook that loads the library from this run's copy of dist/ (lib/snapshot.mjs).
 */
const snapshotHook = join(here, 'lib', 'snapshot-hook.mjs');
const underTest = (execArgv = []) => ({
  execPath: runtime.execPath,
  execArgv: ['--expose-gc', ...opts.nodeFlags, '--import', snapshotHook, ...execArgv],
});
const selected = args.only ? args.only.split(',').map((s) => s.trim()).filter(Boolean) : Object.keys(SCENARIOS);
for (const id of selected) {
  if (!SCENARIOS[id]) {
    console.error(`Unknown scenario "${id}". Known: ${Object.keys(SCENARIOS).join(', ')}.`);
    process.exit(2);
  }
}

const log = (msg) => process.stderr.write(`[bench +${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const MB = 1024 * 1024;
const started = Date.now();

/** A port nothing listens on: the exporter gets "connection refused". */
async function closedPortUrl() {
  const server = createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return `http://127.0.0.1:${port}/v1/traces`;
}

async function receiverCounts(receiver, service) {
  const { services, metrics } = await receiver.request('counts');
  return { ...(services[service] ?? { spans: 0, requests: 0, bytes: 0 }), metrics: metrics?.[service] ?? { requests: 0, dataPoints: 0 } };
}

/** Where the metrics configurations push (the receiver answers `/v1/metrics` with 200 and counts). */
const metricsUrl = (receiver) => receiver.info.url.replace(/\/v1\/traces$/, '/v1/metrics');

// ---------------------------------------------------------------------------------------------
// HTTP

function httpSample(before, after, load) {
  const handled = after.handled - before.handled;
  const cpuUs = after.cpu.user + after.cpu.system - before.cpu.user - before.cpu.system;
  return { ...load, handled, cpuUs, ...gcSample(before.gc, after.gc) };
}

/** JS heap allocation and GC work between two marks (lib/memory.mjs). */
function gcSample(before, after) {
  if (!before || !after) return {};
  return {
    allocatedBytes: after.allocatedBytes - before.allocatedBytes,
    scavenges: after.scavenges - before.scavenges,
    markSweeps: after.markSweeps - before.markSweeps,
    gcUs: after.gcUs - before.gcUs,
  };
}

/** Per-request (per-message) memory figures of a configuration's samples. */
function memoryFigures(s, count) {
  const n = sum(s.map(count));
  return {
    allocKBPerReq: sum(s.map((x) => x.allocatedBytes ?? 0)) / 1024 / n,
    scavengesPer1kReq: (1000 * sum(s.map((x) => x.scavenges ?? 0))) / n,
    markSweeps: sum(s.map((x) => x.markSweeps ?? 0)),
    gcUsPerReq: sum(s.map((x) => x.gcUs ?? 0)) / n,
  };
}

/** The attribute keys of a sampled span from the receiver (to compare a floor's span with B's). */
async function spanShape(receiver, service) {
  const spans = await receiver.request('samples', { service });
  const span = spans.find((x) => x.scope !== '@opentelemetry/instrumentation-pg') ?? spans[0];
  return span ? { name: span.name, kind: span.kind, keys: Object.keys(span.attributes).sort() } : undefined;
}

async function runHttp(scenario, shared) {
  const { framework } = scenario;
  const runId = `${scenario.id}-${process.pid}`;
  const pg = scenario.route === 'pg';
  const configs = pg ? PG_CONFIGS : httpConfigs;
  const routeEnv = pg ? { BENCH_ROUTE: 'pg', BENCH_PG_URL: PG_URL } : {};
  if (pg) await preparePg();
  log(`${scenario.id}: starting ${configs.length} app processes`);
  const apps = await startChildren(
    configs.map((c) => () =>
      startChild(join(here, 'apps/http-app.mjs'), {
        name: `${scenario.id}/${c.id}`,
        env: {
          ...c.env,
          ...routeEnv,
          BENCH_FRAMEWORK: framework,
          BENCH_SERVICE: `${runId}-${c.id}`,
          BENCH_OTLP_URL: shared.receiver.info.url,
          BENCH_OTLP_METRICS_URL: metricsUrl(shared.receiver),
          // For otel-nest/register (the pg configuration's preload).
          OTEL_SERVICE_NAME: `${runId}-${c.id}`,
          OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: shared.receiver.info.url,
        },
        ...underTest(c.execArgv(here)),
      }),
    ),
  );
  try {
    const url = (i) => `${apps[i].info.url}42`;
    const loadSeconds = configs.map(() => 0);
    log(`${scenario.id}: warm-up ${opts.warmup}s per config`);
    for (let i = 0; i < configs.length; i++) {
      const r = await shared.loader.request('run', { url: url(i), seconds: opts.warmup, connections: opts.connections });
      loadSeconds[i] += r.seconds;
    }
    const samples = configs.map(() => []);
    for (let round = 0; round < opts.rounds; round++) {
      log(`${scenario.id}: round ${round + 1}/${opts.rounds}`);
      for (let i = 0; i < configs.length; i++) {
        const before = await apps[i].request('mark');
        const load = await shared.loader.request('run', { url: url(i), seconds: opts.seconds, connections: opts.connections });
        const after = await apps[i].request('mark');
        loadSeconds[i] += load.seconds;
        samples[i].push(httpSample(before, after, load));
      }
    }
    const endStats = [];
    for (const app of apps) endStats.push(await app.request('stats'));
    for (const app of apps) await app.request('flush');
    await sleep(300);
    const results = [];
    for (let i = 0; i < configs.length; i++) {
      const s = samples[i];
      const received = await receiverCounts(shared.receiver, `${runId}-${configs[i].id}`);
      const a = samples[0];
      const ratioPerRound = (f) => s.map((x, r) => f(x) / f(a[r]));
      const rpsRatios = ratioPerRound((x) => x.rps);
      const stats = endStats[i];
      results.push({
        id: configs[i].id,
        label: configs[i].label,
        rps: median(s.map((x) => x.rps)),
        p50Ms: median(s.map((x) => x.p50)),
        p99Ms: median(s.map((x) => x.p99)),
        rpsRatio: median(rpsRatios),
        rpsRatioMin: Math.min(...rpsRatios),
        rpsRatioMax: Math.max(...rpsRatios),
        p50Ratio: median(ratioPerRound((x) => x.p50)),
        p99Ratio: median(ratioPerRound((x) => x.p99)),
        cpuUsPerRequest: sum(s.map((x) => x.cpuUs)) / sum(s.map((x) => x.handled)),
        errors: sum(s.map((x) => x.errors + x.non2xx)),
        handledTotal: stats.handled,
        spansReceived: received.spans,
        spansPerSecond: received.spans / loadSeconds[i],
        spansPerRequest: received.spans / stats.handled,
        metricExports: received.metrics,
        dropped: stats.dropped,
        failedSpans: stats.failedSpans,
        rssMB: stats.rss / MB,
        maxRssMB: stats.maxRss / MB,
        rssAfterGcMB: stats.rssAfterGc / MB,
        heapTotalMB: stats.heapTotal / MB,
        heapAfterGcMB: stats.heapUsedAfterGc / MB,
        newSpaceMB: stats.newSpaceMB,
        oldSpaceMB: stats.oldSpaceMB,
        externalMB: stats.external / MB,
        ...memoryFigures(s, (x) => x.handled),
        cpuUsPerRequestByRound: s.map((x) => x.cpuUs / x.handled),
        span: await spanShape(shared.receiver, `${runId}-${configs[i].id}`),
        // The first spans the receiver kept: B-enh's show the enhancer spans (`guard AllowGuard`, ...).
        sampledSpanNames: (await shared.receiver.request('samples', { service: `${runId}-${configs[i].id}` })).map((x) => x.name),
        rounds: s,
      });
    }
    const a = results[0];
    for (const r of results) {
      r.cpuRatio = r.cpuUsPerRequest / a.cpuUsPerRequest;
      r.rssDeltaMB = r.rssMB - a.rssMB;
      r.rssAfterGcDeltaMB = r.rssAfterGcMB - a.rssAfterGcMB;
      r.heapAfterGcDeltaMB = r.heapAfterGcMB - a.heapAfterGcMB;
    }
    const aRps = samples[0].map((x) => x.rps);
    return {
      kind: 'http',
      framework,
      route: scenario.route ?? 'orders',
      configs: results,
      noise: { untracedRpsSpread: (Math.max(...aRps) - Math.min(...aRps)) / median(aRps) },
    };
  } finally {
    await Promise.all(apps.map((a) => a.stop()));
  }
}

// ---------------------------------------------------------------------------------------------
// Messaging

async function runMsg(scenario, shared) {
  const { transport, mode } = scenario;
  const extraEnv = {};
  if (transport === 'kafka') {
    shared.kafka ??= await startKafkaBroker();
    extraEnv.BENCH_KAFKA_BROKERS = shared.kafka.brokers.join(',');
  }
  const runId = `${scenario.id}-${process.pid}`;
  log(`${scenario.id}: starting servers and clients`);
  const pairs = msgConfigs.map((config) => ({ config }));
  try {
    const envOf = (c) => ({
      ...extraEnv,
      BENCH_TRANSPORT: transport,
      BENCH_TRACING: c.tracing,
      ...(c.env ?? {}),
      BENCH_PREFIX: `otel-nest-bench.${runId}.${c.id}`,
      BENCH_OTLP_URL: shared.receiver.info.url,
      BENCH_OTLP_METRICS_URL: metricsUrl(shared.receiver),
    });
    // Servers first (their queues and subscriptions exist before a client sends), in parallel.
    const servers = await startChildren(
      pairs.map((pair) => () =>
        startChild(join(here, scenario.apps?.server ?? 'apps/msg-server.mjs'), {
          name: `${scenario.id}/${pair.config.id}/server`,
          env: { ...envOf(pair.config), BENCH_SERVICE: `${runId}-${pair.config.id}-server` },
          ...underTest(),
          onMessage: (m) => {
            if (m?.type === 'progress') pair.client?.send({ type: 'consumed', consumed: m.consumed });
          },
        }),
      ),
    );
    servers.forEach((server, i) => (pairs[i].server = server));
    const clients = await startChildren(
      pairs.map((pair) => () =>
        startChild(join(here, scenario.apps?.client ?? 'apps/msg-client.mjs'), {
          name: `${scenario.id}/${pair.config.id}/client`,
          // gRPC, TCP: the server listens on a port of its choosing and reports it when ready.
          env: {
            ...envOf(pair.config),
            BENCH_SERVICE: `${runId}-${pair.config.id}-client`,
            ...(pair.server.info.url ? { BENCH_GRPC_URL: pair.server.info.url, BENCH_SERVER_URL: pair.server.info.url } : {}),
          },
          ...underTest(),
        }),
      ),
    );
    clients.forEach((client, i) => (pairs[i].client = client));
    const segment = async (pair, seconds) => {
      const before = await pair.server.request('mark');
      let load;
      if (mode === 'rr') {
        load = await pair.client.request('requestReply', { seconds, concurrency: opts.concurrency });
      } else {
        const e = await pair.client.request('emit', { seconds, startConsumed: before.consumed, window: 256 });
        const lat = await pair.server.request('takeEventLatencies');
        load = { messages: e.consumed, seconds: e.seconds, rate: e.consumed / e.seconds, p50: lat.p50, p99: lat.p99, errors: e.errors + (e.emitted - e.consumed), clientCpuUs: e.clientCpuUs };
      }
      const after = await pair.server.request('mark');
      const serverCpuUs = after.cpu.user + after.cpu.system - before.cpu.user - before.cpu.system;
      return { ...load, serverCpuUs, ...gcSample(before.gc, after.gc) };
    };
    log(`${scenario.id}: warm-up`);
    for (const pair of pairs) {
      await segment(pair, opts.warmup);
      if (mode === 'emit') await pair.server.request('takeEventLatencies');
    }
    const samples = pairs.map(() => []);
    for (let round = 0; round < opts.rounds; round++) {
      log(`${scenario.id}: round ${round + 1}/${opts.rounds}`);
      for (let i = 0; i < pairs.length; i++) samples[i].push(await segment(pairs[i], opts.msgSeconds));
    }
    const stats = [];
    for (const pair of pairs) {
      stats.push({ server: await pair.server.request('stats'), client: await pair.client.request('stats') });
      await pair.client.request('flush');
      await pair.server.request('flush');
    }
    await sleep(300);
    const results = [];
    for (let i = 0; i < pairs.length; i++) {
      const s = samples[i];
      const base = samples[0];
      const ratioPerRound = (f) => s.map((x, r) => f(x) / f(base[r]));
      const rateRatios = ratioPerRound((x) => x.rate);
      const serverSpans = await receiverCounts(shared.receiver, `${runId}-${pairs[i].config.id}-server`);
      const clientSpans = await receiverCounts(shared.receiver, `${runId}-${pairs[i].config.id}-client`);
      const messages = sum(s.map((x) => x.messages));
      results.push({
        id: pairs[i].config.id,
        label: scenario.labels?.[pairs[i].config.id] ?? pairs[i].config.label,
        rate: median(s.map((x) => x.rate)),
        p50Ms: median(s.map((x) => x.p50)),
        p99Ms: median(s.map((x) => x.p99)),
        rateRatio: median(rateRatios),
        rateRatioMin: Math.min(...rateRatios),
        rateRatioMax: Math.max(...rateRatios),
        p50Ratio: median(ratioPerRound((x) => x.p50)),
        p99Ratio: median(ratioPerRound((x) => x.p99)),
        cpuUsPerMessage: (sum(s.map((x) => x.serverCpuUs)) + sum(s.map((x) => x.clientCpuUs))) / messages,
        serverCpuUsPerMessage: sum(s.map((x) => x.serverCpuUs)) / messages,
        clientCpuUsPerMessage: sum(s.map((x) => x.clientCpuUs)) / messages,
        errors: sum(s.map((x) => x.errors)),
        spansReceived: { server: serverSpans.spans, client: clientSpans.spans },
        metricExports: { server: serverSpans.metrics, client: clientSpans.metrics },
        dropped: stats[i].server.dropped + stats[i].client.dropped,
        serverRssMB: stats[i].server.rss / MB,
        clientRssMB: stats[i].client.rss / MB,
        rssMB: (stats[i].server.rss + stats[i].client.rss) / MB,
        heapAfterGcMB: (stats[i].server.heapUsedAfterGc + stats[i].client.heapUsedAfterGc) / MB,
        // Server side only: the client's marks are its own segments (clientCpuUs).
        serverAllocKBPerMessage: memoryFigures(s, (x) => x.messages).allocKBPerReq,
        cpuUsPerMessageByRound: s.map((x) => (x.serverCpuUs + x.clientCpuUs) / x.messages),
        span: { server: await spanShape(shared.receiver, `${runId}-${pairs[i].config.id}-server`), client: await spanShape(shared.receiver, `${runId}-${pairs[i].config.id}-client`) },
        rounds: s,
      });
    }
    for (const r of results) {
      r.cpuRatio = r.cpuUsPerMessage / results[0].cpuUsPerMessage;
      r.rssDeltaMB = r.rssMB - results[0].rssMB;
      r.heapAfterGcDeltaMB = r.heapAfterGcMB - results[0].heapAfterGcMB;
    }
    return { kind: 'msg', transport, mode, configs: results };
  } finally {
    await Promise.all(pairs.flatMap((p) => [p.client?.stop(), p.server?.stop()]));
  }
}

// ---------------------------------------------------------------------------------------------
// Exporter outage

async function runOutage(scenario, shared) {
  const runId = `${scenario.id}-${process.pid}`;
  const slowReceiver = await startChild(join(here, 'lib/receiver.mjs'), { name: 'slow-receiver', execPath: projectNode(), env: { BENCH_RECEIVER_DELAY_MS: '2000' } });
  const configs = [
    { id: 'healthy', label: 'receiver healthy', url: shared.receiver.info.url, receiver: shared.receiver },
    { id: 'down', label: 'receiver down (connection refused)', url: await closedPortUrl() },
    { id: 'slow', label: 'receiver slow (answers after 2 s)', url: slowReceiver.info.url, receiver: slowReceiver },
  ];
  const B = HTTP_CONFIGS.find((c) => c.id === 'B');
  let apps = [];
  try {
    apps = await startChildren(
      configs.map((c) => () =>
        startChild(join(here, 'apps/http-app.mjs'), {
          name: `${scenario.id}/${c.id}`,
          env: { ...B.env, BENCH_FRAMEWORK: scenario.framework, BENCH_SERVICE: `${runId}-${c.id}`, BENCH_OTLP_URL: c.url },
          ...underTest(),
        }),
      ),
    );
    const url = (i) => `${apps[i].info.url}42`;
    log(`${scenario.id}: warm-up`);
    for (let i = 0; i < apps.length; i++) await shared.loader.request('run', { url: url(i), seconds: opts.warmup, connections: opts.connections });
    const startRss = [];
    for (const app of apps) {
      startRss.push((await app.request('mark')).rss);
      await app.request('resetMaxRss');
    }
    const perSegment = opts.outageSeconds / opts.rounds;
    const samples = apps.map(() => []);
    for (let round = 0; round < opts.rounds; round++) {
      log(`${scenario.id}: round ${round + 1}/${opts.rounds} (${perSegment.toFixed(0)} s per config)`);
      for (let i = 0; i < apps.length; i++) {
        const before = await apps[i].request('mark');
        const load = await shared.loader.request('run', { url: url(i), seconds: perSegment, connections: opts.connections });
        const after = await apps[i].request('mark');
        samples[i].push({ ...httpSample(before, after, load), rssMB: after.rss / MB });
      }
    }
    const results = [];
    for (let i = 0; i < apps.length; i++) {
      const stats = await apps[i].request('stats');
      const received = configs[i].receiver ? await receiverCounts(configs[i].receiver, `${runId}-${configs[i].id}`) : { spans: 0 };
      const s = samples[i];
      const ratioPerRound = (f) => s.map((x, r) => f(x) / f(samples[0][r]));
      results.push({
        id: configs[i].id,
        label: configs[i].label,
        rps: median(s.map((x) => x.rps)),
        rpsRatio: median(ratioPerRound((x) => x.rps)),
        p99Ratio: median(ratioPerRound((x) => x.p99)),
        cpuUsPerRequest: sum(s.map((x) => x.cpuUs)) / sum(s.map((x) => x.handled)),
        handled: stats.handled,
        spansReceivedSoFar: received.spans,
        exportedSpans: stats.exportedSpans,
        failedSpans: stats.failedSpans,
        failedExports: stats.failedExports,
        dropped: stats.dropped,
        queued: stats.queued,
        maxQueued: stats.maxQueued,
        maxQueueSize: stats.maxQueueSize,
        startRssMB: startRss[i] / MB,
        maxRssMB: stats.maxRss / MB,
        endRssMB: stats.rss / MB,
        rssGrowthMB: (stats.maxRss - startRss[i]) / MB,
        rssAfterEachRoundMB: s.map((x) => x.rssMB),
        rounds: s,
      });
    }
    return { kind: 'outage', framework: scenario.framework, seconds: opts.outageSeconds, configs: results };
  } finally {
    // No flush: the down/slow apps could not deliver anyway; SIGTERM after a short grace.
    await Promise.all(apps.map((a) => a.stop()));
    await slowReceiver.stop();
  }
}

// ---------------------------------------------------------------------------------------------

const machine = {
  cores: cpus().length,
  cpu: cpus()[0]?.model ?? 'unknown',
  memoryGB: Math.round(totalmem() / 1024 ** 3),
  node: runtime.version,
  nodeExecPath: runtime.execPath,
  orchestratorNode: process.version,
  nodeFlags: opts.nodeFlags,
  platform: `${process.platform} ${process.arch}`,
  loadAverageAtStart: loadavg().map((x) => Number(x.toFixed(2))),
};
log(`node ${machine.node}, ${machine.cores} cores, load average ${machine.loadAverageAtStart.join(' ')}; scenarios: ${selected.join(', ')}`);

const shared = {};
const results = {};
let failed = 0;
let snapshot;
try {
  snapshot = snapshotLibrary();
  process.env.BENCH_LIB_SNAPSHOT = snapshot.dir;
  shared.library = libraryState();
  shared.receiver = await startChild(join(here, 'lib/receiver.mjs'), { name: 'receiver', execPath: projectNode() });
  shared.loader = await startChild(join(here, 'lib/loader.mjs'), { name: 'loader', execPath: projectNode() });
  for (const id of selected) {
    const scenario = { id, ...SCENARIOS[id] };
    const t0 = Date.now();
    try {
      const run = { http: runHttp, msg: runMsg, outage: runOutage }[scenario.kind];
      results[id] = { title: scenario.title, ...(await run(scenario, shared)) };
    } catch (err) {
      failed++;
      results[id] = { title: scenario.title, kind: scenario.kind, error: String(err?.message ?? err).split('\n').slice(0, 12).join('\n') };
      log(`${id}: could not run: ${results[id].error}`);
    }
    results[id].wallSeconds = Math.round((Date.now() - t0) / 100) / 10;
  }
} catch (err) {
  console.error(`The benchmark could not start: ${err?.stack ?? err}`);
  process.exitCode = 1;
} finally {
  await shared.loader?.stop();
  await shared.receiver?.stop();
  await shared.kafka?.stop();
  snapshot?.remove();
}

machine.loadAverageAtEnd = loadavg().map((x) => Number(x.toFixed(2)));
/** Which library was measured: the commit, and whether lib/ had uncommitted changes (others edit it). */
function libraryState() {
  const git = (...a) => execFileSync('git', a, { cwd: join(here, '..'), encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  try {
    const dirty = git('status', '--porcelain', '--', 'lib').split('\n').filter(Boolean).length;
    return { commit: git('rev-parse', '--short', 'HEAD'), libFilesChanged: dirty };
  } catch {
    return undefined;
  }
}
const report = {
  node: runtime.version,
  date: new Date().toISOString(),
  machine,
  options: opts,
  library: shared.library,
  wallSeconds: Math.round((Date.now() - started) / 1000),
  scenarios: results,
};
report.summary = buildSummary(report.scenarios);
report.featureCosts = buildFeatureCosts(report.scenarios);
report.targets = evaluateTargets(report);
const markdown = renderMarkdown(report);
const resultsDir = join(here, 'results');
mkdirSync(resultsDir, { recursive: true });
writeFileSync(join(resultsDir, 'latest.json'), `${JSON.stringify(report, null, 2)}\n`);
writeFileSync(join(resultsDir, 'latest.md'), markdown);
console.log(markdown);
console.log(renderTargets(report.targets, { plain: true }));
log(`done in ${report.wallSeconds} s; wrote bench/results/latest.json and latest.md`);
if (failed > 0) process.exitCode = 1;
