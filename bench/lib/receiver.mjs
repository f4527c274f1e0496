// A local OTLP/HTTP (JSON) trace receiver, run as its own process: counts the spans it receives
// per `service.name` (each benchmark configuration exports under its own name). With
// BENCH_RECEIVER_DELAY_MS it answers every export that late (the "slow collector" outage).
// `POST /v1/metrics` (the metrics configurations' OTLP pushes) is answered 200 too, and counted
// per service (pushes and data points), apart from the spans.
import { createServer } from 'node:http';
import { gunzipSync, inflateSync } from 'node:zlib';
import { ready, serve } from './ipc.mjs';

const delayMs = Number(process.env.BENCH_RECEIVER_DELAY_MS ?? 0);
const counts = new Map(); // service.name -> { spans, requests, bytes }
// The first span of each name of every service, kept as received: the report compares the span a
// floor configuration records with otel-nest's (same name shape, kind and attribute keys).
const KEEP = 8;
const samples = new Map(); // service.name -> spans
let badRequests = 0;
const metricCounts = new Map(); // service.name -> { requests, dataPoints, bytes }

function serviceName(resourceSpans) {
  for (const attr of resourceSpans?.resource?.attributes ?? []) {
    if (attr.key === 'service.name') return attr.value?.stringValue ?? String(attr.value);
  }
  return 'unknown';
}

function record(body) {
  const request = JSON.parse(body);
  for (const rs of request.resourceSpans ?? []) {
    const name = serviceName(rs);
    let spans = 0;
    const kept = samples.get(name) ?? [];
    for (const ss of rs.scopeSpans ?? []) {
      spans += ss.spans?.length ?? 0;
      for (const span of ss.spans ?? []) {
        if (kept.length >= KEEP) break;
        // One per span name: the enhancer configurations' guard, pipe and interceptor spans come after many SERVER spans.
        if (kept.some((k) => k.name === span.name && k.scope === ss.scope?.name)) continue;
        kept.push({ scope: ss.scope?.name, name: span.name, kind: span.kind, traceId: span.traceId, spanId: span.spanId, parentSpanId: span.parentSpanId, attributes: Object.fromEntries((span.attributes ?? []).map((a) => [a.key, Object.values(a.value ?? {})[0]])) });
      }
    }
    samples.set(name, kept);
    const entry = counts.get(name) ?? { spans: 0, requests: 0, bytes: 0 };
    entry.spans += spans;
    entry.requests += 1;
    entry.bytes += body.length;
    counts.set(name, entry);
  }
}

function recordMetrics(body) {
  const request = JSON.parse(body);
  for (const rm of request.resourceMetrics ?? []) {
    const name = serviceName(rm);
    let dataPoints = 0;
    for (const sm of rm.scopeMetrics ?? []) {
      for (const metric of sm.metrics ?? []) {
        const data = metric.histogram ?? metric.sum ?? metric.gauge ?? metric.exponentialHistogram ?? metric.summary;
        dataPoints += data?.dataPoints?.length ?? 0;
      }
    }
    const entry = metricCounts.get(name) ?? { requests: 0, dataPoints: 0, bytes: 0 };
    entry.requests += 1;
    entry.dataPoints += dataPoints;
    entry.bytes += body.length;
    metricCounts.set(name, entry);
  }
}

const server = createServer((req, res) => {
  const metrics = (req.url ?? '').split('?')[0] === '/v1/metrics';
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let status = 200;
    try {
      let body = Buffer.concat(chunks);
      const encoding = req.headers['content-encoding'];
      if (encoding === 'gzip') body = gunzipSync(body);
      else if (encoding === 'deflate') body = inflateSync(body);
      (metrics ? recordMetrics : record)(body.toString('utf8'));
    } catch {
      badRequests++;
      status = 400;
    }
    const answer = () => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end('{}');
    };
    if (delayMs > 0) setTimeout(answer, delayMs);
    else answer();
  });
});
server.keepAliveTimeout = 60_000;

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  serve({
    counts: () => ({ services: Object.fromEntries(counts), metrics: Object.fromEntries(metricCounts), badRequests }),
    samples: ({ service }) => samples.get(service) ?? [],
  });
  ready({ port, url: `http://127.0.0.1:${port}/v1/traces` });
});
