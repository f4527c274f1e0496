// The library a run measures, fixed at its start: dist/ and package.json are copied to
// .build/bench-snapshot-<pid>/node_modules/otel-nest, and the processes under test resolve
// `otel-nest` (and `otel-nest/register`, ...) there through lib/snapshot-hook.mjs. Others rebuild
// dist/ while a 10-minute run goes on; without the copy, a run would measure two libraries, or
// fail halfway when dist/ is deleted for a rebuild.
import { cpSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** Copies the built library; returns `{ dir, remove }` (dir: BENCH_LIB_SNAPSHOT for the hook). */
export function snapshotLibrary() {
  if (!existsSync(join(root, 'dist', 'esm', 'index.js'))) {
    throw new Error('dist/ is not built: run `npm run build` (or `npm run bench`, which builds first).');
  }
  const dir = join(root, '.build', `bench-snapshot-${process.pid}`);
  const pkg = join(dir, 'node_modules', 'otel-nest');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(pkg, { recursive: true });
  // A package scope of its own: from inside /work/main's scope, `otel-nest` would resolve to the
  // project itself (package self-reference) before node_modules is looked at.
  writeFileSync(join(dir, 'package.json'), '{ "name": "otel-nest-bench-snapshot", "private": true, "type": "module" }\n');
  cpSync(join(root, 'package.json'), join(pkg, 'package.json'));
  cpSync(join(root, 'dist'), join(pkg, 'dist'), { recursive: true });
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
