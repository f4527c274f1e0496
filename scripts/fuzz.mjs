// `npm run fuzz`: the hostile-input properties of test/hostile-input.e2e-spec.ts at a larger count.
//
//   npm run fuzz -- [--count N] [--channel http|express|fastify|nats|rmq|kafka|all] [--seed S] [--no-build]
//     --count N     inputs per channel (default 2000)
//     --channel C   which channels (default all; http = express and fastify; a comma list works too)
//     --seed S      fast-check seed (default the test's fixed seed); the same seed and count give the same inputs
//     --no-build    use the dist/ that is there (by default it is rebuilt first: the application under
//                   test loads otel-nest through its package name, as users do)
//
// Runs the same vitest test with HOSTILE_COUNT / HOSTILE_CHANNELS / HOSTILE_SEED, then prints each
// channel's summary (inputs sent, continued vs fresh roots, spans started/ended/exported, process
// alive, heap delta, violations). Exits non-zero on any violation, or when a channel produced no summary.
// Every child runs on process.execPath (the project's Node under `npm run`).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const node = process.execPath;
const ALL = ['express', 'fastify', 'nats', 'rmq', 'kafka'];

function usage(message) {
  if (message) {
    console.error(`fuzz: ${message}`);
  }
  console.error('usage: npm run fuzz -- [--count N] [--channel http|express|fastify|nats|rmq|kafka|all] [--seed S] [--no-build]');
  process.exit(2);
}

const options = { count: 2000, channels: ALL, seed: undefined, build: true };
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const [flag, inline] = args[i].split('=', 2);
  const value = () => inline ?? args[++i] ?? usage(`${flag} needs a value`);
  switch (flag) {
    case '--count': {
      options.count = Number(value());
      if (!Number.isInteger(options.count) || options.count <= 0) {
        usage('--count must be a positive integer');
      }
      break;
    }
    case '--channel':
    case '--channels': {
      const wanted = value()
        .split(',')
        .flatMap((name) => (name === 'all' ? ALL : name === 'http' ? ['express', 'fastify'] : [name]));
      const unknown = wanted.filter((name) => !ALL.includes(name));
      if (unknown.length > 0) {
        usage(`unknown channel ${unknown.join(', ')}`);
      }
      options.channels = [...new Set(wanted)];
      break;
    }
    case '--seed': {
      options.seed = Number(value());
      if (!Number.isInteger(options.seed)) {
        usage('--seed must be an integer');
      }
      break;
    }
    case '--no-build':
      options.build = false;
      break;
    case '--help':
    case '-h':
      usage();
      break;
    default:
      usage(`unknown option ${args[i]}`);
  }
}

const run = (command, commandArgs, env) => spawnSync(command, commandArgs, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });

if (options.build) {
  console.log('> build (the application under test loads otel-nest from dist/)');
  if (run(node, ['scripts/build.mjs']).status !== 0) {
    process.exit(1);
  }
}
// The brokers the channels talk to (scripts/ensure-services.mjs starts them, as `npm test` does).
const brokers = { nats: 4222, rmq: 5672 };
for (const channel of options.channels.filter((name) => name in brokers)) {
  const up = await new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port: brokers[channel] });
    socket.once('connect', () => resolve(socket.destroy() || true));
    socket.once('error', () => resolve(false));
  });
  if (!up) {
    console.error(`fuzz: nothing listens on 127.0.0.1:${brokers[channel]} for ${channel}; start it with: node scripts/ensure-services.mjs`);
    process.exit(1);
  }
}
if (options.channels.includes('kafka') && run(node, ['scripts/kafka-broker.mjs', 'build']).status !== 0) {
  process.exit(1);
}

const summaries = mkdtempSync(join(tmpdir(), 'otel-nest-fuzz-'));
const env = {
  HOSTILE_COUNT: String(options.count),
  HOSTILE_CHANNELS: options.channels.join(','),
  HOSTILE_SUMMARY_DIR: summaries,
  HOSTILE_PROGRESS: '1',
  // Roughly 2 ms an input on HTTP, 10 on Kafka on a quiet machine; generous, so that a slow
  // machine ends with a summary rather than a timeout.
  HOSTILE_TIMEOUT_MS: String(120_000 + options.count * 100),
  ...(options.seed === undefined ? {} : { HOSTILE_SEED: String(options.seed) }),
};
console.log(`\n> ${options.count} hostile inputs per channel on ${options.channels.join(', ')}${options.seed === undefined ? '' : `, seed ${options.seed}`}`);
const started = Date.now();
const vitest = run(node, [fileURLToPath(new URL('../node_modules/vitest/vitest.mjs', import.meta.url)), 'run', 'test/hostile-input.e2e-spec.ts'], env);

let failed = vitest.status !== 0;
console.log(`\n=== fuzz summary (${((Date.now() - started) / 1000).toFixed(1)} s in all) ===`);
for (const channel of options.channels) {
  const file = join(summaries, `${channel}.json`);
  if (!existsSync(file)) {
    console.log(`${channel}: no summary (the run did not get that far; see the output above)`);
    failed = true;
    continue;
  }
  const s = JSON.parse(readFileSync(file, 'utf8'));
  const o = s.outcomes;
  console.log(
    [
      `${channel}: ${s.inputs} inputs (${s.requests} requests, ${s.events} events), seed ${s.seed}, ${(s.durationMs / 1000).toFixed(1)} s`,
      `  continued ${o.continued} (+${o['continued-unsampled']} unsampled), fresh roots ${o['fresh-root']}, linked events ${o.linked}, refused before Nest ${o.refused}`,
      `  forwarded: tracestate on ${s.forwarded.fetchTracestate} fetches / ${s.forwarded.replyTracestate} replies, baggage on ${s.forwarded.fetchBaggage} fetches / ${s.forwarded.replyBaggage} replies`,
      `  spans started ${s.spansStarted}, ended ${s.spansEnded}, exported ${s.spansExported}, open at end ${s.spansOpenAtEnd}, ended twice ${s.endedTwiceWarnings}`,
      `  process alive: ${s.alive}; heap after GC ${s.heapStartMB} -> ${s.heapEndMB} MB (delta ${s.heapDeltaMB} MB, tolerance ${s.heapToleranceMB} MB)`,
      `  violations: ${s.violationCount}${s.violations.length > 0 ? `\n    ${s.violations.map((v) => v.slice(0, 1000)).join('\n    ')}` : ''}`,
    ].join('\n'),
  );
  if (s.violationCount > 0 || !s.alive) {
    failed = true;
  }
}
rmSync(summaries, { recursive: true, force: true });
console.log(failed ? '\nfuzz: FAILED' : '\nfuzz: no violation');
process.exit(failed ? 1 : 0);
