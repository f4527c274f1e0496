// The configurations under test. Each runs in its own process; `env` and `execArgv(benchDir)`
// are what that process is started with.
import { join } from 'node:path';

const none = () => [];

/**
 * HTTP: A untraced; the floors F0 (context per request) and F1 (F0 + one bare SDK span, exported
 * as B's); B/D otel-nest at 100 % / 0 %; E the contrib stack at 100 %. C (10 %) on request
 * (`--configs`), to keep the default run under 10 minutes.
 */
export const HTTP_CONFIGS = [
  { id: 'A', label: 'untraced', env: { BENCH_TRACING: 'none' }, execArgv: none },
  { id: 'F0', label: 'floor: untraced + context per request (ALS)', env: { BENCH_TRACING: 'none', BENCH_DIAG: 'als' }, execArgv: none },
  { id: 'F1', label: 'floor: F0 + one bare SDK span, OTLP export', env: { BENCH_TRACING: 'floor' }, execArgv: none },
  { id: 'B', label: 'otel-nest 100%', env: { BENCH_TRACING: 'otel-nest' }, execArgv: none },
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
 * app, to split the cost. See apps/http-diagnostics.mjs. (What was `A+als` is F0 now.)
 */
export const HTTP_DIAGNOSTIC_CONFIGS = [
  { id: 'C', label: 'otel-nest 10%', env: { BENCH_TRACING: 'otel-nest', BENCH_RATIO: '0.1' }, execArgv: none },
  { id: 'B-noi', label: 'otel-nest 100%, globalInterceptor: false', env: { BENCH_TRACING: 'otel-nest', BENCH_NO_INTERCEPTOR: '1' }, execArgv: none },
  { id: 'D-noi', label: 'otel-nest 0%, globalInterceptor: false', env: { BENCH_TRACING: 'otel-nest', BENCH_RATIO: '0', BENCH_NO_INTERCEPTOR: '1' }, execArgv: none },
  { id: 'A+bind', label: 'untraced + ALS + bind req/res', env: { BENCH_TRACING: 'none', BENCH_DIAG: 'bind' }, execArgv: none },
  { id: 'A+icpt', label: 'untraced + one no-op global interceptor', env: { BENCH_TRACING: 'none', BENCH_DIAG: 'interceptor' }, execArgv: none },
  { id: 'A+als+icpt', label: 'untraced + ALS + interceptor (no bind)', env: { BENCH_TRACING: 'none', BENCH_DIAG: 'als,interceptor' }, execArgv: none },
  { id: 'A+all', label: 'untraced + ALS + bind + interceptor', env: { BENCH_TRACING: 'none', BENCH_DIAG: 'bind,interceptor' }, execArgv: none },
];

export const ALL_HTTP_CONFIGS = [...HTTP_CONFIGS, ...HTTP_DIAGNOSTIC_CONFIGS];

/**
 * The realistic route (BENCH_ROUTE=pg): A untraced, B otel-nest 100 % with instrumentation-pg
 * preloaded as the sample does (apps/pg-preload.mjs).
 */
export const PG_CONFIGS = [
  { id: 'A', label: 'untraced', env: { BENCH_TRACING: 'none' }, execArgv: none },
  {
    id: 'B',
    label: 'otel-nest 100% + instrumentation-pg',
    env: { BENCH_TRACING: 'otel-nest' },
    execArgv: (benchDir) => ['--import', join(benchDir, 'apps', 'pg-preload.mjs')],
  },
];

/** Messaging: Nest's transport untraced, the floor (bare spans on it, apps/floor.mjs), otel-nest. */
export const MSG_CONFIGS = [
  { id: 'untraced', tracing: 'none', label: 'Nest transport, untraced' },
  { id: 'floor', tracing: 'floor', label: 'floor: Nest transport + context + bare producer/consumer spans' },
  { id: 'otel-nest', tracing: 'otel-nest', label: 'otel-nest transport, 100%' },
  {
    id: 'otel-nest-noi',
    tracing: 'otel-nest',
    env: { BENCH_NO_INTERCEPTOR: '1' },
    label: 'otel-nest transport, 100%, globalInterceptor: false',
  },
];
