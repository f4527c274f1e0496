// The Kafka-protocol broker of the tests and the local sample: librdkafka's mock cluster, compiled
// from tools/kafka-broker/mock-broker.c (see its header comment).
//
//   node scripts/kafka-broker.mjs build               compile .build/kafka-broker if missing or stale
//   node scripts/kafka-broker.mjs start [topic[:n]]   build, then run it in the foreground (Ctrl-C stops)
//
// Needs a C compiler and Debian's librdkafka-dev (2.0.2 has the mock cluster). Running as root
// (CI), a missing librdkafka-dev is installed with apt-get; otherwise the script says what to install.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const source = join(root, 'tools', 'kafka-broker', 'mock-broker.c');
export const binary = join(root, '.build', 'kafka-broker');

const INSTALL_HINT =
  'The Kafka test broker needs the librdkafka development package (header <librdkafka/rdkafka_mock.h>, library -lrdkafka).\n' +
  'Install it with:  sudo apt-get update && sudo apt-get install -y librdkafka-dev\n' +
  '(on macOS: brew install librdkafka, then CFLAGS="-I$(brew --prefix)/include" LDFLAGS="-L$(brew --prefix)/lib").';

function isStale() {
  return !existsSync(binary) || statSync(binary).mtimeMs < statSync(source).mtimeMs;
}

function compile() {
  const cc = process.env.CC || 'gcc';
  const flags = [
    ...(process.env.CFLAGS?.split(/\s+/).filter(Boolean) ?? []),
    '-O2',
    '-Wall',
    '-o',
    `${binary}.tmp`,
    source,
    ...(process.env.LDFLAGS?.split(/\s+/).filter(Boolean) ?? []),
    '-lrdkafka',
    '-lpthread',
  ];
  const result = spawnSync(cc, flags, { encoding: 'utf8' });
  if (result.error) {
    return { ok: false, output: `${cc}: ${result.error.message}`, noCompiler: true };
  }
  return { ok: result.status === 0, output: `${result.stdout}${result.stderr}` };
}

function installLibrdkafka() {
  console.error('kafka-broker: librdkafka-dev is missing; installing it with apt-get (running as root).');
  for (const args of [['update'], ['install', '-y', 'librdkafka-dev']]) {
    const result = spawnSync('apt-get', args, { stdio: ['ignore', 'ignore', 'inherit'] });
    if (result.status !== 0) {
      return false;
    }
  }
  return true;
}

/** Compiles the broker unless an up-to-date binary exists. Returns its path; throws with what to install. */
export function build() {
  if (!isStale()) {
    return binary;
  }
  mkdirSync(dirname(binary), { recursive: true });
  let result = compile();
  const missingHeaders = !result.ok && /rdkafka(_mock)?\.h|-lrdkafka|cannot find -lrdkafka/.test(result.output);
  if (missingHeaders && process.getuid?.() === 0 && existsSync('/usr/bin/apt-get') && installLibrdkafka()) {
    result = compile();
  }
  if (!result.ok) {
    rmSync(`${binary}.tmp`, { force: true });
    const hint = result.noCompiler
      ? 'A C compiler is needed to build the Kafka test broker: sudo apt-get install -y gcc (or set CC).'
      : INSTALL_HINT;
    throw new Error(`Could not build the Kafka test broker from ${source}.\n${result.output.trim()}\n\n${hint}`);
  }
  // Written under another name first, so a broker started concurrently never runs a half-written file.
  renameSync(`${binary}.tmp`, binary);
  return binary;
}

async function main() {
  const [command = 'build', ...topics] = process.argv.slice(2);
  try {
    build();
  } catch (err) {
    console.error(err.message);
    process.exit(1);
  }
  if (command === 'build') {
    console.log(`kafka-broker: ${binary} is ready.`);
    return;
  }
  if (command !== 'start') {
    console.error(`Unknown command "${command}". Use: node scripts/kafka-broker.mjs build | start [topic[:partitions]]...`);
    process.exit(2);
  }
  const broker = spawn(binary, topics, { stdio: ['ignore', 'pipe', 'inherit'] });
  broker.stdout.once('data', (chunk) => {
    const address = String(chunk).trim();
    console.log(`Kafka-protocol test broker (librdkafka mock cluster) listening on ${address}`);
    console.log(`Use it with KAFKA_BROKERS=${address} and consumer maxWaitTimeInMs: 50. Ctrl-C stops it.`);
  });
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, () => broker.kill('SIGTERM'));
  }
  broker.on('exit', (code) => process.exit(code ?? 0));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await main();
}
