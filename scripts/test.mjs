// `npm test`: everything a fresh clone needs, in order. Builds dist/ first because the
// child-process tests (CommonJS/ESM consumers, SIGTERM flush, the register preload, the fixture
// projects) load the package the way users do, through its `exports`.
//
// Every step runs on the Node that runs this script (process.execPath), never on whatever `node`
// is first on PATH: `npm test` runs it on the project's Node (the `node` dev dependency), and
// `.ci/run` runs it directly on Node 22 and 26 as well.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const node = process.execPath;
// The bins themselves (not `npx`, whose PATH would put the project's Node first again).
const bin = (path) => fileURLToPath(new URL(`../node_modules/${path}`, import.meta.url));
const tsc = bin('typescript/bin/tsc');
const vitest = bin('vitest/vitest.mjs');

const steps = [
  ['build (ESM + CommonJS)', [node, 'scripts/build.mjs']],
  ['typecheck', [node, tsc, '-p', 'tsconfig.json', '--noEmit']],
  ['brokers', [node, 'scripts/ensure-services.mjs']],
  ['Kafka test broker (librdkafka mock cluster)', [node, 'scripts/kafka-broker.mjs', 'build']],
  ['unit and end-to-end tests', [node, vitest, 'run', ...process.argv.slice(2)]],
];

console.log(`Node ${process.version} (${node})`);
for (const [name, [command, ...args]] of steps) {
  console.log(`\n> ${name}: ${[command, ...args].join(' ')}`);
  const result = spawnSync(command, args, { stdio: 'inherit' });
  if (result.status !== 0) {
    console.error(`\n${name} failed (exit ${result.status ?? result.signal}).`);
    process.exit(result.status ?? 1);
  }
}
