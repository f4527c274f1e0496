// The cost of one feature (redaction, enhancer spans, metrics) as the difference of two
// configurations measured in the same run (lib/configs.mjs FEATURE_COSTS): latest.json
// `featureCosts[scenario]`, and the "Feature costs" table of the report.
import { FEATURE_COSTS } from './configs.mjs';

const round = (x, digits) => (Number.isFinite(x) ? Number(x.toFixed(digits)) : null);

/** `{ [scenario]: [{ id, what, with, without, deltaUs, perCallUs, roundDeltasUs }] }` for the pairs a run has. */
export function buildFeatureCosts(scenarios) {
  const out = {};
  for (const [sid, s] of Object.entries(scenarios)) {
    if (s.error || s.skipped || (s.kind !== 'http' && s.kind !== 'msg')) continue;
    const cpu = (c) => (s.kind === 'http' ? c.cpuUsPerRequest : c.cpuUsPerMessage);
    const byRound = (c) => (s.kind === 'http' ? c.cpuUsPerRequestByRound : c.cpuUsPerMessageByRound) ?? [];
    const by = Object.fromEntries(s.configs.map((c) => [c.id, c]));
    const rows = [];
    for (const f of FEATURE_COSTS) {
      const [w, wo] = [by[f.with], by[f.without]];
      if (f.kind !== s.kind || !w || !wo) continue;
      const deltaUs = cpu(w) - cpu(wo);
      // The configurations are interleaved: a round's two segments ran minutes apart at most.
      const roundDeltasUs = byRound(w).map((x, r) => x - byRound(wo)[r]);
      rows.push({
        id: f.id,
        what: f.what,
        with: f.with,
        without: f.without,
        deltaUs: round(deltaUs, 2),
        ...(f.calls ? { calls: f.calls, perCallUs: round(deltaUs / f.calls, 2) } : {}),
        roundDeltasUs: roundDeltasUs.map((d) => round(d, 2)),
        spansPerRequest: s.kind === 'http' ? { with: round(w.spansPerRequest, 2), without: round(wo.spansPerRequest, 2) } : undefined,
      });
    }
    if (rows.length) out[sid] = rows;
  }
  return out;
}

const f = (x, digits = 1) => (Number.isFinite(x) ? x.toFixed(digits) : 'n/a');
const signed = (x) => (Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${x.toFixed(1)}` : 'n/a');

export function renderFeatureCosts(featureCosts) {
  const ids = Object.keys(featureCosts ?? {});
  if (ids.length === 0) return [];
  const rows = [
    '| scenario | feature | with − without | CPU µs/req (msg) | per call | per round | spans/req with / without |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const sid of ids) {
    for (const r of featureCosts[sid]) {
      rows.push(
        `| ${sid} | ${r.what} | ${r.with} − ${r.without} | ${signed(r.deltaUs)} | ${r.perCallUs == null ? '–' : `${signed(r.perCallUs)} (÷${r.calls})`} | ${r.roundDeltasUs.map(signed).join(', ')} | ${r.spansPerRequest ? `${f(r.spansPerRequest.with, 2)} / ${f(r.spansPerRequest.without, 2)}` : '–'} |`,
      );
    }
  }
  return ['### Feature costs (difference of two configurations of this run; CPU of the app process(es))', '', ...rows, ''];
}
