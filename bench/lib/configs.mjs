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

/** The bench receiver's metrics path is given by the run (BENCH_OTLP_METRICS_URL); 10 s pushes, as production would. */
const METRICS = { BENCH_METRICS: '1' };
/** The route with 1 guard, 2 pipes on `id` and 1 interceptor (apps/http-app.mjs): 4 enhancer calls per request. */
const ENH = { BENCH_TRACING: 'otel-nest', BENCH_ENHANCERS: '1' };

/**
 * The cost of the issue-17/18 features (run with `--features`, or by id with `--configs`): each
 * is B (or D) with one option changed, so a difference of two configurations of one run is one
 * feature's CPU per request (see FEATURE_COSTS).
 */
export const HTTP_FEATURE_CONFIGS = [
  { id: 'B-noredact', feature: 'redaction', label: 'otel-nest 100%, redact: false', env: { BENCH_TRACING: 'otel-nest', BENCH_REDACT: 'off' }, execArgv: none },
  { id: 'B-enhapp', feature: 'enhancers', label: 'otel-nest 100%, route with 1 guard + 2 pipes + 1 interceptor, no instrument', env: { ...ENH }, execArgv: none },
  { id: 'B-enh0', feature: 'enhancers', label: 'B-enhapp + instrument: otelInstrument(), enhancerSpans off (the Proxy)', env: { ...ENH, BENCH_INSTRUMENT: '1' }, execArgv: none },
  { id: 'B-enh', feature: 'enhancers', label: 'B-enh0 + enhancerSpans: true (4 enhancer spans, default collapse)', env: { ...ENH, BENCH_INSTRUMENT: '1', BENCH_ENHANCER_SPANS: '1' }, execArgv: none },
  { id: 'B-enh-nc', feature: 'enhancers', label: 'B-enh with enhancerSpans: { collapseAbove: false }', env: { ...ENH, BENCH_INSTRUMENT: '1', BENCH_ENHANCER_SPANS: 'nocollapse' }, execArgv: none },
  { id: 'D-enh', feature: 'enhancers', label: 'B-enh at 0% (unsampled)', env: { ...ENH, BENCH_INSTRUMENT: '1', BENCH_ENHANCER_SPANS: '1', BENCH_RATIO: '0' }, execArgv: none },
  { id: 'B-metrics', feature: 'metrics', label: 'otel-nest 100% + metrics (OTLP to the receiver, every 10 s)', env: { BENCH_TRACING: 'otel-nest', ...METRICS }, execArgv: none },
  { id: 'D-metrics', feature: 'metrics', label: 'otel-nest 0% + metrics (OTLP to the receiver, every 10 s)', env: { BENCH_TRACING: 'otel-nest', BENCH_RATIO: '0', ...METRICS }, execArgv: none },
];

export const ALL_HTTP_CONFIGS = [...HTTP_CONFIGS, ...HTTP_DIAGNOSTIC_CONFIGS, ...HTTP_FEATURE_CONFIGS];

/**
 * `--features a,b`: the configurations each feature adds to the run, with the ones its
 * differences are taken against (added if the run does not have them already).
 */
export const FEATURES = {
  redaction: { http: ['B', 'B-noredact'], msg: [] },
  enhancers: { http: ['D', 'B-enhapp', 'B-enh0', 'B-enh', 'B-enh-nc', 'D-enh'], msg: [] },
  metrics: { http: ['B', 'D', 'B-metrics', 'D-metrics'], msg: ['otel-nest', 'otel-nest-metrics'] },
};

/**
 * What the feature configurations measure: `cost` = CPU per request (message) of `with` minus
 * `without`, in one run; `calls` divides it per enhancer call. `note` says what else the
 * difference holds.
 */
export const FEATURE_COSTS = [
  { id: 'redaction', kind: 'http', with: 'B', without: 'B-noredact', what: 'redaction (on by default), per request' },
  { id: 'enhancer-proxy', kind: 'http', with: 'B-enh0', without: 'B-enhapp', what: 'otelInstrument() with enhancerSpans off: the Proxy on 4 enhancer calls' },
  { id: 'enhancer-spans', kind: 'http', with: 'B-enh', without: 'B-enhapp', calls: 4, what: 'enhancer spans on (4 spans, default collapse), per request / per span' },
  { id: 'enhancer-spans-nocollapse', kind: 'http', with: 'B-enh-nc', without: 'B-enhapp', calls: 4, what: 'enhancer spans, collapseAbove: false, per request / per span' },
  { id: 'enhancer-collapse-window', kind: 'http', with: 'B-enh', without: 'B-enh-nc', what: 'the collapse window (default) against ending each span at once' },
  { id: 'enhancer-unsampled', kind: 'http', with: 'D-enh', without: 'D', what: 'unsampled: the enhancer route + Proxy + a context lookup per call (holds the enhancers\' own cost, B-enhapp − B)' },
  { id: 'enhancer-app', kind: 'http', with: 'B-enhapp', without: 'B', what: 'the route\'s 4 enhancers themselves (Nest\'s pipelines, no otel-nest work)' },
  { id: 'metrics-sampled', kind: 'http', with: 'B-metrics', without: 'B', what: 'metrics on sampled requests' },
  { id: 'metrics-unsampled', kind: 'http', with: 'D-metrics', without: 'D', what: 'metrics on unsampled requests' },
  { id: 'metrics', kind: 'msg', with: 'otel-nest-metrics', without: 'otel-nest', what: 'metrics on traced messages (client + server)' },
];

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

/** Messaging configurations of `--features` (not run by default). */
export const MSG_FEATURE_CONFIGS = [
  { id: 'otel-nest-metrics', feature: 'metrics', tracing: 'otel-nest', env: { BENCH_METRICS: '1' }, label: 'otel-nest transport, 100% + metrics (OTLP to the receiver, every 10 s)' },
];

export const ALL_MSG_CONFIGS = [...MSG_CONFIGS, ...MSG_FEATURE_CONFIGS];
