// What the heap of otel-nest's app holds that the untraced app's does not, after load and a full
// GC (issue 14, memory): `node bench/heap-diff.mjs [--framework express|fastify] [--seconds N]
// [--configs A,B]`. Starts each configuration's app (the bench's http-app.mjs, same flags as
// `npm run bench`), loads it, writes a heap snapshot of each, and prints the retained size per
// object kind (V8's node type and constructor name) of the second configuration over the first,
// largest first, then writes bench/results/heap-diff.md. Builds nothing: run `npm run build` first.
import { readFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startChild } from './lib/ipc.mjs';
import { projectNode } from './lib/runtime.mjs';
import { snapshotLibrary } from './lib/snapshot.mjs';
import { HTTP_CONFIGS } from './lib/configs.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const { values: args } = parseArgs({
  options: {
    framework: { type: 'string', default: 'express' },
    seconds: { type: 'string', default: '10' },
    configs: { type: 'string', default: 'A,B' },
    top: { type: 'string', default: '25' },
  },
});
const [baseId, otherId] = args.configs.split(',');
const configs = [baseId, otherId].map((id) => {
  const config = HTTP_CONFIGS.find((c) => c.id === id);
  if (!config) throw new Error(`Unknown configuration ${id}.`);
  return config;
});
const log = (msg) => process.stderr.write(`[heap-diff] ${msg}\n`);
const MB = 1024 * 1024;

/** Self size per "type:name" of a .heapsnapshot (the format's nodes array, fields per node). */
function summarize(file) {
  const snapshot = JSON.parse(readFileSync(file, 'utf8'));
  const { node_fields: fields, node_types: [types] } = snapshot.snapshot.meta;
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const totals = new Map();
  let total = 0;
  const { nodes, strings } = snapshot;
  for (let i = 0; i < nodes.length; i += width) {
    const type = types[nodes[i + typeAt]];
    // Strings and code are summed per type: their names are the text or the function.
    const name = type === 'object' || type === 'closure' || type === 'native' ? strings[nodes[i + nameAt]] : '';
    const key = `${type}${name ? `: ${name}` : ''}`;
    const size = nodes[i + sizeAt];
    total += size;
    const entry = totals.get(key) ?? { size: 0, count: 0 };
    entry.size += size;
    entry.count += 1;
    totals.set(key, entry);
  }
  return { totals, total };
}

const snapshot = snapshotLibrary();
process.env.BENCH_LIB_SNAPSHOT = snapshot.dir;
const out = join(here, '..', '.build', 'heap-diff');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const receiver = await startChild(join(here, 'lib/receiver.mjs'), { name: 'receiver', execPath: projectNode() });
const loader = await startChild(join(here, 'lib/loader.mjs'), { name: 'loader', execPath: projectNode() });
const summaries = [];
try {
  for (const config of configs) {
    const app = await startChild(join(here, 'apps/http-app.mjs'), {
      name: config.id,
      execPath: projectNode(),
      execArgv: ['--expose-gc', '--min-semi-space-size=16', '--max-semi-space-size=16', '--import', join(here, 'lib', 'snapshot-hook.mjs'), ...config.execArgv(here)],
      env: {
        ...config.env,
        BENCH_FRAMEWORK: args.framework,
        BENCH_SERVICE: `heap-diff-${config.id}`,
        BENCH_OTLP_URL: receiver.info.url,
      },
    });
    try {
      log(`${config.id}: ${args.seconds} s of load`);
      const load = await loader.request('run', { url: `${app.info.url}42`, seconds: Number(args.seconds), connections: 16 });
      const file = await app.request('heapSnapshot', { file: join(out, `${config.id}.heapsnapshot`) });
      const stats = await app.request('stats');
      log(`${config.id}: ${load.requests ?? '?'} requests; heap after GC ${(stats.heapUsedAfterGc / MB).toFixed(1)} MB; snapshot ${file}`);
      summaries.push({ config, ...summarize(file), stats, load });
    } finally {
      await app.stop();
    }
  }
} finally {
  await loader.stop();
  await receiver.stop();
  snapshot.remove();
}

const [base, other] = summaries;
const keys = new Set([...base.totals.keys(), ...other.totals.keys()]);
const rows = [...keys]
  .map((key) => {
    const a = base.totals.get(key) ?? { size: 0, count: 0 };
    const b = other.totals.get(key) ?? { size: 0, count: 0 };
    return { key, delta: b.size - a.size, countDelta: b.count - a.count, a, b };
  })
  .sort((x, y) => Math.abs(y.delta) - Math.abs(x.delta))
  .slice(0, Number(args.top));
const kb = (bytes) => (bytes / 1024).toFixed(1);
const lines = [
  `# Heap after load and a full GC: ${other.config.id} over ${base.config.id} (${args.framework})`,
  '',
  `${new Date().toISOString()}, Node ${process.versions.node} orchestrator, apps on ${projectNode()}, ${args.seconds} s of load each (16 connections).`,
  '',
  `Snapshot totals: ${base.config.id} ${(base.total / MB).toFixed(1)} MB, ${other.config.id} ${(other.total / MB).toFixed(1)} MB (${((other.total - base.total) / MB).toFixed(1)} MB more).`,
  '',
  `| object kind | ${base.config.id} KB | ${other.config.id} KB | Δ KB | Δ count |`,
  '|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.key.replace(/\|/g, '\\|').slice(0, 80)} | ${kb(r.a.size)} | ${kb(r.b.size)} | ${kb(r.delta)} | ${r.countDelta} |`),
  '',
];
const text = lines.join('\n');
process.stdout.write(text);
writeFileSync(join(here, 'results', 'heap-diff.md'), text);
