import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);

/**
 * The version of a package as this test file resolves it (the root's Nest 12 under `npm test`,
 * Nest 11 under `npm run test:nest11`). Reads the package.json above its entry point: Nest 12's
 * `exports` do not expose `./package.json`.
 */
export function installedVersion(name: string): string {
  let folder = dirname(require.resolve(name));
  for (;;) {
    const file = join(folder, 'package.json');
    if (existsSync(file)) {
      const manifest = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (manifest.name === name && manifest.version) {
        return manifest.version;
      }
    }
    const parent = dirname(folder);
    if (parent === folder) {
      throw new Error(`No package.json of ${name} above ${require.resolve(name)}.`);
    }
    folder = parent;
  }
}

/** The major version of @nestjs/microservices the tests run against. */
export const NEST_MAJOR = Number(installedVersion('@nestjs/microservices').split('.')[0]);
