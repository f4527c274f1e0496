import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './child-app.js';

/**
 * Projects set up as a user sets one up: a fixture folder copied to a fresh temporary directory,
 * then `npm install` of the packed otel-nest tarball (`npm pack` of this repository, built dist/
 * included) and of the fixture's own real dependencies from the registry. Nothing is linked to
 * this repository's node_modules.
 */

// Per test process: several test files (or runs) may pack at once.
const PACK_DIR = join(ROOT, '.build', `pack-${process.pid}`);

interface NpmOutput {
  stdout: string;
  stderr: string;
}

/** The npm executable next to the Node that runs the tests (the same npm the user would run). */
function npm(args: string[], cwd: string, timeoutMs = 240_000): NpmOutput {
  const result = spawnSync(process.platform === 'win32' ? 'npm.cmd' : 'npm', args, {
    cwd,
    encoding: 'utf8',
    timeout: timeoutMs,
    env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (result.error) {
    throw Object.assign(result.error, { stdout: result.stdout, stderr: result.stderr });
  }
  if (result.status !== 0) {
    const reason = result.signal ? `was killed by ${result.signal}` : `exited with ${result.status}`;
    throw Object.assign(new Error(`npm ${args.join(' ')} ${reason}`), { stdout: result.stdout, stderr: result.stderr });
  }
  return { stdout: result.stdout, stderr: result.stderr };
}

let packed: string | undefined;

/**
 * `npm pack` of this repository into .build/pack-<pid> (once per test process). dist/ must be built
 * (`npm test` builds it first). Returns the tarball's absolute path.
 */
export function packOtelNest(): string {
  if (packed && existsSync(packed)) {
    return packed;
  }
  if (!existsSync(join(ROOT, 'dist', 'esm', 'index.js')) || !existsSync(join(ROOT, 'dist', 'cjs', 'index.js'))) {
    throw new Error('dist/ is missing: run `npm run build` (npm test does) before packing otel-nest.');
  }
  rmSync(PACK_DIR, { recursive: true, force: true });
  mkdirSync(PACK_DIR, { recursive: true });
  // --ignore-scripts: no prepack/prepare hooks; the tarball holds exactly what `files` lists.
  npm(['pack', '--ignore-scripts', '--pack-destination', PACK_DIR], ROOT);
  const tarball = readdirSync(PACK_DIR).find((name) => name.endsWith('.tgz'));
  if (!tarball) {
    throw new Error(`npm pack wrote no tarball into ${PACK_DIR}`);
  }
  packed = join(PACK_DIR, tarball);
  return packed;
}

export interface PackedProject {
  /** The project's directory (a fresh temporary directory). */
  readonly dir: string;
  /** What `npm install` printed, stdout then stderr (npm's warnings, e.g. peer-dependency conflicts, are on stderr). */
  readonly installOutput: string;
  /** Runs `npm <args>` in the project and returns its stdout; throws with stdout+stderr on failure. */
  npm(args: string[], timeoutMs?: number): string;
  /** Removes the directory. */
  remove(): void;
}

/**
 * Copies `test/fixtures/<fixture>` (everything but node_modules) into a fresh temporary directory
 * and installs the packed otel-nest into it with the fixture's package.json dependencies.
 * `extraPackages` are installed in the same `npm install` (e.g. `['@nestjs/core@11']`).
 */
export function createPackedProject(fixture: string, extraPackages: string[] = []): PackedProject {
  const source = join(ROOT, 'test', 'fixtures', fixture);
  if (!existsSync(source) || !statSync(source).isDirectory()) {
    throw new Error(`no fixture project at ${source}`);
  }
  const dir = mkdtempSync(join(tmpdir(), `otel-nest-${fixture.replaceAll('/', '-')}-`));
  cpSync(source, dir, { recursive: true, filter: (path) => !path.includes('node_modules') });
  const run = (args: string[], timeoutMs?: number): NpmOutput => {
    try {
      return npm(args, dir, timeoutMs);
    } catch (error) {
      const failed = error as { stdout?: string; stderr?: string; message: string };
      throw new Error(`npm ${args.join(' ')} failed in ${dir}:\n${failed.stdout ?? ''}\n${failed.stderr ?? failed.message}`);
    }
  };
  let install: NpmOutput;
  try {
    const args = ['install', '--no-package-lock', '--prefer-offline', packOtelNest(), ...extraPackages];
    install = installCache ? cachedInstall(installCache, source, dir, args, () => run(args)) : run(args);
  } catch (error) {
    // No project is returned, so no caller could remove the directory.
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    dir,
    installOutput: `${install.stdout}\n${install.stderr}`,
    npm: (args, timeoutMs) => run(args, timeoutMs).stdout,
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * `OTEL_NEST_INSTALL_CACHE=<dir>` (set by .ci/run, which runs the suite once per Node line): an
 * install is done for real the first time, then its node_modules, package.json and npm output are
 * reused (hard-linked) by later runs that install the same tarball bytes into the same fixture
 * with the same npm, so each Node line still runs every fixture project without installing it again.
 */
const installCache = process.env.OTEL_NEST_INSTALL_CACHE;

function cachedInstall(cache: string, source: string, dir: string, args: string[], install: () => NpmOutput): NpmOutput {
  const hash = createHash('sha256');
  hash.update(npm(['--version'], dir).stdout);
  hash.update(readFileSync(packOtelNest()));
  hash.update(readFileSync(join(source, 'package.json')));
  hash.update(JSON.stringify(args.slice(4)));
  const entry = join(cache, hash.digest('hex').slice(0, 24));
  if (!existsSync(join(entry, 'output.json'))) {
    const output = install();
    const staging = `${entry}.${process.pid}`;
    rmSync(staging, { recursive: true, force: true });
    mkdirSync(staging, { recursive: true });
    copyTree(join(dir, 'node_modules'), join(staging, 'node_modules'));
    cpSync(join(dir, 'package.json'), join(staging, 'package.json'));
    writeFileSync(join(staging, 'output.json'), JSON.stringify(output));
    rmSync(entry, { recursive: true, force: true });
    renameSync(staging, entry);
    return output;
  }
  copyTree(join(entry, 'node_modules'), join(dir, 'node_modules'));
  cpSync(join(entry, 'package.json'), join(dir, 'package.json'));
  return JSON.parse(readFileSync(join(entry, 'output.json'), 'utf8')) as NpmOutput;
}

/** Hard links where the file system allows (fast, no copy of ~100 MB), a real copy otherwise. */
function copyTree(from: string, to: string): void {
  if (spawnSync('cp', ['-al', from, to]).status !== 0) {
    rmSync(to, { recursive: true, force: true });
    cpSync(from, to, { recursive: true, verbatimSymlinks: true });
  }
}
