// The configurations under test. Each runs in its own process; `env` and `execArgv(benchDir)`
// are what that process is started with.
import { join } from 'node:path';

const none = () => [];

/** HTTP: A untraced, B/C/D otel-nest at 100 % / 10 % / 0 %, E the contrib stack at 100 %. */
export const HTTP_CONFIGS = [
  { id: 'A', label: 'untraced', env: { BENCH_TRACING: 'none' }, execArgv: none },
  { id: 'B', label: 'otel-nest 100%', env: { BENCH_TRACING: 'otel-nest' }, execArgv: none },
  { id: 'C', label: 'otel-nest 10%', env: { BENCH_TRACING: 'otel-nest', BENCH_RATIO: '0.1' }, execArgv: none },
  { id: 'D', label: 'otel-nest 0% (unsampled)', env: { BENCH_TRACING: 'otel-nest', BENCH_RATIO: '0' }, execArgv: none },
  {
    id: 'E',
    label: 'sdk-trace-node + contrib instrumentations 100%',
    env: { BENCH_TRACING: 'none' },
    execArgv: (benchDir) => ['--import', join(benchDir, 'apps', 'stack-preload.mjs')],
  },
];

/**
 * Diagnostic HTTP configurations (run with `--configs`): single pieces of tracing on the untraced
 * app, to split the cost. See apps/http-diagnostics.mjs.
 */
export const HTTP_DIAGNOSTIC_CONFIGS = [
  { id: 'A+als', label: 'untraced + context per request (ALS)', env: { BENCH_TRACING: 'none', BENCH_DIAG: 'als' }, execArgv: none },
  { id: 'A+bind', label: 'untraced + ALS + bind req/res', env: { BENCH_TRACING: 'none', BENCH_DIAG: 'bind' }, execArgv: none },
  { id: 'A+icpt', label: 'untraced + one no-op global interceptor', env: { BENCH_TRACING: 'none', BENCH_DIAG: 'interceptor' }, execArgv: none },
  { id: 'A+als+icpt', label: 'untraced + ALS + interceptor (no bind)', env: { BENCH_TRACING: 'none', BENCH_DIAG: 'als,interceptor' }, execArgv: none },
  { id: 'A+all', label: 'untraced + ALS + bind + interceptor', env: { BENCH_TRACING: 'none', BENCH_DIAG: 'bind,interceptor' }, execArgv: none },
];

export const ALL_HTTP_CONFIGS = [...HTTP_CONFIGS, ...HTTP_DIAGNOSTIC_CONFIGS];
