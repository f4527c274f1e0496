import type { Sampler } from '@opentelemetry/sdk-trace';
import { OtelConfigError, invalidOptionValue } from '../otel.messages.js';
import { rejectUnknownKeys } from './config/suggest.js';

/**
 * The protocols a rule can name: the HTTP server, gRPC, and the messaging transports (their
 * `messaging.system`, with `rabbitmq` spelled `rmq` as Nest's `Transport.RMQ` does). A transport
 * with another `messaging.system` is matched under that value.
 */
export type SamplingProtocol = 'http' | 'grpc' | 'nats' | 'rmq' | 'kafka' | 'tcp' | 'redis' | 'mqtt';

/**
 * What a rule field matches: a string where `*` stands for any run of characters (`/health*`,
 * `orders.*`, `*.v1.OrderService/*`; the whole value must match), a RegExp (tested as given,
 * without its `g`/`y` state), or a list of either (any of them).
 */
export type SamplingMatch = string | RegExp | ReadonlyArray<string | RegExp>;

/**
 * What happens to a trace a rule (or the default) decides: `'drop'` records nothing, `'always'`
 * records it, a ratio `0..1` (or `{ ratio }`) records that share of traces, decided from the trace
 * id as `TraceIdRatioBased` does (the same trace id always gets the same answer).
 */
export type SamplingDecisionOption = 'drop' | 'always' | number | { readonly ratio: number };

/**
 * One sampling rule: every field given must match (a field the span cannot have, such as `route` on
 * a NATS message, does not match); the first rule that matches decides. A rule without fields
 * matches every entry span.
 */
export interface SamplingRule {
  /** `http`, `grpc`, `nats`, `rmq`, `kafka`, `tcp`, `redis`, `mqtt` (case-insensitive). */
  readonly protocol?: SamplingProtocol | (string & {}) | RegExp | ReadonlyArray<string | RegExp>;
  /** HTTP: the request method (`GET`). gRPC and TCP: `rpc.method` (`orders.v1.OrderService/PlaceOrder`). Case-insensitive. */
  readonly method?: SamplingMatch;
  /**
   * HTTP: the route template (`/orders/:id`, with the global prefix and URI version as registered),
   * known at span start; the request path when no route matches (a 404) or is known.
   */
  readonly route?: SamplingMatch;
  /**
   * Messaging: the Nest pattern, the destination template or the destination name (any of them).
   * gRPC: `rpc.method`; TCP: the pattern.
   */
  readonly pattern?: SamplingMatch;
  /** The decision. Required. */
  readonly sample: SamplingDecisionOption;
  /**
   * `false` (default): parent-based, the rule decides only traces that start here; a request that
   * comes with a parent keeps the parent's decision (sampled stays sampled, unsampled stays
   * unsampled). `true`: the rule decides whatever the parent says (a `'drop'` drops a sampled
   * caller's request, an `'always'` records an unsampled one).
   */
  readonly absolute?: boolean;
}

/** Options of {@link RuleBasedSampler} and of `OtelModule.forRoot({ sampler: { rules } })`. */
export interface RuleBasedSamplerOptions {
  /** Tried in order, before the default rules; the first that matches decides. Default `[]`. */
  readonly rules?: readonly SamplingRule[];
  /**
   * `true` (default): {@link DEFAULT_SAMPLING_RULES} (health, readiness, liveness and metrics
   * endpoints, gRPC health checks) are tried after `rules`. `false`: only `rules`.
   */
  readonly defaults?: boolean;
  /**
   * What decides when no rule matches, and every span that is not an entry span (SERVER, CONSUMER).
   * A decision is applied parent-based (a span with a parent follows it; the decision is for
   * traces that start here); a `Sampler` is used as is. Default: parent-based always-on (with
   * `OtelModule`, the sampler `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` name, if set).
   */
  readonly default?: SamplingDecisionOption | Sampler;
}

/**
 * Drops the probes and scrapes that otherwise fill a trace backend: `GET /health` and friends
 * (`/health`, `/health/*`, `/healthz`, `/healthz/*`, `/healthcheck`, `/readyz`, `/readyz/*`,
 * `/livez`, `/livez/*`, `/metrics`, at the root of the server, of any method) and the standard
 * gRPC health service (`grpc.health.v1.Health/*`). Parent-based like any rule: a probe that comes
 * with a sampled parent is still recorded. Not `/health*`, which would also drop `/healthcare`.
 */
export const DEFAULT_SAMPLING_RULES: readonly SamplingRule[] = Object.freeze([
  Object.freeze({
    protocol: 'http',
    route: Object.freeze([
      '/health',
      '/health/*',
      '/healthz',
      '/healthz/*',
      '/healthcheck',
      '/readyz',
      '/readyz/*',
      '/livez',
      '/livez/*',
      '/metrics',
    ]),
    sample: 'drop',
  } as const),
  Object.freeze({ protocol: 'grpc', method: 'grpc.health.v1.Health/*', sample: 'drop' } as const),
]);

const RULE_KEYS = ['protocol', 'method', 'route', 'pattern', 'sample', 'absolute'] as const;
const OPTION_KEYS = ['rules', 'defaults', 'default'] as const;
export const MATCH_FIELDS = ['protocol', 'method', 'route', 'pattern'] as const;

const DECISION_EXPECTED = "'drop', 'always', a ratio between 0 and 1 or { ratio }";
const DECISION_EXAMPLE = "{ rules: [{ route: '/orders/*', sample: 0.1 }] }";

/**
 * A decision as the startup summary names the built-in samplers: `AlwaysOn` (`'always'`, ratio 1),
 * `AlwaysOff` (`'drop'`, ratio 0), `TraceIdRatio{0.25}`.
 */
export function describeSamplingDecision(decision: SamplingDecisionOption): string {
  const ratio = typeof decision === 'number' ? decision : typeof decision === 'object' ? decision.ratio : undefined;
  if (decision === 'always' || ratio === 1) {
    return 'AlwaysOn';
  }
  return decision === 'drop' || ratio === 0 ? 'AlwaysOff' : `TraceIdRatio{${ratio}}`;
}

/** True for the object form of a rule sampler option (as opposed to `{ ratio }` or a Sampler). */
export function isRuleSamplerOptions(value: object): value is RuleBasedSamplerOptions {
  return 'rules' in value || 'default' in value || 'defaults' in value;
}

function fail(path: string, expected: string, example: string, got: unknown): never {
  throw new OtelConfigError(invalidOptionValue(path, expected, example, got));
}


function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof RegExp);
}

function isRatio(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 && value <= 1;
}

/** Throws {@link OtelConfigError} (naming the field, e.g. `sampler.rules[2].route`) for a bad decision. */
export function validateDecision(value: unknown, path: string): void {
  if (value === 'drop' || value === 'always' || isRatio(value)) {
    return;
  }
  if (isPlainObject(value) && 'ratio' in value) {
    rejectUnknownKeys(value, ['ratio'], `"${path}"`);
    if (isRatio(value.ratio)) {
      return;
    }
    fail(`${path}.ratio`, 'a number between 0 and 1', DECISION_EXAMPLE, value.ratio);
  }
  fail(path, DECISION_EXPECTED, DECISION_EXAMPLE, value);
}

function validateMatch(value: unknown, path: string): void {
  const single = (v: unknown): boolean => (typeof v === 'string' && v !== '') || v instanceof RegExp;
  if (single(value)) {
    return;
  }
  if (Array.isArray(value) && value.length > 0) {
    value.forEach((item: unknown, i) => {
      if (!single(item)) {
        fail(`${path}[${i}]`, 'a non-empty string (with * wildcards) or a RegExp', "{ route: ['/health', /^\\/ready/] }", item);
      }
    });
    return;
  }
  fail(path, 'a non-empty string (with * wildcards), a RegExp, or a non-empty list of them', "{ route: '/health*' }", value);
}

/**
 * Validates rule sampler options; `root` is where they were given (`sampler` for the module
 * option, `RuleBasedSampler` for the class). Throws {@link OtelConfigError} naming the rule index
 * and field of the first problem.
 */
export function validateRuleSamplerOptions(value: unknown, root: string): asserts value is RuleBasedSamplerOptions {
  if (!isPlainObject(value)) {
    fail(root, 'an object { rules, default, defaults }', DECISION_EXAMPLE, value);
  }
  rejectUnknownKeys(value, OPTION_KEYS, `"${root}"`);
  if (value.rules !== undefined) {
    if (!Array.isArray(value.rules)) {
      fail(`${root}.rules`, 'an array of rules', DECISION_EXAMPLE, value.rules);
    }
    value.rules.forEach((rule: unknown, i) => validateRule(rule, `${root}.rules[${i}]`));
  }
  if (value.defaults !== undefined && typeof value.defaults !== 'boolean') {
    fail(`${root}.defaults`, 'a boolean', "{ rules: [], defaults: false }", value.defaults);
  }
  if (value.default !== undefined) {
    const given = value.default;
    if (isPlainObject(given) && typeof given.shouldSample === 'function') {
      return;
    }
    if (isPlainObject(given) && !('ratio' in given)) {
      fail(`${root}.default`, `${DECISION_EXPECTED} or a Sampler instance`, "{ rules: [], default: 0.25 }", given);
    }
    validateDecision(given, `${root}.default`);
  }
}

function validateRule(rule: unknown, path: string): void {
  if (!isPlainObject(rule)) {
    fail(path, "a rule object { protocol?, method?, route?, pattern?, sample, absolute? }", "{ route: '/health', sample: 'drop' }", rule);
  }
  rejectUnknownKeys(rule, RULE_KEYS, `"${path}"`);
  for (const field of MATCH_FIELDS) {
    if (rule[field] !== undefined) {
      validateMatch(rule[field], `${path}.${field}`);
    }
  }
  if (rule.sample === undefined) {
    fail(`${path}.sample`, DECISION_EXPECTED, "{ route: '/health', sample: 'drop' }", undefined);
  }
  validateDecision(rule.sample, `${path}.sample`);
  if (rule.absolute !== undefined && typeof rule.absolute !== 'boolean') {
    fail(`${path}.absolute`, 'a boolean', "{ route: '/health', sample: 'drop', absolute: true }", rule.absolute);
  }
}
