// Turns the results of one run into the markdown report (also printed on stdout) and checks the
// targets of issue 8. Ratios are to the untraced configuration of the same run.

const f = (x, digits = 2) => (Number.isFinite(x) ? x.toFixed(digits) : 'n/a');
const x = (v) => `${f(v)}×`;
const int = (v) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : 'n/a');

export const TARGETS = {
  http100: 0.92,
  http10: 0.97,
  http0: 0.98,
  messagingRequestReply: 0.9,
  rssGrowthMB: 20,
};

export function evaluateTargets(report) {
  const out = [];
  for (const [id, s] of Object.entries(report.scenarios)) {
    if (s.error || s.skipped) continue;
    if (s.kind === 'http') {
      const by = Object.fromEntries(s.configs.map((c) => [c.id, c]));
      if (!by.B || !by.C || !by.D || !by.E) continue;
      out.push({ scenario: id, target: `B (100%, exported) ≥ ${TARGETS.http100}× untraced req/s`, value: by.B.rpsRatio, ok: by.B.rpsRatio >= TARGETS.http100 });
      out.push({ scenario: id, target: 'B better than E (req/s)', value: by.B.rpsRatio / by.E.rpsRatio, ok: by.B.rpsRatio > by.E.rpsRatio, unit: 'B/E' });
      out.push({ scenario: id, target: `C (10%) ≥ ${TARGETS.http10}×`, value: by.C.rpsRatio, ok: by.C.rpsRatio >= TARGETS.http10 });
      out.push({ scenario: id, target: `D (unsampled) ≥ ${TARGETS.http0}×`, value: by.D.rpsRatio, ok: by.D.rpsRatio >= TARGETS.http0 });
      out.push({ scenario: id, target: `RSS growth B − A ≤ ${TARGETS.rssGrowthMB} MB`, value: by.B.rssDeltaMB, ok: by.B.rssDeltaMB <= TARGETS.rssGrowthMB, unit: 'MB' });
      if (Number.isFinite(by.B.heapAfterGcDeltaMB)) {
        // RSS at the end of a run includes the GC's slack; the heap after a full GC is what stays.
        out.push({ scenario: id, target: `heap after GC B − A ≤ ${TARGETS.rssGrowthMB} MB`, value: by.B.heapAfterGcDeltaMB, ok: by.B.heapAfterGcDeltaMB <= TARGETS.rssGrowthMB, unit: 'MB' });
      }
      out.push({ scenario: id, target: 'B and E export every span (0 dropped)', value: by.B.dropped + by.E.dropped, ok: by.B.dropped + by.E.dropped === 0, unit: 'dropped' });
    } else if (s.kind === 'msg' && s.mode === 'rr') {
      const t = s.configs.find((c) => c.id === 'traced');
      out.push({ scenario: id, target: `traced ≥ ${TARGETS.messagingRequestReply}× untraced msg/s`, value: t.rateRatio, ok: t.rateRatio >= TARGETS.messagingRequestReply });
    } else if (s.kind === 'outage') {
      for (const c of s.configs.filter((c) => c.id !== 'healthy')) {
        const healthy = s.configs.find((h) => h.id === 'healthy');
        const extra = c.maxRssMB - healthy.maxRssMB;
        out.push({ scenario: id, target: `${c.id}: max RSS − healthy max RSS ≤ ${TARGETS.rssGrowthMB} MB`, value: extra, ok: extra <= TARGETS.rssGrowthMB, unit: 'MB' });
        out.push({ scenario: id, target: `${c.id}: queue never above maxQueueSize (${c.maxQueueSize})`, value: c.maxQueued, ok: c.maxQueued <= c.maxQueueSize, unit: 'spans' });
      }
    }
  }
  return out;
}

export function renderTargets(targets, { plain = false } = {}) {
  const lines = [plain ? 'Targets (issue 8):' : '### Targets (issue 8)\n', plain ? '' : '| scenario | target | value | met |', plain ? '' : '|---|---|---|---|'];
  for (const t of targets) {
    const value = t.unit ? `${f(t.value, t.unit === 'dropped' || t.unit === 'spans' ? 0 : 2)} ${t.unit}` : x(t.value);
    lines.push(plain ? `  ${t.ok ? 'MET    ' : 'NOT MET'}  ${t.scenario.padEnd(13)} ${t.target}: ${value}` : `| ${t.scenario} | ${t.target} | ${value} | ${t.ok ? 'yes' : '**no**'} |`);
  }
  return `${lines.filter((l, i) => l !== '' || i === 0).join('\n')}\n`;
}

function httpTable(s) {
  const rows = [
    '| config | req/s ratio (min–max) | p50 ratio | p99 ratio | CPU/req ratio | CPU µs/req | spans/s received | spans/req | dropped | RSS MB (Δ vs A) | heap after GC MB (Δ vs A) | req/s this run |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const c of s.configs) {
    rows.push(
      `| ${c.id} ${c.label} | ${x(c.rpsRatio)} (${f(c.rpsRatioMin)}–${f(c.rpsRatioMax)}) | ${x(c.p50Ratio)} | ${x(c.p99Ratio)} | ${x(c.cpuRatio)} | ${int(c.cpuUsPerRequest)} | ${int(c.spansPerSecond)} | ${f(c.spansPerRequest)} | ${int(c.dropped)} | ${int(c.rssMB)} (${c.rssDeltaMB >= 0 ? '+' : ''}${int(c.rssDeltaMB)}) | ${f(c.heapAfterGcMB, 1)} (${c.heapAfterGcDeltaMB >= 0 ? '+' : ''}${f(c.heapAfterGcDeltaMB, 1)}) | ${int(c.rps)} |`,
    );
  }
  rows.push('', `Noise: the untraced rounds spread ${f(100 * s.noise.untracedRpsSpread, 0)}% (max−min over median).`);
  return rows.join('\n');
}

function msgTable(s) {
  const rows = [
    '| config | msg/s ratio (min–max) | p50 ratio | p99 ratio | CPU/msg ratio (server+client) | CPU µs/msg | spans received (server / client) | dropped | msg/s this run | p50 / p99 ms this run |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const c of s.configs) {
    rows.push(
      `| ${c.label} | ${x(c.rateRatio)} (${f(c.rateRatioMin)}–${f(c.rateRatioMax)}) | ${x(c.p50Ratio)} | ${x(c.p99Ratio)} | ${x(c.cpuRatio)} | ${int(c.cpuUsPerMessage)} | ${int(c.spansReceived.server)} / ${int(c.spansReceived.client)} | ${int(c.dropped)} | ${int(c.rate)} | ${f(c.p50Ms)} / ${f(c.p99Ms)} |`,
    );
  }
  const errors = sum(s.configs.map((c) => c.errors));
  if (errors) rows.push('', `Errors or unconsumed messages: ${errors}.`);
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

function sum(values) {
  return values.reduce((a, b) => a + b, 0);
}

export function renderMarkdown(report) {
  const m = report.machine;
  const out = [
    `## otel-nest benchmark (${report.options.quick ? 'quick' : 'full'} run)`,
    '',
    `${report.date.slice(0, 16).replace('T', ' ')} UTC · ${m.cores} cores (${m.cpu}) · Node ${m.node} · load average ${m.loadAverageAtStart.join(' ')} at start, ${m.loadAverageAtEnd.join(' ')} at end · ${report.wallSeconds} s`,
    `Rounds: ${report.options.rounds} interleaved, ${report.options.seconds} s per HTTP segment, ${report.options.msgSeconds} s per messaging segment, ${report.options.warmup} s warm-up (excluded); ${report.options.connections} HTTP connections, ${report.options.concurrency} requests in flight for request-reply.`,
    'Every figure is a ratio to the untraced configuration of this run (median of per-round ratios); absolute numbers are only for context and are not comparable across runs.',
    '',
  ];
  for (const [id, s] of Object.entries(report.scenarios)) {
    out.push(`### ${id}: ${s.title}`, '');
    if (s.error) out.push(`Could not run: ${s.error.split('\n')[0]}`);
    else if (s.skipped) out.push(`Not measured: ${s.skipped}`);
    else if (s.kind === 'http') out.push(httpTable(s));
    else if (s.kind === 'msg') out.push(msgTable(s));
    else if (s.kind === 'outage') out.push(outageTable(s));
    out.push('');
  }
  out.push(renderTargets(report.targets));
  out.push('Rerun: `npm run bench` (full, ~10 min), `npm run bench -- --quick` (~2 min), `npm run bench -- --only http-express,nats-rr`; profile: `node bench/profile.mjs --framework express --config B`.', '');
  return out.join('\n');
}
