// `npm run build`: the two builds of the package, from the same sources in lib/.
//   dist/esm  ES modules (tsconfig.build.json: NodeNext), for `import`
//   dist/cjs  CommonJS (tsconfig.build-cjs.json), for `require` and `moduleResolution: node10`
// Plain tsc twice rather than a bundler: tsc emits Nest's decorator metadata exactly as the tests
// compile it, and the output keeps one file per source file.
import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

function compile(project) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [tsc, '-p', project], { cwd: root, stdio: 'inherit' });
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`tsc -p ${project} exited with ${code}`))));
  });
}

rmSync(join(root, 'dist'), { recursive: true, force: true });
await Promise.all([compile('tsconfig.build.json'), compile('tsconfig.build-cjs.json')]);
// The package is "type": "module"; this marker makes Node (and TypeScript) read dist/cjs as CommonJS.
writeFileSync(join(root, 'dist/cjs/package.json'), `${JSON.stringify({ type: 'commonjs' }, null, 2)}\n`);
