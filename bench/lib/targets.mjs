// The machine-readable summary of a run (latest.json `summary[scenario][config]`) and the targets
// of issue 14, checked on it. Used by run.mjs and by check-targets.mjs (which reads latest.json).
//
// Overhead is CPU per request (per message: client + server) minus the untraced configuration's,
// and is compared with the floor's overhead: F1 − A for sampled configurations, F0 − A for the
// unsampled D (and D-*); for messaging, the floor configuration's.

export const TARGETS = {
  httpVsFloor: 1.25,
  unsampledExtraUs: 2,
  contribFactor: 4,
  messagingVsFloor: 1.25,
  pgReqPerSec: 0.95,
  rssDeltaMb: 30,
};

const BASE = { http: 'A', msg: 'untraced' };
/** The floor each configuration is compared with. */
function floorOf(kind, id) {
  if (kind === 'msg') return id === 'untraced' ? undefined : 'floor';
  if (id === 'A') return undefined;
  // Unsampled configurations (D, D-noi, D-enh, D-metrics) against the context floor.
  if (id === 'D' || id.startsWith('D-') || id === 'F0') return 'F0';
  return 'F1';
}

export function buildSummary(scenarios) {
  const summary = {};
  for (const [sid, s] of Object.entries(scenarios)) {
    if (s.error || s.skipped || (s.kind !== 'http' && s.kind !== 'msg')) continue;
    const cpu = (c) => (s.kind === 'http' ? c.cpuUsPerRequest : c.cpuUsPerMessage);
    const by = Object.fromEntries(s.configs.map((c) => [c.id, c]));
    const base = by[BASE[s.kind]];
    if (!base) continue;
    const overhead = (c) => (c ? cpu(c) - cpu(base) : NaN);
    const out = {};
    for (const c of s.configs) {
      const floorId = floorOf(s.kind, c.id);
      const floor = floorId ? by[floorId] : undefined;
      out[c.id] = {
        cpuUsPerReq: round(cpu(c), 2),
        overheadUs: round(overhead(c), 2),
        // No multiple of a floor that costs nothing measurable (within noise of A, or below it).
        overheadVsFloor: floor && overhead(floor) > 0 ? round(overhead(c) / overhead(floor), 3) : null,
        reqPerSecRatio: round(s.kind === 'http' ? c.rpsRatio : c.rateRatio, 3),
        rssDeltaMb: round(c.rssDeltaMB, 1),
        heapAfterGcDeltaMb: round(c.heapAfterGcDeltaMB, 2),
        ...(s.kind === 'http' ? { allocKbPerReq: round(c.allocKBPerReq, 2), rssAfterGcDeltaMb: round(c.rssAfterGcDeltaMB, 1) } : {}),
        ...(floor ? { floor: floorId } : {}),
      };
    }
    summary[sid] = out;
  }
  return summary;
}

function round(x, digits) {
  return Number.isFinite(x) ? Number(x.toFixed(digits)) : null;
}

/** Every target of issue 14 whose scenario is in `summary`, as `{ scenario, target, ok, detail }`. */
export function checkSummary(summary) {
  const out = [];
  const f = (v, d = 1) => (Number.isFinite(v) ? v.toFixed(d) : 'n/a');
  const push = (scenario, target, ok, detail) => out.push({ scenario, target, ok: Boolean(ok), detail });
  for (const sid of ['http-express', 'http-fastify']) {
    const s = summary[sid];
    if (!s) continue;
    if (s.B && s.F1) {
      const limit = TARGETS.httpVsFloor * s.F1.overheadUs;
      push(sid, `B overhead ≤ ${TARGETS.httpVsFloor}× F1's`, s.B.overheadUs <= limit,
        `B ${f(s.B.overheadUs)} µs = ${f(s.B.overheadVsFloor, 2)}× F1's ${f(s.F1.overheadUs)} µs (limit ${f(limit)} µs)`);
    }
    if (s.D && s.F0) {
      const limit = s.F0.overheadUs + TARGETS.unsampledExtraUs;
      push(sid, `D overhead ≤ F0's + ${TARGETS.unsampledExtraUs} µs`, s.D.overheadUs <= limit,
        `D ${f(s.D.overheadUs)} µs, F0 ${f(s.F0.overheadUs)} µs (limit ${f(limit)} µs; D = ${f(s.D.overheadVsFloor, 2)}× F0's)`);
    }
    if (s.B && s.E) {
      const factor = s.E.overheadUs / s.B.overheadUs;
      push(sid, `B ≥ ${TARGETS.contribFactor}× less overhead than E`, s.B.overheadUs > 0 ? factor >= TARGETS.contribFactor : s.E.overheadUs > 0,
        `E ${f(s.E.overheadUs)} µs / B ${f(s.B.overheadUs)} µs = ${f(factor, 2)}×`);
    }
    if (s.B) {
      push(sid, `B RSS ≤ A's + ${TARGETS.rssDeltaMb} MB`, s.B.rssDeltaMb <= TARGETS.rssDeltaMb,
        `B ${f(s.B.rssDeltaMb)} MB over A (heap after GC ${f(s.B.heapAfterGcDeltaMb, 1)} MB over A)`);
    }
  }
  for (const sid of ['nats-rr', 'rmq-rr', 'kafka-emit', 'grpc-unary', 'tcp-rr', 'redis-rr', 'mqtt-rr']) {
    const s = summary[sid];
    if (!s?.['otel-nest'] || !s.floor) continue;
    const o = s['otel-nest'];
    const limit = TARGETS.messagingVsFloor * s.floor.overheadUs;
    push(sid, `otel-nest overhead ≤ ${TARGETS.messagingVsFloor}× the floor's`, o.overheadUs <= limit,
      `otel-nest ${f(o.overheadUs)} µs/msg = ${f(o.overheadVsFloor, 2)}× the floor's ${f(s.floor.overheadUs)} µs (limit ${f(limit)} µs)`);
  }
  const pg = summary['http-pg'];
  if (pg?.B) {
    push('http-pg', `B ≥ ${TARGETS.pgReqPerSec}× untraced req/s`, pg.B.reqPerSecRatio >= TARGETS.pgReqPerSec,
      `B ${f(pg.B.reqPerSecRatio, 3)}× A's req/s (CPU +${f(pg.B.overheadUs)} µs/req)`);
  }
  return out;
}

/** The targets plus the run's own sanity checks (spans exported, the outage queue cap). */
export function evaluateTargets(report) {
  const out = checkSummary(report.summary ?? {});
  for (const [id, s] of Object.entries(report.scenarios)) {
    if (s.error || s.skipped) continue;
    if (s.kind === 'http') {
      // The SDK's own BatchSpanProcessor (F1, E) may drop under a burst; those are in the tables.
      const b = s.configs.find((c) => c.id === 'B');
      if (b) out.push({ scenario: id, target: 'B exports every span (0 dropped)', ok: b.dropped === 0, detail: `${b.dropped} dropped`, check: true });
    } else if (s.kind === 'outage') {
      for (const c of s.configs.filter((c) => c.id !== 'healthy')) {
        out.push({ scenario: id, target: `${c.id}: queue never above maxQueueSize`, ok: c.maxQueued <= c.maxQueueSize, detail: `max ${c.maxQueued} / ${c.maxQueueSize}`, check: true });
      }
    }
  }
  return out;
}

export function renderTargets(targets, { plain = false } = {}) {
  if (plain) {
    const lines = ['Targets (issue 14) and checks:'];
    for (const t of targets) lines.push(`  ${t.ok ? 'MET    ' : 'NOT MET'}  ${t.scenario.padEnd(13)} ${t.target}: ${t.detail}`);
    return `${lines.join('\n')}\n`;
  }
  const lines = ['### Targets (issue 14) and checks', '', '| scenario | target | value | met |', '|---|---|---|---|'];
  for (const t of targets) lines.push(`| ${t.scenario} | ${t.target} | ${t.detail} | ${t.ok ? 'yes' : '**no**'} |`);
  return `${lines.join('\n')}\n`;
}
