// Preloaded (--import) into the processes under test when BENCH_LIB_SNAPSHOT is set: `otel-nest`
// and its subpaths resolve to the run's copy of the library (lib/snapshot.mjs), whose own imports
// (@opentelemetry/*, @nestjs/*) resolve from the project's node_modules, as dist/'s do.
// A synchronous in-thread hook (module.registerHooks, Node >= 22.15): nothing runs per request.
import { registerHooks } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const dir = process.env.BENCH_LIB_SNAPSHOT;
if (dir) {
  const parentURL = pathToFileURL(join(dir, 'resolve-from.mjs')).href;
  registerHooks({
    resolve(specifier, context, nextResolve) {
      if (specifier === 'otel-nest' || specifier.startsWith('otel-nest/')) {
        return nextResolve(specifier, { ...context, parentURL });
      }
      return nextResolve(specifier, context);
    },
  });
}
