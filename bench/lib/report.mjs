// Turns the results of one run into the markdown report (also printed on stdout): the floor
// tables first (CPU per request, overhead over A as a multiple of the floor's), then one table per
// scenario, the memory figures, and the targets (lib/targets.mjs).
import { renderFeatureCosts } from './features.mjs';
import { renderTargets } from './targets.mjs';

const f = (x, digits = 2) => (Number.isFinite(x) ? x.toFixed(digits) : 'n/a');
const x = (v) => `${f(v)}×`;
const int = (v) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : 'n/a');
const signed = (v, digits = 0) => (Number.isFinite(v) ? `${v >= 0 ? '+' : ''}${v.toFixed(digits)}` : 'n/a');
const spread = (values) => (values?.length ? `${f(Math.min(...values), 1)}–${f(Math.max(...values), 1)}` : 'n/a');

/** HTTP: one row per configuration, a column group per framework. */
function httpFloorTable(report) {
  const ids = ['http-express', 'http-fastify'].filter((id) => report.summary?.[id]);
  if (ids.length === 0) return [];
  const configs = [];
  for (const id of ids) for (const c of report.scenarios[id].configs) if (!configs.some((k) => k.id === c.id)) configs.push(c);
  const head = ids.map((id) => id.replace('http-', '')).map((n) => `${n} CPU µs/req | ${n} overhead µs | ${n} × floor`).join(' | ');
  const rows = [`| config | ${head} |`, `|---|${ids.map(() => '---|---|---|').join('')}`];
  for (const c of configs) {
    const cells = ids.map((id) => {
      const s = report.summary[id][c.id];
      if (!s) return 'n/a | n/a | n/a';
      return `${f(s.cpuUsPerReq, 1)} | ${c.id === 'A' ? '–' : f(s.overheadUs, 1)} | ${s.overheadVsFloor === null ? '–' : `${f(s.overheadVsFloor)}× ${s.floor}`}`;
    });
    rows.push(`| ${c.id} ${c.label} | ${cells.join(' | ')} |`);
  }
  return ['### Floor table, HTTP (CPU µs per request; overhead = config − A; × floor = overhead / (F1 − A), D: / (F0 − A))', '', ...rows, ''];
}

function msgFloorTable(report) {
  const ids = Object.keys(report.summary ?? {}).filter((id) => report.scenarios[id].kind === 'msg');
  if (ids.length === 0) return [];
  const rows = [
    '| scenario | untraced CPU µs/msg | floor CPU µs/msg | otel-nest CPU µs/msg | floor overhead µs | otel-nest overhead µs | otel-nest × floor | msg/s ratio floor / otel-nest |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const id of ids) {
    const s = report.summary[id];
    const [u, fl, o] = [s.untraced, s.floor, s['otel-nest']];
    rows.push(
      `| ${id} | ${f(u?.cpuUsPerReq, 1)} | ${f(fl?.cpuUsPerReq, 1)} | ${f(o?.cpuUsPerReq, 1)} | ${f(fl?.overheadUs, 1)} | ${f(o?.overheadUs, 1)} | ${o ? x(o.overheadVsFloor) : 'n/a'} | ${f(fl?.reqPerSecRatio)} / ${f(o?.reqPerSecRatio)} |`,
    );
  }
  return ['### Floor table, messaging (client + server CPU µs per message)', '', ...rows, ''];
}

function httpTable(s, summary) {
  const rows = [
    '| config | req/s ratio (min–max) | p50 ratio | p99 ratio | CPU µs/req (rounds) | overhead µs | × floor | spans/req | dropped | req/s this run |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const c of s.configs) {
    const sm = summary?.[c.id] ?? {};
    rows.push(
      `| ${c.id} ${c.label} | ${x(c.rpsRatio)} (${f(c.rpsRatioMin)}–${f(c.rpsRatioMax)}) | ${x(c.p50Ratio)} | ${x(c.p99Ratio)} | ${f(c.cpuUsPerRequest, 1)} (${spread(c.cpuUsPerRequestByRound)}) | ${c.id === 'A' ? '–' : f(sm.overheadUs, 1)} | ${sm.overheadVsFloor == null ? '–' : x(sm.overheadVsFloor)} | ${f(c.spansPerRequest)} | ${int(c.dropped)} | ${int(c.rps)} |`,
    );
  }
  rows.push('', `Noise: the untraced rounds spread ${f(100 * s.noise.untracedRpsSpread, 0)}% in req/s (max−min over median).`, '');
  rows.push(
    'Memory (end of run, under load; "after GC": after a forced full GC): RSS is what the OS sees; the young generation (new space) is sized by V8 from the allocation rate.',
    '',
    '| config | RSS MB (Δ A) | RSS after GC MB (Δ A) | heap total MB | heap used after GC MB (Δ A) | new space MB | old space MB | external MB | JS alloc KB/req | scavenges / 1k req | GC µs/req |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  );
  for (const c of s.configs) {
    rows.push(
      `| ${c.id} | ${int(c.rssMB)} (${signed(c.rssDeltaMB)}) | ${int(c.rssAfterGcMB)} (${signed(c.rssAfterGcDeltaMB)}) | ${f(c.heapTotalMB, 1)} | ${f(c.heapAfterGcMB, 1)} (${signed(c.heapAfterGcDeltaMB, 1)}) | ${f(c.newSpaceMB, 1)} | ${f(c.oldSpaceMB, 1)} | ${f(c.externalMB, 1)} | ${f(c.allocKBPerReq, 2)} | ${f(c.scavengesPer1kReq, 2)} | ${f(c.gcUsPerReq, 2)} |`,
    );
  }
  const pushed = s.configs.filter((c) => c.metricExports?.requests > 0);
  if (pushed.length) rows.push('', `Metric pushes the receiver got (POST /v1/metrics, data points): ${pushed.map((c) => `${c.id} ${c.metricExports.requests} (${c.metricExports.dataPoints})`).join(', ')}.`);
  const b = s.configs.find((c) => c.id === 'B');
  const f1 = s.configs.find((c) => c.id === 'F1');
  if (b?.span && f1?.span) {
    const missing = b.span.keys.filter((k) => !f1.span.keys.includes(k));
    rows.push('', `F1's span: "${f1.span.name}" kind ${f1.span.kind}, ${f1.span.keys.length} attributes; B's: "${b.span.name}" kind ${b.span.kind}, ${b.span.keys.length}${missing.length ? ` (F1 lacks ${missing.join(', ')})` : ' (same keys)'}.`);
  }
  return rows.join('\n');
}

function msgTable(s, summary) {
  const rows = [
    '| config | msg/s ratio (min–max) | p50 ratio | p99 ratio | CPU µs/msg (rounds) | server / client µs | overhead µs | × floor | spans received (server / client) | dropped | RSS MB server+client (Δ) | server alloc KB/msg | msg/s this run | p50 / p99 ms |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const c of s.configs) {
    const sm = summary?.[c.id] ?? {};
    rows.push(
      `| ${c.label} | ${x(c.rateRatio)} (${f(c.rateRatioMin)}–${f(c.rateRatioMax)}) | ${x(c.p50Ratio)} | ${x(c.p99Ratio)} | ${f(c.cpuUsPerMessage, 1)} (${spread(c.cpuUsPerMessageByRound)}) | ${f(c.serverCpuUsPerMessage, 1)} / ${f(c.clientCpuUsPerMessage, 1)} | ${c.id === 'untraced' ? '–' : f(sm.overheadUs, 1)} | ${sm.overheadVsFloor == null ? '–' : x(sm.overheadVsFloor)} | ${int(c.spansReceived.server)} / ${int(c.spansReceived.client)} | ${int(c.dropped)} | ${int(c.rssMB)} (${signed(c.rssDeltaMB)}) | ${f(c.serverAllocKBPerMessage, 2)} | ${int(c.rate)} | ${f(c.p50Ms)} / ${f(c.p99Ms)} |`,
    );
  }
  const pushed = s.configs.filter((c) => c.metricExports && c.metricExports.server.requests + c.metricExports.client.requests > 0);
  if (pushed.length) rows.push('', `Metric pushes the receiver got (POST /v1/metrics, server / client): ${pushed.map((c) => `${c.id} ${c.metricExports.server.requests} / ${c.metricExports.client.requests}`).join(', ')}.`);
  const errors = s.configs.reduce((n, c) => n + c.errors, 0);
  if (errors) rows.push('', `Errors or unconsumed messages: ${errors}.`);
  const fl = s.configs.find((c) => c.id === 'floor');
  const o = s.configs.find((c) => c.id === 'otel-nest');
  for (const side of ['client', 'server']) {
    const [a, b] = [fl?.span?.[side], o?.span?.[side]];
    if (!a || !b) continue;
    const missing = b.keys.filter((k) => !a.keys.includes(k));
    rows.push('', `The floor's ${side} span: "${a.name}" kind ${a.kind}, ${a.keys.length} attributes; otel-nest's: "${b.name}" kind ${b.kind}, ${b.keys.length}${missing.length ? ` (the floor lacks ${missing.join(', ')})` : ' (same keys)'}.`);
  }
  return rows.join('\n');
}

function outageTable(s) {
  const rows = [
    `Load for ${s.seconds} s per receiver state, in interleaved segments. "dropped": spans the BatchSpanProcessor refused because its queue was full; "failed": spans in exports that failed.`,
    '',
    '| receiver | req/s ratio to healthy | p99 ratio | CPU µs/req | spans exported / failed / dropped (queue full) | max queued / cap | RSS MB start → max (growth) | RSS MB after each round |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const c of s.configs) {
    rows.push(
      `| ${c.label} | ${x(c.rpsRatio)} | ${x(c.p99Ratio)} | ${int(c.cpuUsPerRequest)} | ${int(c.exportedSpans)} / ${int(c.failedSpans)} / ${int(c.dropped)} | ${int(c.maxQueued)} / ${int(c.maxQueueSize)} | ${int(c.startRssMB)} → ${int(c.maxRssMB)} (+${int(c.rssGrowthMB)}) | ${c.rssAfterEachRoundMB.map(int).join(' → ')} |`,
    );
  }
  return rows.join('\n');
}

export function renderMarkdown(report) {
  const m = report.machine;
  const o = report.options;
  const out = [
    `## otel-nest benchmark (${o.quick ? 'quick' : 'full'} run), Node ${report.node}`,
    '',
    `${report.date.slice(0, 16).replace('T', ' ')} UTC · ${m.cores} cores (${m.cpu}) · processes under test on Node ${m.node}${m.nodeFlags.length ? ` with ${m.nodeFlags.join(' ')}` : ''} · load average ${m.loadAverageAtStart.join(' ')} at start, ${m.loadAverageAtEnd.join(' ')} at end · ${report.wallSeconds} s`,
    ...(report.library ? [`Library measured: dist/ built from ${report.library.commit}${report.library.libFilesChanged ? ` with ${report.library.libFilesChanged} uncommitted file(s) in lib/` : ''}.`] : []),
    `Rounds: ${o.rounds} interleaved, ${o.seconds} s per HTTP segment, ${o.msgSeconds} s per messaging segment, ${o.warmup} s warm-up (excluded); ${o.connections} HTTP connections, ${o.concurrency} requests in flight for request-reply.`,
    'CPU is process.cpuUsage() of the app process(es) per request handled; ratios are medians of per-round ratios to the untraced configuration of this run.',
    '',
    ...httpFloorTable(report),
    ...msgFloorTable(report),
    ...renderFeatureCosts(report.featureCosts),
  ];
  for (const [id, s] of Object.entries(report.scenarios)) {
    out.push(`### ${id}: ${s.title}`, '');
    if (s.error) out.push(`Could not run: ${s.error.split('\n')[0]}`);
    else if (s.skipped) out.push(`Not measured: ${s.skipped}`);
    else if (s.kind === 'http') out.push(httpTable(s, report.summary?.[id]));
    else if (s.kind === 'msg') out.push(msgTable(s, report.summary?.[id]));
    else if (s.kind === 'outage') out.push(outageTable(s));
    out.push('');
  }
  out.push(renderTargets(report.targets));
  out.push('Rerun: `npm run bench` (full, ~10 min), `npm run bench -- --quick`, `npm run bench -- --only http-express,nats-rr`, `npm run bench -- --node 22.15.0`; targets: `node bench/check-targets.mjs`.', '');
  return out.join('\n');
}
