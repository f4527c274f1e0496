import { defineConfig } from 'vitest/config';

// Nest resolves constructor dependencies from decorator metadata, so specs are compiled with
// legacy decorators and emitted metadata, as `tsc` does with the settings in tsconfig.json.
const oxc = { decorator: { legacy: true, emitDecoratorMetadata: true } } as const;

export default defineConfig({
  oxc,
  test: {
    projects: [
      {
        oxc,
        test: {
          name: 'unit',
          include: ['lib/**/*.spec.ts'],
          environment: 'node',
        },
      },
      {
        oxc,
        test: {
          name: 'e2e',
          include: ['test/**/*.e2e-spec.ts'],
          environment: 'node',
          testTimeout: 60_000,
          hookTimeout: 60_000,
          // Suites start real servers and brokers; files run one at a time so ports and broker
          // consumer groups never compete, and each file starts from its own SDK state.
          fileParallelism: false,
          pool: 'forks',
        },
      },
    ],
  },
});
