// CPU profiles of a messaging configuration under load: `node --cpu-prof` on the server and the
// client process, summarised over the steady-state window (warm-up excluded).
//
//   node bench/profile-msg.mjs [--transport nats|rmq|grpc] [--mode rr|emit] [--tracing otel-nest|none]
//                              [--seconds 10] [--warmup 3] [--top 20]
import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startChild } from './lib/ipc.mjs';
import { summarise } from './lib/cpuprofile.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const { values: opts } = parseArgs({
  options: {
    transport: { type: 'string', default: 'nats' },
    mode: { type: 'string', default: 'rr' },
    tracing: { type: 'string', default: 'otel-nest' },
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '3' },
    top: { type: 'string', default: '20' },
    interval: { type: 'string', default: '250' },
  },
});
const name = `${opts.transport}-${opts.mode}-${opts.tracing}`;
const dir = join(here, 'results', 'profiles');
const tmp = { server: join(dir, `.tmp-${process.pid}-server`), client: join(dir, `.tmp-${process.pid}-client`) };
for (const d of Object.values(tmp)) mkdirSync(d, { recursive: true });
const prof = (d) => ['--cpu-prof', '--cpu-prof-dir', d, '--cpu-prof-interval', opts.interval];

const receiver = await startChild(join(here, 'lib/receiver.mjs'), { name: 'receiver' });
const env = {
  BENCH_TRANSPORT: opts.transport,
  BENCH_TRACING: opts.tracing,
  BENCH_PREFIX: `otel-nest-bench.profile-${process.pid}`,
  BENCH_OTLP_URL: receiver.info.url,
};
// gRPC (unary, rr only): its own apps; the server reports the port it listens on.
const grpc = opts.transport === 'grpc';
let client;
const server = await startChild(join(here, grpc ? 'apps/grpc-server.mjs' : 'apps/msg-server.mjs'), {
  name: 'server',
  env: { ...env, BENCH_SERVICE: `${name}-server` },
  execArgv: prof(tmp.server),
  onMessage: (m) => m?.type === 'progress' && client?.send({ type: 'consumed', consumed: m.consumed }),
});
client = await startChild(join(here, grpc ? 'apps/grpc-client.mjs' : 'apps/msg-client.mjs'), {
  name: 'client',
  env: { ...env, BENCH_SERVICE: `${name}-client`, ...(grpc ? { BENCH_GRPC_URL: server.info.url } : {}) },
  execArgv: prof(tmp.client),
});

const run = async (seconds) => {
  if (opts.mode === 'rr') return client.request('requestReply', { seconds });
  const { consumed } = await server.request('mark');
  const e = await client.request('emit', { seconds, startConsumed: consumed });
  return { messages: e.consumed, rate: e.consumed / e.seconds };
};
await run(Number(opts.warmup));
const now = () => Number(process.hrtime.bigint() / 1000n);
const from = now();
const s0 = await server.request('mark');
const load = await run(Number(opts.seconds));
const s1 = await server.request('mark');
const to = now();
await client.stop();
await server.stop();
await receiver.stop();

const messages = load.messages;
console.log(`${name}: ${messages} messages, ${load.rate.toFixed(0)} msg/s; server ${(((s1.cpu.user + s1.cpu.system - s0.cpu.user - s0.cpu.system)) / messages).toFixed(0)} µs CPU/msg`);
const report = { name, messages, rate: load.rate };
for (const role of ['server', 'client']) {
  const files = readdirSync(tmp[role]).filter((f) => f.endsWith('.cpuprofile'));
  const file = join(dir, `${name}-${role}.cpuprofile`);
  renameSync(join(tmp[role], files[0]), file);
  rmSync(tmp[role], { recursive: true, force: true });
  const summary = summarise(file, { top: Number(opts.top), fromUs: from, toUs: to });
  report[role] = summary;
  const per = (ms) => ((ms * 1000) / messages).toFixed(1);
  console.log(`\n== ${role}: busy ${summary.busyMs.toFixed(0)} ms (${per(summary.busyMs)} µs/msg)`);
  for (const a of summary.areas.filter((a) => a.area !== 'idle').slice(0, 10)) console.log(`  ${a.area.padEnd(28)} ${per(a.ms).padStart(7)} µs/msg`);
  console.log('  our functions, inclusive:');
  for (const f of summary.ours.slice(0, Number(opts.top))) {
    console.log(`  ${per(f.inclusiveMs).padStart(7)} µs/msg incl, ${per(f.selfMs).padStart(5)} self  ${f.fn}`);
    for (const c of f.callees.filter((c) => c.ms * 1000 > messages * 2)) console.log(`  ${''.padStart(12)}${per(c.ms).padStart(7)} -> ${c.callee}`);
  }
  console.log('  top self:');
  for (const f of summary.selfTop.slice(0, 12)) console.log(`  ${per(f.ms).padStart(7)} µs/msg  ${f.fn}`);
}
writeFileSync(join(here, 'results', `profile-${name}.json`), `${JSON.stringify(report, null, 2)}\n`);
