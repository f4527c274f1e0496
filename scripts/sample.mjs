// `npm run sample`: runs the five-service e-commerce sample on this machine's brokers and databases,
// places a successful and a declined order, and prints both traces as trees, each followed by the
// log lines that belong to it: the services log with OtelConsoleLogger, whose lines inside a request
// end with trace_id=... span_id=...; they are read from the services' output, found by trace id, and
// given to the trace viewer too, which shows them under the trace.
//
//   npm run sample                 keeps the services and the trace viewer running until Ctrl-C
//   npm run sample -- --once       exits after the demo: 0 if both traces have the promised shape
//
// Spans go to the trace viewer of otel-nest/devtools, started here. With OTEL_EXPORTER_OTLP_ENDPOINT
// (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) set they go to that collector too: the services export to a
// small relay here that forwards every request to both. Settings: sample/.env if present, else the
// environment, else local defaults (sample/.env.example).
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, readFileSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { createConnection, createServer as createTcpServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BUILD = new URL('../.build/sample/', import.meta.url);
const ONCE = process.argv.includes('--once');
const SERVICES = ['inventory', 'payment', 'notification', 'orders', 'gateway'];
/** Services that use pg or ioredis, started with the instrumentation preload. */
const PRELOADED = new Set(['orders', 'inventory']);
const START_TIMEOUT_MS = 30_000;
/** The ids OtelConsoleLogger (text mode) ends a line with, inside a request. */
const LOG_IDS = / trace_id=([0-9a-f]{32}) span_id=([0-9a-f]{16})/;
/** Every service line with a trace id, in arrival order. */
const traceLogs = [];
const TRACE_TIMEOUT_MS = 15_000;

if (ONCE) {
  // unref: fires only if something hangs.
  setTimeout(() => fail(`The sample did not finish within 90 s.`), 90_000).unref();
}

const cleanups = [];
let quiet = false;
async function cleanup() {
  for (const task of cleanups.splice(0).reverse()) {
    await task().catch((error) => console.error(`cleanup: ${error.message}`));
  }
}
async function fail(message) {
  console.error(`\n${message}`);
  await cleanup();
  process.exit(1);
}

// ---------------------------------------------------------------------------------------------
console.log('> compile the sample: npx tsc -p sample/tsconfig.json');
const compiled = spawnSync('npx', ['tsc', '-p', 'sample/tsconfig.json'], { cwd: ROOT, stdio: 'inherit' });
if (compiled.status !== 0) {
  await fail(`Compiling the sample failed (exit ${compiled.status ?? compiled.signal}). Did you run npm run build first?`);
}
// tsc copies no .proto files; the compiled services read them from beside themselves.
cpSync(new URL('../sample/proto/', import.meta.url), new URL('proto/', BUILD), { recursive: true });

const envFile = fileURLToPath(new URL('../sample/.env', import.meta.url));
if (existsSync(envFile)) {
  process.loadEnvFile(envFile);
  console.log('> settings from sample/.env');
}
const env = process.env;
env.GATEWAY_PORT ??= String(await portFor(3000));
env.ORDERS_PORT ??= String(await portFor(3001));
const { config } = await import(new URL('shared/config.js', BUILD));
const { DECLINED_CARD } = await import(new URL('shared/contracts.js', BUILD));
const { formatTraceTree } = await import(new URL('tracing/trace-tree.js', BUILD));
const { checkPlacedOrder, checkDeclinedOrder } = await import(new URL('tracing/order-trace.checks.js', BUILD));

// ---------------------------------------------------------------------------------------------
console.log('> check the brokers and databases');
const COMPOSE = 'docker compose -f sample/deploy/docker-compose.yml up -d';
const unreachable = [];
for (const [name, url, defaultPort, variable, start] of [
  ['Redis', config.redis.url, 6379, 'REDIS_URL', `redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no\n    or: ${COMPOSE} redis`],
  ['RabbitMQ', config.rabbitmq.urls[0], 5672, 'RABBITMQ_URL', `rabbitmq-server -detached\n    or: ${COMPOSE} rabbitmq`],
  ['NATS', config.nats.servers[0], 4222, 'NATS_URL', `nats-server -a 127.0.0.1 -p 4222 &\n    or: ${COMPOSE} nats`],
  ...(env.KAFKA_BROKERS ? [['Kafka', `kafka://${config.kafka.brokers[0]}`, 9092, 'KAFKA_BROKERS', `unset KAFKA_BROKERS to use the local test broker, or: ${COMPOSE} kafka`]] : []),
]) {
  const { hostname, port } = new URL(url);
  if (!(await reachable(hostname.replace(/^\[|\]$/g, ''), Number(port || defaultPort)))) {
    unreachable.push(`${name} is not reachable at ${hostname}:${port || defaultPort} (${variable}). Start it with:\n    ${start}`);
  }
}
const pg = (await import('pg')).default;
const db = new pg.Client({ ...config.postgres, connectionTimeoutMillis: 3000 });
try {
  await db.connect();
  await db.query(readFileSync(new URL('../sample/db/schema.sql', import.meta.url), 'utf8'));
  console.log('  PostgreSQL: schema "shop" created, demo stock reset');
} catch (error) {
  unreachable.unshift(
    `PostgreSQL is not usable at ${config.postgres.connectionString.replace(/:[^:@/]*@/, ':***@')} (DATABASE_URL): ${error.message}. Start it with:\n` +
      `    pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n    or: ${COMPOSE} postgres`,
  );
} finally {
  await db.end().catch(() => {});
}
if (unreachable.length > 0) {
  await fail(unreachable.join('\n'));
}
console.log('  Redis, RabbitMQ, NATS: reachable');

if (env.KAFKA_BROKERS) {
  console.log(`  Kafka: ${env.KAFKA_BROKERS} (KAFKA_BROKERS)`);
} else {
  env.KAFKA_BROKERS = await startLocalKafka();
  // The local broker answers a fetch only when its max wait is over (see README).
  env.KAFKA_MAX_WAIT_MS ??= '50';
  console.log(`  Kafka: KAFKA_BROKERS is not set; started the local Kafka-protocol test broker on ${env.KAFKA_BROKERS}`);
}

// ---------------------------------------------------------------------------------------------
const { startTraceViewer } = await import('otel-nest/devtools');
const viewerPort = Number(env.TRACE_VIEWER_PORT ?? (ONCE ? 0 : 16686));
const viewer = await startTraceViewer({ port: viewerPort, maxTraces: 200 }).catch((error) => {
  console.log(`  ${error.message} Using a free port instead.`);
  return startTraceViewer({ port: 0, maxTraces: 200 });
});
cleanups.push(() => viewer.close());
const collector = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? (env.OTEL_EXPORTER_OTLP_ENDPOINT && `${env.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/$/, '')}/v1/traces`);
let otlpEndpoint = viewer.endpoint;
if (collector) {
  otlpEndpoint = await startRelay([collector, viewer.otlpUrl]);
  console.log(`> spans go to ${collector} (OTEL_EXPORTER_OTLP_ENDPOINT) and to the trace viewer ${viewer.url}`);
} else {
  console.log(`> spans go to the trace viewer ${viewer.url} (set OTEL_EXPORTER_OTLP_ENDPOINT for a collector)`);
}

/** Histogram figures worth a line: per service, the RED duration metrics by route, method or destination. */
const FIGURES = [
  ['http.server.request.duration', ['http.request.method', 'http.route', 'http.response.status_code']],
  ['rpc.server.call.duration', ['rpc.method', 'rpc.status_code']],
  ['messaging.process.duration', ['messaging.destination.name']],
];

// The services' metrics (OTLP/HTTP every second) come here: kept per service for the figures printed
// after each trace, and forwarded to the collector when there is one.
const metricsCollector = collector && collector.replace(/\/v1\/traces$/, '/v1/metrics');
const metricsSink = await startMetricsSink(metricsCollector);

// ---------------------------------------------------------------------------------------------
console.log(`> start ${SERVICES.join(', ')}`);
const children = SERVICES.map((name) => startService(name));
await Promise.all(children.map((child) => child.ready)).catch((error) => fail(error.message));
const gateway = `http://127.0.0.1:${config.gateway.port}`;
console.log(`> all five services are ready; gateway on ${gateway}`);

const [apiKey] = config.gateway.apiKeys.keys();
const ORDERS = [
  {
    title: 'A successful order',
    body: { sku: 'sku-espresso-beans', quantity: 2, cardNumber: '4242424242424242' },
    status: 201,
    check: checkPlacedOrder,
  },
  {
    title: `A declined order: test card ${DECLINED_CARD} → the saga compensates`,
    body: { sku: 'sku-grinder', quantity: 1, cardNumber: DECLINED_CARD },
    status: 402,
    check: checkDeclinedOrder,
  },
];

let failures = 0;
const links = [];
for (const [index, order] of ORDERS.entries()) {
  console.log(`\n${index + 1}. ${order.title}`);
  console.log(`   POST ${gateway}/orders  x-api-key: ${apiKey}  x-user-id: user-42  ${JSON.stringify(order.body)}`);
  const response = await post(`${gateway}/orders`, order.body, { 'x-api-key': apiKey, 'x-user-id': 'user-42' });
  console.log(`   → ${response.status} ${response.body}`);
  const traceId = response.headers['x-trace-id'];
  const orderId = safeJson(response.body)?.id;
  if (response.status !== order.status || typeof traceId !== 'string' || typeof orderId !== 'string') {
    console.log(`   ✗ expected ${order.status} with an order id and an x-trace-id header`);
    failures++;
    continue;
  }
  const { spans, checks } = await waitForTrace(traceId, (received) => order.check(received, orderId));
  console.log(`\n${formatTraceTree(spans).replace(/^/gm, '   ')}\n`);
  for (const { ok, description } of checks) {
    console.log(`   ${ok ? '✓' : '✗'} ${description}`);
    failures += ok ? 0 : 1;
  }
  const lines = traceLogs.filter((log) => log.traceId === traceId);
  console.log(`\n   log lines of this trace (${lines.length}, found by trace_id in the services' output):`);
  for (const log of lines) {
    console.log(`     [${log.service}] ${log.text}`);
  }
  // One export interval, so that this order's requests are in the figures.
  await sleep(1_500);
  console.log('\n   metrics so far (cumulative, from the services\' OTLP metrics):');
  for (const line of metricFigures(metricsSink.latest)) {
    console.log(`     ${line}`);
  }
  links.push(`${viewer.endpoint}/trace/${traceId}`);
  console.log(`   viewer: ${links.at(-1)}`);
}

console.log(`\nTrace viewer: ${viewer.url}`);
if (failures > 0) {
  console.error(`\n${failures} check(s) failed: the traces are not what the sample promises.`);
}
if (ONCE) {
  quiet = true;
  await cleanup();
  process.exit(failures > 0 ? 1 : 0);
}
console.log(`Services are running (gateway ${gateway}, API key ${apiKey}). Ctrl-C stops everything.`);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    console.log('\nstopping...');
    quiet = true;
    await cleanup();
    process.exit(0);
  });
}

// ---------------------------------------------------------------------------------------------

function startService(name) {
  const args = [
    ...(PRELOADED.has(name) ? ['--import', new URL('instrumentation.js', BUILD).href] : []),
    fileURLToPath(new URL(`${name}/main.js`, BUILD)),
  ];
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: {
      ...env,
      OTEL_SERVICE_NAME: name,
      OTEL_EXPORTER_OTLP_ENDPOINT: otlpEndpoint,
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: '',
      // Export within a fraction of a second (the default batch delay is 5 s), for the demo.
      OTEL_BSP_SCHEDULE_DELAY: env.OTEL_BSP_SCHEDULE_DELAY ?? '200',
      // RED metrics on (otel-nest's `metrics` option through its variables), every second, to the sink.
      OTEL_METRICS_EXPORTER: 'otlp',
      OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: `${metricsSink.url}/v1/metrics`,
      OTEL_METRIC_EXPORT_INTERVAL: env.OTEL_METRIC_EXPORT_INTERVAL ?? '1000',
      KAFKAJS_NO_PARTITIONER_WARNING: '1',
      NO_COLOR: '1',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} was not ready within ${START_TIMEOUT_MS / 1000} s:\n${output}`)), START_TIMEOUT_MS);
    const onLine = (line) => {
      output += `${line}\n`;
      const text = line.replace(/^\[Nest\] \d+\s+- .*?\s{2,}/, '');
      const ids = LOG_IDS.exec(line);
      if (ids) {
        // Printed after the trace it belongs to, and shown by the viewer under it.
        traceLogs.push({ service: name, traceId: ids[1], spanId: ids[2], text });
        viewer.store.addLogs([
          { traceId: ids[1], spanId: ids[2], service: name, timeUnixNano: `${BigInt(Date.now()) * 1_000_000n}`, severity: /^\s*([A-Z]+)/.exec(text)?.[1] ?? '', body: text.replace(LOG_IDS, '').replace(/ trace_flags=[0-9a-f]{2}/, '') },
        ]);
      } else if (!quiet && !/\[(InstanceLoader|RoutesResolver|RouterExplorer|NestFactory|NestApplication|NestMicroservice)\]| INFO \[/.test(line)) {
        // Nest's startup lines (modules, routes) and kafkajs' INFO lines are noise here, and so is
        // everything after the demo of --once.
        console.log(`   [${name}] ${text}`);
      }
      if (/\] ready: /.test(line)) {
        clearTimeout(timer);
        resolve();
      }
    };
    for (const stream of [child.stdout, child.stderr]) {
      let buffered = '';
      stream.setEncoding('utf8').on('data', (chunk) => {
        buffered += chunk;
        const lines = buffered.split('\n');
        buffered = lines.pop();
        lines.forEach(onLine);
      });
    }
    exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code ?? 'signal'}) before it was ready:\n${output}`));
    });
  });
  ready.catch(() => {});
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(killer);
    }
  });
  return { name, ready };
}

/** Polls the viewer until the trace passes its checks and has been quiet for 500 ms, or times out. */
async function waitForTrace(traceId, check) {
  const deadline = Date.now() + TRACE_TIMEOUT_MS;
  let count = -1;
  let quietSince = Date.now();
  for (;;) {
    const spans = viewer.store.spans(traceId);
    if (spans.length !== count) {
      count = spans.length;
      quietSince = Date.now();
    }
    const checks = check(spans);
    const passed = checks.every((c) => c.ok);
    if ((passed && Date.now() - quietSince >= 500) || Date.now() > deadline) {
      return { spans, checks };
    }
    await sleep(100);
  }
}

/** Starts the Kafka-protocol test broker (scripts/kafka-broker.mjs) and returns its address. */
async function startLocalKafka() {
  const { build } = await import('./kafka-broker.mjs');
  let binary;
  try {
    binary = build();
  } catch (error) {
    await fail(`${error.message}\nOr point KAFKA_BROKERS at a Kafka cluster (e.g. ${COMPOSE} kafka).`);
  }
  // --watch-stdin: the broker exits with this script, even if it is killed.
  const broker = spawn(binary, ['--watch-stdin', 'order.created', 'order.failed'], { stdio: ['pipe', 'pipe', 'ignore'] });
  cleanups.push(async () => {
    broker.kill('SIGTERM');
    await new Promise((resolve) => (broker.exitCode === null ? broker.once('exit', resolve) : resolve()));
  });
  return new Promise((resolve, reject) => {
    broker.stdout.setEncoding('utf8').once('data', (line) => resolve(line.trim()));
    broker.once('exit', (code) => reject(new Error(`The Kafka test broker exited (${code}) before it started.`)));
  });
}

/**
 * An OTLP/HTTP relay: every export request goes, unchanged, to each target. Answers with the first
 * target's (the collector's) response, so exporters see its errors and retry as they would.
 */
async function startRelay(targets) {
  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) {
      chunks.push(chunk);
    }
    const headers = Object.fromEntries(
      Object.entries(req.headers).filter(([key]) => !['host', 'connection', 'content-length', 'transfer-encoding'].includes(key)),
    );
    const body = Buffer.concat(chunks);
    const [first] = await Promise.allSettled(targets.map((url) => fetch(url, { method: 'POST', headers, body })));
    if (first.status === 'fulfilled') {
      res.writeHead(first.value.status, { 'content-type': first.value.headers.get('content-type') ?? 'application/json' });
      res.end(Buffer.from(await first.value.arrayBuffer()));
    } else {
      res.writeHead(502, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ code: 14, message: `collector unreachable: ${first.reason?.message}` }));
    }
  });
  return listenLocally(server);
}

/**
 * Receives the services' OTLP/HTTP (JSON) metrics: keeps the latest export of each service (the
 * points are cumulative) and forwards every request to `forwardTo` (the collector) when given.
 */
async function startMetricsSink(forwardTo) {
  const latest = new Map(); // service.name -> resourceMetrics[]
  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) {
      chunks.push(chunk);
    }
    const body = Buffer.concat(chunks);
    const request = safeJson(body.toString('utf8'));
    for (const resourceMetrics of request?.resourceMetrics ?? []) {
      const service = resourceMetrics.resource?.attributes?.find((a) => a.key === 'service.name')?.value?.stringValue;
      if (service) {
        latest.set(service, resourceMetrics);
      }
    }
    if (forwardTo) {
      await fetch(forwardTo, { method: 'POST', headers: { 'content-type': req.headers['content-type'] ?? 'application/json' }, body }).catch(() => {});
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{}');
  });
  return { url: await listenLocally(server), latest };
}

/** One line per series: `service  metric  series  n=…  p50≈… ms  errors=…`. */
function metricFigures(latest) {
  const lines = [];
  for (const service of SERVICES) {
    const metrics = (latest.get(service)?.scopeMetrics ?? []).flatMap((scope) => scope.metrics ?? []);
    for (const [name, keys] of FIGURES) {
      for (const point of metrics.find((m) => m.name === name)?.histogram?.dataPoints ?? []) {
        const attributes = Object.fromEntries((point.attributes ?? []).map((a) => [a.key, Object.values(a.value ?? {})[0]]));
        const series = keys.map((key) => attributes[key]).filter((v) => v !== undefined).join(' ');
        const error = attributes['error.type'] === undefined ? '' : `  error.type=${attributes['error.type']}`;
        lines.push(`${service.padEnd(12)} ${name.padEnd(28)} ${series.padEnd(40)} n=${Number(point.count)}  p50≈${median(point)} ms${error}`);
      }
    }
  }
  return lines.length > 0 ? lines : ['(no metrics received yet)'];
}

/** The upper bound (ms) of the bucket holding the median of a cumulative histogram point. */
function median(point) {
  const counts = (point.bucketCounts ?? []).map(Number);
  const bounds = point.explicitBounds ?? [];
  const half = Number(point.count) / 2;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i];
    if (seen >= half) {
      return i < bounds.length ? String(bounds[i] * 1000) : `>${bounds.at(-1) * 1000}`;
    }
  }
  return '?';
}

/** Listens on a free port of 127.0.0.1, closed at cleanup; resolves with its base URL. */
async function listenLocally(server) {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return `http://127.0.0.1:${server.address().port}`;
}

// node:http, not fetch: this script plays an outside client (curl), untraced.
function post(url, body, headers) {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const req = request(url, { method: 'POST', agent: false, headers: { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (chunk) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

function safeJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function reachable(host, port) {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port, timeout: 2000 });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
  });
}

/** `preferred` when it is free (and not --once), else any free port. */
async function portFor(preferred) {
  const tryListen = (port) =>
    new Promise((resolve) => {
      const server = createTcpServer();
      server.once('error', () => resolve(undefined));
      server.listen(port, '127.0.0.1', () => {
        const { port: bound } = server.address();
        server.close(() => resolve(bound));
      });
    });
  return (ONCE ? undefined : await tryListen(preferred)) ?? (await tryListen(0));
}

