// `npm run test:nest11`: the unit specs, and the end-to-end tests that need only Nest and the
// brokers (HTTP on express and fastify, NATS, RabbitMQ, Kafka, the module, sagas), against Nest 11:
// the latest 11.x, then the oldest 11.x otel-nest supports (NEST11_FLOOR). The same test files and
// lib/ sources as `npm test` runs against Nest 12.
//
//   node scripts/test-nest11.mjs [--nest=RANGE] [vitest args]
//     --nest=RANGE     only this Nest 11 version or range (e.g. `--nest=11.2.6`, `--nest=^11.1.4`)
//     vitest args      e.g. `-t "fastify"`, `--exclude=**/broker-faults.e2e-spec.ts`, or test files /
//                      folders to run instead of FILES
//   OTEL_NEST_NEST11_DIR=/folder   where the environments live (default: <os.tmpdir()>/otel-nest-nest11)
//
// For each Nest range:
// - install: a package.json derived from the root one (Nest 11 and the packages that go with it,
//   see nest11Packages), `npm install`ed into `install-<hash of that package.json>/`, once: a later
//   run, from this checkout or another (CI's clone), with the same derived package.json reuses it.
// - work: lib/, test/ and the few files the tests read are COPIED into `work-<hash>/` on every run,
//   with `node_modules` a symlink to the install. Copied, not symlinked: Node and Vite resolve a
//   package from the real path of the importing file, so a symlinked test would load the root's
//   Nest 12.
// - there: the versions the tests resolve are printed, lib/ is typechecked against that Nest's
//   typings (what a Nest 11 project compiles otel-nest's declarations against), and vitest runs.
// Both live outside the repository, not in .build/: a package the Nest 11 set lacks would be looked
// up in the parent folders' node_modules too, i.e. in the repository's own, and found there (Nest
// 12's NATS driver, for one). Out here, a package the set does not have is missing, as in a Nest 11
// project.
//
// Every child runs on process.execPath (CI runs this on several Node versions). Exits non-zero
// when a run fails.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const node = process.execPath;
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const base = process.env.OTEL_NEST_NEST11_DIR || join(tmpdir(), 'otel-nest-nest11');

/**
 * The first Nest 11 release with the public hooks otel-nest is built on: `setOnRequestHook` /
 * `setOnResponseHook` (@nestjs/platform-express, -fastify), `setOnRouteTriggered` (@nestjs/core),
 * `setOnProcessingStartHook` / `setOnProcessingEndHook` (@nestjs/microservices). 11.1.3 and older
 * have none of them.
 */
const NEST11_FLOOR = '11.1.4';

/** What runs by default: the latest 11.x, then the floor. */
const DEFAULT_RANGES = [`^${NEST11_FLOOR}`, NEST11_FLOOR];

/**
 * What runs by default: every unit spec (lib/nest-compat.spec.ts states what differs per Nest
 * major), and every end-to-end file that needs only Nest and the brokers. Not run here:
 * - packaging, fixtures-projects: they npm-pack the repository and install it into projects of
 *   their own, with the Nest those projects pin;
 * - sample, devtools, devtools-cli: they start dist/ builds (the sample services, the trace
 *   viewer's CLI) as child processes and drive Chromium; their Nest side is the module and HTTP
 *   tracing that otel-module and http-server cover here;
 * - otlp-receiver: no Nest in it.
 */
const FILES = [
  'lib/',
  'test/http-server.e2e-spec.ts',
  'test/redaction.e2e-spec.ts',
  'test/capture.e2e-spec.ts',
  'test/sampling-rules.e2e-spec.ts',
  'test/http-client.e2e-spec.ts',
  'test/log-correlation.e2e-spec.ts',
  'test/request-id.e2e-spec.ts',
  'test/metrics.e2e-spec.ts',
  'test/metrics-transports.e2e-spec.ts',
  'test/nats.e2e-spec.ts',
  'test/rmq.e2e-spec.ts',
  'test/kafka.e2e-spec.ts',
  'test/messaging-conventions.e2e-spec.ts',
  'test/broker-faults.e2e-spec.ts',
  'test/cross-transport.e2e-spec.ts',
  'test/otel-module.e2e-spec.ts',
  'test/saga.e2e-spec.ts',
  'test/two-phase-commit.e2e-spec.ts',
  'test/grpc.e2e-spec.ts',
  'test/grpc-interop.e2e-spec.ts',
  'test/grpc-hooks.e2e-spec.ts',
  'test/enhancer-spans.e2e-spec.ts',
  'test/baggage-policy.e2e-spec.ts',
  'test/hooks.e2e-spec.ts',
  'test/redis.e2e-spec.ts',
  'test/tcp.e2e-spec.ts',
  'test/tcp-interop.e2e-spec.ts',
  'test/mqtt.e2e-spec.ts',
];

/** Copied into the work folder on every run (timestamps kept: the Kafka broker build compares them). */
const COPIED = ['lib', 'test', 'scripts', 'tools', 'tsconfig.json', 'tsconfig.build.json', 'vitest.config.mts'];

/**
 * What differs from the root's devDependencies. `nats` 2 is the driver Nest 11's NATS transport
 * loads; `@nats-io/transport-node` (Nest 12's) is left out, so that otel-nest's driver choice and
 * the tests' driver helper run on what a Nest 11 project has. `@nestjs/axios` 4 and
 * `@nestjs/swagger` 11 are the majors whose peers accept Nest 11.
 */
function nest11Packages(range) {
  return {
    '@nestjs/common': range,
    '@nestjs/core': range,
    '@nestjs/microservices': range,
    '@nestjs/platform-express': range,
    '@nestjs/platform-fastify': range,
    '@nestjs/testing': range,
    '@nestjs/axios': '^4.0.0',
    '@nestjs/swagger': '^11.0.0',
    nats: '^2.29.0',
  };
}

/**
 * Root devDependencies not installed here: Nest 12's NATS driver (see above), the `node` binary
 * (children run on process.execPath), and what only the benchmarks and the browser tests use.
 */
const LEFT_OUT = ['@nats-io/transport-node', 'node', 'autocannon', 'playwright-core'];

/** Install and work folders not used for this long are removed. */
const KEEP_UNUSED_MS = 14 * 24 * 3600 * 1000;

const hash = (text) => createHash('sha256').update(text).digest('hex').slice(0, 16);

/** A path inside the repository relative to it, any other as is. */
function show(path) {
  return path.startsWith(`${root}${sep}`) ? relative(root, path) : path;
}

function run(name, command, args, options = {}) {
  console.log(`\n> ${name}: ${[command, ...args].map(show).join(' ')}`);
  const started = Date.now();
  const result = spawnSync(command, args, { stdio: 'inherit', ...options });
  console.log(`  (${name}: ${((Date.now() - started) / 1000).toFixed(1)} s, exit ${result.status ?? result.signal})`);
  return result.status === 0;
}

function fail(message) {
  console.error(`test-nest11: ${message}`);
  process.exit(1);
}

/** Fails when a parent folder of `folder` has a node_modules: its packages would stand in for missing ones. */
function checkNoParentModules(folder) {
  for (let parent = dirname(folder); ; parent = dirname(parent)) {
    if (existsSync(join(parent, 'node_modules'))) {
      fail(
        `${join(parent, 'node_modules')} is visible from ${folder}: packages the Nest 11 set lacks would load from there. ` +
          'Set OTEL_NEST_NEST11_DIR to a folder with no node_modules above it.',
      );
    }
    if (dirname(parent) === parent) {
      return;
    }
  }
}

function derivedPackageJson(range) {
  const rootPackage = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const devDependencies = { ...rootPackage.devDependencies, ...nest11Packages(range) };
  for (const name of LEFT_OUT) {
    delete devDependencies[name];
  }
  return {
    name: 'otel-nest-nest11',
    private: true,
    description: `Generated by scripts/test-nest11.mjs: otel-nest's tests against Nest ${range}. Do not edit.`,
    type: rootPackage.type,
    dependencies: rootPackage.dependencies,
    devDependencies: Object.fromEntries(Object.entries(devDependencies).sort(([a], [b]) => a.localeCompare(b))),
    // Nest's own postinstall only advertises Open Collective.
    allowScripts: { ...rootPackage.allowScripts, '@nestjs/core': false },
  };
}

/**
 * npm's CLI script, to run on process.execPath: the one `npm run` was started with, else the one
 * next to this Node, else the `npm` on PATH (whose shebang would pick the PATH's Node).
 */
function npmCli() {
  const candidates = [
    process.env.npm_execpath,
    join(dirname(node), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js'),
    ...(process.env.PATH ?? '').split(delimiter).map((folder) => join(folder, 'npm')),
  ];
  for (const candidate of candidates) {
    if (candidate && existsSync(candidate)) {
      const real = realpathSync(candidate);
      if (/npm-cli\.js$/.test(real)) {
        return real;
      }
    }
  }
  return fail('npm not found (looked for npm-cli.js through npm_execpath, next to Node, and on PATH).');
}

/**
 * The install folder of `range`'s derived package.json, installing it first if no run did yet.
 * npm installs into a temporary folder that is renamed when done, so a folder under its final name
 * is always complete, and two runs installing at once do not mix.
 */
function install(range) {
  const text = `${JSON.stringify(derivedPackageJson(range), null, 2)}\n`;
  const folder = join(base, `install-${hash(text)}`);
  if (existsSync(folder)) {
    console.log(`\n> install: reused ${folder}`);
  } else {
    const temporary = `${folder}.tmp-${process.pid}`;
    rmSync(temporary, { recursive: true, force: true });
    mkdirSync(temporary, { recursive: true });
    writeFileSync(join(temporary, 'package.json'), text);
    const ok = run('install', node, [npmCli(), 'install', '--prefer-offline', '--no-audit', '--no-fund'], { cwd: temporary });
    if (!ok) {
      rmSync(temporary, { recursive: true, force: true });
      fail(`npm install of Nest ${range} failed.`);
    }
    try {
      renameSync(temporary, folder);
    } catch (err) {
      // Another run finished the same install first: use that one.
      rmSync(temporary, { recursive: true, force: true });
      if (!existsSync(folder)) {
        throw err;
      }
    }
  }
  const now = new Date();
  utimesSync(folder, now, now);
  return folder;
}

/** Removes the folders no run has used for KEEP_UNUSED_MS, and temporary installs of dead runs. */
function pruneFolders() {
  for (const name of existsSync(base) ? readdirSync(base) : []) {
    const folder = join(base, name);
    const temporary = /^install-.*\.tmp-(\d+)$/.exec(name);
    const stale = /^(install|work)-/.test(name) && !temporary && Date.now() - statSync(folder).mtimeMs > KEEP_UNUSED_MS;
    if (stale || (temporary && !isRunning(Number(temporary[1])))) {
      rmSync(folder, { recursive: true, force: true });
    }
  }
}

function isRunning(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

/** The work folder of this checkout and range: fresh copies of the sources, the install's node_modules. */
function prepareWork(range, installed) {
  const work = join(base, `work-${hash(`${root}\0${range}`)}`);
  mkdirSync(work, { recursive: true });
  const now = new Date();
  utimesSync(work, now, now);
  for (const entry of [...COPIED, 'node_modules', 'package.json']) {
    rmSync(join(work, entry), { recursive: true, force: true });
  }
  for (const entry of COPIED) {
    cpSync(join(root, entry), join(work, entry), { recursive: true, preserveTimestamps: true });
  }
  // Its `type: module` makes the sources ESM here too, as in the repository.
  cpSync(join(installed, 'package.json'), join(work, 'package.json'));
  symlinkSync(join(installed, 'node_modules'), join(work, 'node_modules'), 'dir');
  // The Kafka test broker is built once, in the root's .build/, and shared.
  mkdirSync(join(work, '.build'), { recursive: true });
  const broker = join(work, '.build', 'kafka-broker');
  rmSync(broker, { force: true });
  symlinkSync(join(root, '.build', 'kafka-broker'), broker);
  return work;
}

/**
 * Prints the versions the tests will load, resolved from the work folder's test/ as the tests
 * resolve them; returns @nestjs/core's.
 */
function printVersions(range, work) {
  const names = [
    ...Object.keys(nest11Packages(range)),
    '@nats-io/transport-node',
    'rxjs',
    'kafkajs',
    'amqplib',
    'amqp-connection-manager',
    'fastify',
    'express',
    'vitest',
  ];
  const script = `
    const { existsSync, readFileSync, realpathSync } = require('node:fs');
    const { join } = require('node:path');
    const paths = require('node:module').createRequire(join(process.cwd(), 'test', 'x.js')).resolve.paths('x');
    for (const name of ${JSON.stringify(names)}) {
      const folder = paths.map((base) => join(base, name)).find((folder) => existsSync(join(folder, 'package.json')));
      const version = folder ? JSON.parse(readFileSync(join(folder, 'package.json'), 'utf8')).version : 'not installed';
      console.log('  ' + name.padEnd(28) + version.padEnd(10) + (folder ? realpathSync(folder) : ''));
    }`;
  console.log(`\nNest ${range}: Node ${process.version} (${node}); the tests in ${work} load:`);
  const result = spawnSync(node, ['-e', script], { cwd: work, encoding: 'utf8' });
  if (result.status !== 0) {
    fail(`could not read the installed versions:\n${result.stderr}`);
  }
  process.stdout.write(result.stdout);
  return /@nestjs\/core\s+(\S+)/.exec(result.stdout)?.[1] ?? range;
}

const started = Date.now();
const nestOption = process.argv.slice(2).find((arg) => arg.startsWith('--nest='));
const ranges = nestOption ? [nestOption.slice('--nest='.length)] : DEFAULT_RANGES;
const vitestArgs = process.argv.slice(2).filter((arg) => arg !== nestOption);
// Test files or folders given instead of FILES: positional arguments only (an `--exclude=glob` is an option).
const files = vitestArgs.some((arg) => !arg.startsWith('-') && /\.ts$|\//.test(arg)) ? [] : FILES;

mkdirSync(base, { recursive: true });
checkNoParentModules(join(base, 'x'));
pruneFolders();
if (!run('brokers', node, [join(root, 'scripts', 'ensure-services.mjs')])) {
  fail('the brokers are not up.');
}
if (!run('Kafka test broker (librdkafka mock cluster)', node, [join(root, 'scripts', 'kafka-broker.mjs'), 'build'])) {
  fail('the Kafka test broker could not be built.');
}

const outcomes = [];
for (const range of ranges) {
  const rangeStarted = Date.now();
  const work = prepareWork(range, install(range));
  const core = printVersions(range, work);
  const tsc = join(work, 'node_modules', 'typescript', 'bin', 'tsc');
  const typed = run(`typecheck lib/ against Nest ${core}`, node, [tsc, '-p', 'tsconfig.build.json', '--noEmit'], { cwd: work });
  const vitest = join(work, 'node_modules', 'vitest', 'vitest.mjs');
  const tested = run(`vitest on Nest ${core}`, node, [vitest, 'run', ...files, ...vitestArgs], { cwd: work });
  outcomes.push({ range, core, ok: typed && tested, seconds: (Date.now() - rangeStarted) / 1000 });
}

console.log('\nNest 11 runs:');
for (const { range, core, ok, seconds } of outcomes) {
  console.log(`  Nest ${core} (${range}): ${ok ? 'passed' : 'FAILED'} in ${seconds.toFixed(1)} s`);
}
console.log(`  total ${((Date.now() - started) / 1000).toFixed(1)} s`);
process.exit(outcomes.every(({ ok }) => ok) ? 0 : 1);
