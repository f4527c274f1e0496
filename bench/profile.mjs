// CPU profile of one HTTP configuration under load: `node --cpu-prof` on the app process, then a
// summary of the steady-state window (warm-up excluded) by area and by function of OUR code.
//
//   node bench/profile.mjs [--framework express|fastify] [--config B|A|C|D|E] [--seconds 15]
//                          [--warmup 3] [--connections 16] [--top 25]
// Writes bench/results/profiles/<config>-<framework>.cpuprofile (open it in Chrome DevTools)
// and bench/results/profile-<config>-<framework>.json.
import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startChild } from './lib/ipc.mjs';
import { summarise } from './lib/cpuprofile.mjs';
import { ALL_HTTP_CONFIGS as HTTP_CONFIGS } from './lib/configs.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const { values: opts } = parseArgs({
  options: {
    framework: { type: 'string', default: 'express' },
    config: { type: 'string', default: 'B' },
    seconds: { type: 'string', default: '15' },
    warmup: { type: 'string', default: '3' },
    connections: { type: 'string', default: '16' },
    top: { type: 'string', default: '25' },
    interval: { type: 'string', default: '250' },
  },
});
const config = HTTP_CONFIGS.find((c) => c.id === opts.config);
if (!config) {
  console.error(`Unknown config ${opts.config}; one of ${HTTP_CONFIGS.map((c) => c.id).join(', ')}.`);
  process.exit(2);
}
const name = `${config.id}-${opts.framework}`;
const dir = join(here, 'results', 'profiles');
const tmp = join(dir, `.tmp-${process.pid}`);
mkdirSync(tmp, { recursive: true });

const receiver = await startChild(join(here, 'lib/receiver.mjs'), { name: 'receiver' });
const loader = await startChild(join(here, 'lib/loader.mjs'), { name: 'loader' });
const app = await startChild(join(here, 'apps/http-app.mjs'), {
  name,
  env: { ...config.env, BENCH_FRAMEWORK: opts.framework, BENCH_SERVICE: name, BENCH_OTLP_URL: receiver.info.url, BENCH_OTLP_METRICS_URL: receiver.info.url.replace(/\/v1\/traces$/, '/v1/metrics') },
  execArgv: [...config.execArgv(here), '--cpu-prof', '--cpu-prof-dir', tmp, `--cpu-prof-interval`, opts.interval],
});
const url = `${app.info.url}42`;
await loader.request('run', { url, seconds: Number(opts.warmup), connections: Number(opts.connections) });
const from = await app.request('mark');
const load = await loader.request('run', { url, seconds: Number(opts.seconds), connections: Number(opts.connections) });
const to = await app.request('mark');
await app.stop();
await loader.stop();
await receiver.stop();

const written = readdirSync(tmp).filter((f) => f.endsWith('.cpuprofile'));
if (written.length !== 1) {
  console.error(`Expected one profile in ${tmp}, found ${written.length}.`);
  process.exit(1);
}
const file = join(dir, `${name}.cpuprofile`);
renameSync(join(tmp, written[0]), file);
rmSync(tmp, { recursive: true, force: true });

const summary = summarise(file, { top: Number(opts.top), fromUs: from.hrUs, toUs: to.hrUs });
const requests = to.handled - from.handled;
const cpuUs = to.cpu.user + to.cpu.system - from.cpu.user - from.cpu.system;
const report = {
  config: config.id,
  framework: opts.framework,
  requests,
  rps: load.rps,
  cpuUsPerRequest: cpuUs / requests,
  ...summary,
};
writeFileSync(join(here, 'results', `profile-${name}.json`), `${JSON.stringify(report, null, 2)}\n`);

const usPerReq = (ms) => ((ms * 1000) / requests).toFixed(1);
console.log(`${name}: ${requests} requests in the window, ${load.rps.toFixed(0)} req/s, ${report.cpuUsPerRequest.toFixed(0)} µs CPU/request (process.cpuUsage)`);
const idle = summary.areas.find((a) => a.area === 'idle')?.ms ?? 0;
console.log(`profiled busy time ${summary.busyMs.toFixed(0)} ms (${usPerReq(summary.busyMs)} µs/request), idle ${idle.toFixed(0)} ms`);
console.log('Note: on a busy machine, time this process spends descheduled is charged to the frame it was in,');
console.log('mostly socket writes (writev / writeBuffer): read those as contention, not as their own cost.\n');
console.log('Self time by area (% of busy time):');
for (const a of summary.areas.filter((a) => a.area !== 'idle').slice(0, 14)) {
  console.log(`  ${a.area.padEnd(28)} ${a.ms.toFixed(0).padStart(7)} ms  ${a.pctBusy.toFixed(1).padStart(5)}%  ${usPerReq(a.ms).padStart(6)} µs/req`);
}
console.log('\nOur functions (dist/), inclusive time:');
for (const f of summary.ours) {
  console.log(`  ${f.pctBusy.toFixed(1).padStart(5)}%  ${usPerReq(f.inclusiveMs).padStart(6)} µs/req incl, ${usPerReq(f.selfMs).padStart(5)} self  ${f.fn}`);
  if (f.inclusiveMs > summary.busyMs * 0.004) {
    for (const c of f.callees.filter((c) => c.ms > summary.busyMs * 0.002)) {
      console.log(`  ${''.padStart(14)}${usPerReq(c.ms).padStart(6)} µs/req -> ${c.callee}`);
    }
  }
}
console.log('\nTop self time (all code):');
for (const f of summary.selfTop) {
  console.log(`  ${f.pctBusy.toFixed(1).padStart(5)}%  ${usPerReq(f.ms).padStart(6)} µs/req  ${f.fn}`);
}
console.log(`\nProfile: ${file}`);
