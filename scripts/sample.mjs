// `npm run sample`: compiles the sample, starts the shop app in this process, sends it three
// requests, closes it (which flushes every span), then prints each request's trace as a tree and
// checks its shape. Exits 1 when a trace is not what the sample promises. Needs nothing running.
import { spawnSync } from 'node:child_process';
import { request } from 'node:http';
import { diag, DiagConsoleLogger, DiagLogLevel, SpanKind, SpanStatusCode } from '@opentelemetry/api';

const TIMEOUT_MS = 30_000;
// unref: the watchdog fires only if something else keeps the process alive (a hang).
setTimeout(() => {
  console.error(`\nThe sample did not finish within ${TIMEOUT_MS / 1000} s.`);
  process.exit(1);
}, TIMEOUT_MS).unref();

console.log('> compile: npx tsc -p sample/tsconfig.json');
const compiled = spawnSync('npx', ['tsc', '-p', 'sample/tsconfig.json'], { stdio: 'inherit' });
if (compiled.status !== 0) {
  console.error(`Compiling the sample failed (exit ${compiled.status ?? compiled.signal}).`);
  process.exit(1);
}

const { startShopApp } = await import('../.build/sample/shop.app.js');
const { collectorConfigured } = await import('../.build/sample/app.module.js');
const { OtelSdkService } = await import('otel-nest');

/** The caller's span for request 2, as an upstream service would send it. */
const UPSTREAM = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7' };

const REQUESTS = [
  {
    title: 'a normal order; the tenant comes in a header of the shop and becomes baggage',
    path: '/orders/order-1',
    headers: { 'x-tenant-id': 'globex' },
    status: 200,
    tenant: 'globex',
  },
  {
    title: 'called by a traced upstream: its traceparent and its tenant.id baggage continue here',
    path: '/orders/order-2',
    headers: { traceparent: `00-${UPSTREAM.traceId}-${UPSTREAM.spanId}-01`, baggage: 'tenant.id=acme' },
    status: 200,
    tenant: 'acme',
    upstream: UPSTREAM,
  },
  {
    title: 'the inventory fails with 500, so the order answers 502',
    path: '/orders/order-3',
    headers: {},
    status: 502,
    failing: true,
  },
];

// node:http, not fetch: fetch is traced in this process (the app's undici instrumentation), and
// this script plays an outside client such as curl, whose requests must not start the traces.
function get(url, headers) {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

// Nest's warnings and errors, one line each on stdout, in order with the rest: the stack trace of
// the failing request would bury the trees.
const oneLine = (message) => (message instanceof Error ? `${message.name}: ${message.message}` : String(message));
const ignore = () => {};
const logger = {
  log: ignore,
  debug: ignore,
  verbose: ignore,
  warn: (message, ...rest) => console.log(`   [Nest] WARN [${rest.at(-1)}] ${oneLine(message)}`),
  error: (message, ...rest) => console.log(`   [Nest] ERROR [${rest.at(-1)}] ${oneLine(message)}`),
  fatal: (message, ...rest) => console.log(`   [Nest] FATAL [${rest.at(-1)}] ${oneLine(message)}`),
};

const startedAt = performance.now();
const { app, url, traces } = await startShopApp({ port: 0, logger });
console.log(`\nshop listening on ${url}`);
console.log(app.get(OtelSdkService).summary());
if (collectorConfigured()) {
  // An unreachable collector is reported through OpenTelemetry's diag logger, silent by default.
  diag.setLogger(new DiagConsoleLogger(), DiagLogLevel.WARN);
  console.log(
    'OTEL_EXPORTER_OTLP_ENDPOINT is set: every span is ALSO sent to that collector over OTLP/HTTP ' +
      '(the exporter above); the trees below come from the in-process printer.',
  );
}

const responses = [];
try {
  for (const [index, req] of REQUESTS.entries()) {
    const shown = Object.entries(req.headers).map(([name, value]) => `  ${name}: ${value}`).join('');
    console.log(`\n${index + 1}. GET ${req.path}${shown}`);
    if (req.failing) {
      console.log('   (fails on purpose: the error Nest logs is expected)');
    }
    const response = await get(url + req.path, req.headers);
    console.log(`   -> ${response.status} ${response.body}`);
    responses.push(response);
  }
} finally {
  // Stops the server, then flushes and shuts the SDK down: every span of these requests has ended.
  await app.close();
}
const elapsed = Math.round(performance.now() - startedAt);

let failures = 0;
/** Prints the check with its outcome; `{ quiet: true }` prints it only when it fails. */
function check(ok, description, { quiet = false } = {}) {
  if (!ok || !quiet) {
    console.log(`   ${ok ? '✓' : '✗'} ${description}`);
  }
  if (!ok) {
    failures++;
  }
  return ok;
}

const kindName = (kind) => SpanKind[kind];
const parentId = (span) => span?.parentSpanContext?.spanId;
const spanId = (span) => span?.spanContext().spanId;
const isError = (span) => span?.status.code === SpanStatusCode.ERROR;

console.log('\nTraces (after app.close(), which flushed every span):');
const seen = new Set();
for (const [index, req] of REQUESTS.entries()) {
  const response = responses[index];
  const traceId = response.headers['x-trace-id'];
  console.log(`\n${index + 1}. ${req.title}`);
  if (!check(typeof traceId === 'string', 'the response names its trace in x-trace-id', { quiet: true })) {
    continue;
  }
  seen.add(traceId);
  console.log(traces.formatTrace(traceId).replace(/^/gm, '   '));
  console.log('');
  const spans = traces.getSpans(traceId);
  const find = (name, kind) => spans.filter((span) => span.name === name && span.kind === kind);
  const one = (name, kind) => {
    const found = find(name, kind);
    check(found.length === 1, `one ${name} [${kindName(kind)}] span in the trace (found ${found.length})`, { quiet: true });
    return found[0];
  };
  const server = one('GET /orders/:id', SpanKind.SERVER);
  const method = one('OrdersService.getOrder', SpanKind.INTERNAL);
  const client = one('GET', SpanKind.CLIENT);
  const inventory = one('GET /inventory/:sku', SpanKind.SERVER);
  check(spans.length === 4, `4 spans in the trace, no more (found ${spans.length})`);
  check(
    server !== undefined &&
      parentId(method) === spanId(server) &&
      parentId(client) === spanId(method) &&
      parentId(inventory) === spanId(client) &&
      inventory.parentSpanContext.isRemote === true,
    'connected: SERVER -> @Traced INTERNAL -> fetch CLIENT -> SERVER, the last parent read from the HTTP headers',
  );
  check(response.status === req.status, `answered ${req.status} (got ${response.status})`);
  check(
    server?.attributes['http.response.status_code'] === req.status,
    `the SERVER span records http.response.status_code=${req.status}`,
  );
  if (req.upstream) {
    check(traceId === req.upstream.traceId, `continues the caller's trace ${req.upstream.traceId}`);
    check(
      parentId(server) === req.upstream.spanId && server.parentSpanContext.isRemote === true,
      `the SERVER span's parent is the caller's span ${req.upstream.spanId}`,
    );
  } else {
    check(server !== undefined && server.parentSpanContext === undefined, 'the SERVER span starts a new trace');
  }
  if (req.tenant) {
    check(
      method?.attributes['tenant.id'] === req.tenant && inventory?.attributes['tenant.id'] === req.tenant,
      `baggage tenant.id=${req.tenant} reached the inventory request (attribute on its SERVER span)`,
    );
    check(
      method?.events.some((event) => event.name === 'inventory.checked') === true &&
        method.attributes['order.id'] === req.path.split('/').pop(),
      'TraceService added order.id and the inventory.checked event to the @Traced span',
    );
  }
  if (req.failing) {
    check(
      [inventory, client, method, server].every(isError),
      'status ERROR on all four spans, from the failing inventory up to the order request',
    );
    check(
      inventory?.events.some((event) => event.name === 'exception') === true,
      "the inventory's SERVER span holds the exception event",
    );
  } else {
    check(!spans.some(isError), 'no span has status ERROR');
  }
}

const strays = traces.getSpans().filter((span) => !seen.has(span.spanContext().traceId));
console.log('');
if (!check(strays.length === 0, `no spans outside these ${REQUESTS.length} traces (found ${strays.length})`)) {
  for (const traceId of new Set(strays.map((span) => span.spanContext().traceId))) {
    console.log(`\n${traces.formatTrace(traceId).replace(/^/gm, '   ')}`);
  }
}

if (failures > 0) {
  console.error(`\nThe sample's traces are not as expected: ${failures} check(s) failed.`);
  process.exitCode = 1;
} else {
  console.log(`\nAll checks passed. Started, called and closed the app in ${elapsed} ms.`);
}
