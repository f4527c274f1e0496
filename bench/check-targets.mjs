// Reads bench/results/latest.json (or the file given) and prints every target of issue 14 as met
// or not met, with the numbers. Exits 0 either way: a slow result is a result, not a failure
// (`--strict` exits 1 when a target is not met, for whoever wants a gate).
//
//   node bench/check-targets.mjs [path/to/latest.json] [--strict]
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { checkSummary, renderTargets } from './lib/targets.mjs';

const args = process.argv.slice(2);
const strict = args.includes('--strict');
const file = args.find((a) => !a.startsWith('--')) ?? fileURLToPath(new URL('results/latest.json', import.meta.url));
let report;
try {
  report = JSON.parse(readFileSync(file, 'utf8'));
} catch (err) {
  console.error(`Cannot read ${file}: ${err.message}. Run \`npm run bench\` first.`);
  process.exit(2);
}
if (!report.summary) {
  console.error(`${file} has no "summary" (written by an older bench/run.mjs). Run \`npm run bench\` again.`);
  process.exit(2);
}
const targets = checkSummary(report.summary);
console.log(`${file}: Node ${report.node ?? '?'}, ${report.date ?? '?'}, ${report.options?.quick ? 'quick' : 'full'} run`);
console.log(renderTargets(targets, { plain: true }).trimEnd());
const missing = ['http-express', 'http-fastify', 'nats-rr', 'rmq-rr', 'kafka-emit', 'grpc-unary', 'tcp-rr', 'redis-rr', 'mqtt-rr', 'http-pg'].filter((id) => !report.summary[id]);
if (missing.length) console.log(`Not in this run: ${missing.join(', ')}.`);
const notMet = targets.filter((t) => !t.ok).length;
console.log(`${targets.length - notMet} of ${targets.length} met.`);
if (strict && notMet > 0) process.exitCode = 1;
