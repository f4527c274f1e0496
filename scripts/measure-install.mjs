// What installing otel-nest adds to a Nest application: packages, disk, and load time.
//
//   npm run measure:install
//
// Builds and packs this repository, then installs into two fresh projects in a temporary folder:
//   base:  @nestjs/common, @nestjs/core, @nestjs/platform-express 12, reflect-metadata, rxjs,
//          @opentelemetry/api (what a Nest app that traces has anyway)
//   +otel: the same plus the packed otel-nest
// and prints the difference in installed packages (`npm ls --all --parseable`), in bytes on disk
// (node_modules), and in the time to load the package (median of fresh processes, CommonJS
// `require` and ESM `import`). The biggest installed packages are listed to show where size goes.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const BASE = ['@nestjs/common@12', '@nestjs/core@12', '@nestjs/platform-express@12', 'reflect-metadata', 'rxjs', '@opentelemetry/api@1.10'];
const RUNS = Number(process.env.MEASURE_RUNS ?? 15);

const npm = (args, cwd) =>
  execFileSync('npm', [...args, '--no-audit', '--no-fund'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

function diskBytes(dir) {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      total += diskBytes(path);
    } else if (entry.isFile()) {
      total += statSync(path).size;
    }
  }
  return total;
}

function project(name, packages) {
  const dir = join(work, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, version: '1.0.0', private: true }));
  npm(['install', '--prefer-offline', ...packages], dir);
  const listed = npm(['ls', '--all', '--parseable'], dir).trim().split('\n');
  return { dir, packages: new Set(listed.slice(1)).size, bytes: diskBytes(join(dir, 'node_modules')) };
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Milliseconds for a fresh process to run `code` (the process's own start subtracted via `base`). */
function loadMs(dir, args) {
  const times = [];
  for (let i = 0; i < RUNS; i++) {
    const start = process.hrtime.bigint();
    execFileSync(process.execPath, args, { cwd: dir, stdio: 'ignore' });
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  return median(times);
}

const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;

execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: root, stdio: 'inherit' });
const work = mkdtempSync(join(tmpdir(), 'otel-nest-measure-'));
try {
  const tarball = join(work, npm(['pack', '--ignore-scripts', '--pack-destination', work], root).trim().split('\n').at(-1));
  const base = project('base', BASE);
  const withOtel = project('with-otel', [...BASE, tarball]);

  const nodeModules = join(withOtel.dir, 'node_modules');
  const sizes = [];
  for (const scope of readdirSync(nodeModules)) {
    const dirs = scope.startsWith('@') ? readdirSync(join(nodeModules, scope)).map((n) => `${scope}/${n}`) : [scope];
    for (const name of dirs) {
      if (!name.startsWith('.')) sizes.push([name, diskBytes(join(nodeModules, name))]);
    }
  }
  const added = sizes.filter(([name]) => !statExists(join(base.dir, 'node_modules', name)));

  const requireBase = ['-e', "require('reflect-metadata'); require('@nestjs/core')"];
  const requireOtel = ['-e', "require('reflect-metadata'); require('@nestjs/core'); require('otel-nest')"];
  const importBase = ['--input-type=module', '-e', "import 'reflect-metadata'; await import('@nestjs/core')"];
  const importOtel = ['--input-type=module', '-e', "import 'reflect-metadata'; await import('@nestjs/core'); await import('otel-nest')"];
  const times = {
    require: [loadMs(withOtel.dir, requireBase), loadMs(withOtel.dir, requireOtel)],
    import: [loadMs(withOtel.dir, importBase), loadMs(withOtel.dir, importOtel)],
  };

  console.log(`\nNode ${process.version}; otel-nest tarball ${mb(statSync(tarball).size)} packed`);
  console.log(`packages: base ${base.packages}, with otel-nest ${withOtel.packages} (+${withOtel.packages - base.packages})`);
  console.log(`node_modules: base ${mb(base.bytes)}, with otel-nest ${mb(withOtel.bytes)} (+${mb(withOtel.bytes - base.bytes)})`);
  for (const [kind, [without, withIt]] of Object.entries(times)) {
    console.log(`load (${kind}, median of ${RUNS}): @nestjs/core ${without.toFixed(0)} ms, + otel-nest ${withIt.toFixed(0)} ms (+${(withIt - without).toFixed(0)} ms)`);
  }
  console.log('\nadded packages, largest first:');
  for (const [name, bytes] of added.sort((a, b) => b[1] - a[1])) {
    console.log(`  ${mb(bytes).padStart(8)}  ${name}`);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}

function statExists(path) {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}
