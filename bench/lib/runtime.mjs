// Which Node runs the processes under test. By default the project's own `node` devDependency
// (Node 24, the platform users run), whatever Node started the orchestrator; `--node PATH` (a
// node binary) or `--node 22.15.0` (a release from the npm registry, installed into .build/ by
// scripts/node-runtime.mjs) picks another, so that tables of several Node lines can be compared.
import { execFileSync } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** The project's Node (node_modules/node/bin/node), or this process's when it is not installed. */
export function projectNode() {
  const bin = join(root, 'node_modules', 'node', 'bin', 'node');
  return existsSync(bin) ? realpathSync(bin) : process.execPath;
}

/** `{ execPath, version }` for `--node` (undefined: the project's Node). Throws with a reason. */
export function resolveNode(spec) {
  let execPath;
  if (spec === undefined || spec === '') {
    execPath = projectNode();
  } else if (/^v?\d+\.\d+\.\d+$/.test(spec)) {
    const version = spec.replace(/^v/, '');
    const bin = execFileSync(process.execPath, [join(root, 'scripts', 'node-runtime.mjs'), version], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    }).trim();
    execPath = join(bin, 'node');
  } else {
    execPath = spec;
    if (!existsSync(execPath)) throw new Error(`--node ${spec}: no such file (give a node binary or a version like 22.15.0).`);
  }
  const version = execFileSync(execPath, ['--version'], { encoding: 'utf8' }).trim();
  // The library's engines (OpenTelemetry SDK 3), and module.registerHooks (lib/snapshot-hook.mjs).
  const [major, minor] = version.slice(1).split('.').map(Number);
  if (major < 22 || (major === 22 && minor < 15)) {
    throw new Error(`--node ${spec}: ${execPath} is Node ${version}; the library and the bench need Node >= 22.15.`);
  }
  return { execPath, version };
}
