// A local OTLP/HTTP (JSON) trace receiver, run as its own process: counts the spans it receives
// per `service.name` (each benchmark configuration exports under its own name). With
// BENCH_RECEIVER_DELAY_MS it answers every export that late (the "slow collector" outage).
import { createServer } from 'node:http';
import { gunzipSync, inflateSync } from 'node:zlib';
import { ready, serve } from './ipc.mjs';

const delayMs = Number(process.env.BENCH_RECEIVER_DELAY_MS ?? 0);
const counts = new Map(); // service.name -> { spans, requests, bytes }
let badRequests = 0;

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
    for (const ss of rs.scopeSpans ?? []) spans += ss.spans?.length ?? 0;
    const entry = counts.get(name) ?? { spans: 0, requests: 0, bytes: 0 };
    entry.spans += spans;
    entry.requests += 1;
    entry.bytes += body.length;
    counts.set(name, entry);
  }
}

const server = createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let status = 200;
    try {
      let body = Buffer.concat(chunks);
      const encoding = req.headers['content-encoding'];
      if (encoding === 'gzip') body = gunzipSync(body);
      else if (encoding === 'deflate') body = inflateSync(body);
      record(body.toString('utf8'));
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
    counts: () => ({ services: Object.fromEntries(counts), badRequests }),
  });
  ready({ port, url: `http://127.0.0.1:${port}/v1/traces` });
});
