// `npm test`: everything a fresh clone needs, in order. Builds dist/ first because the
// child-process tests (CommonJS/ESM consumers, SIGTERM flush, the register preload) load the
// package the way users do, through its `exports`.
import { spawnSync } from 'node:child_process';

const steps = [
  ['build', ['npx', 'tsc', '-p', 'tsconfig.build.json']],
  ['typecheck', ['npx', 'tsc', '-p', 'tsconfig.json', '--noEmit']],
  ['brokers', ['node', 'scripts/ensure-services.mjs']],
  ['Kafka test broker (librdkafka mock cluster)', ['node', 'scripts/kafka-broker.mjs', 'build']],
  ['unit and end-to-end tests', ['npx', 'vitest', 'run', ...process.argv.slice(2)]],
];

for (const [name, [command, ...args]] of steps) {
  console.log(`\n> ${name}: ${command} ${args.join(' ')}`);
  const result = spawnSync(command, args, { stdio: 'inherit' });
  if (result.status !== 0) {
    console.error(`\n${name} failed (exit ${result.status ?? result.signal}).`);
    process.exit(result.status ?? 1);
  }
}
