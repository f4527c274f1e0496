import { isSpanContextValid, SpanKind, trace, TraceFlags, type Attributes, type Context, type Link } from '@opentelemetry/api';
import {
  AlwaysOnSampler,
  ParentBasedSampler,
  SamplingDecision,
  TraceIdRatioBasedSampler,
  type Sampler,
  type SamplingResult,
} from '@opentelemetry/sdk-trace';
import { ruleSamplerFailed } from '../otel.messages.js';
import {
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_ROUTE,
  ATTR_MESSAGING_DESTINATION_NAME,
  ATTR_MESSAGING_DESTINATION_TEMPLATE,
  ATTR_MESSAGING_SYSTEM,
  ATTR_NESTJS_PATTERN,
  ATTR_RPC_METHOD,
  ATTR_RPC_SYSTEM,
  ATTR_RPC_SYSTEM_NAME,
  ATTR_URL_PATH,
} from '../semconv.js';
import { diagLimited } from '../utils/diag-limited.js';
import {
  DEFAULT_SAMPLING_RULES,
  describeSamplingDecision,
  MATCH_FIELDS,
  validateRuleSamplerOptions,
  type RuleBasedSamplerOptions,
  type SamplingDecisionOption,
  type SamplingMatch,
  type SamplingRule,
} from './sampling-rules.js';

export {
  DEFAULT_SAMPLING_RULES,
  type RuleBasedSamplerOptions,
  type SamplingDecisionOption,
  type SamplingMatch,
  type SamplingProtocol,
  type SamplingRule,
} from './sampling-rules.js';

/** Pre-semconv-1.21 names other instrumentations (instrumentation-http by default) still start spans with. */
const ATTR_HTTP_METHOD_OLD = 'http.method';
const ATTR_MESSAGING_SYSTEM_NAME = 'messaging.system.name';
/** Path and query of the request, in the older HTTP conventions. */
const ATTR_HTTP_TARGET_OLD = 'http.target';

// One result object each, shared by every decision: the SDK only reads them.
const RECORD: SamplingResult = Object.freeze({ decision: SamplingDecision.RECORD_AND_SAMPLED });
const DROP: SamplingResult = Object.freeze({ decision: SamplingDecision.NOT_RECORD });

/**
 * `messaging.system` / `rpc.system.name` values whose rule protocol is spelled otherwise: Nest's
 * `Transport.RMQ`, and the TCP transport's `nestjs_tcp`.
 */
const PROTOCOL_ALIASES: Readonly<Record<string, string>> = { rabbitmq: 'rmq', nestjs_tcp: 'tcp' };

interface Matcher {
  test(value: string): boolean;
}

/** Every matcher in the list; a loop rather than `some` so that testing allocates nothing. */
class AnyMatcher implements Matcher {
  constructor(private readonly matchers: readonly Matcher[]) {}
  test(value: string): boolean {
    for (const matcher of this.matchers) {
      if (matcher.test(value)) {
        return true;
      }
    }
    return false;
  }
}

interface CompiledRule {
  readonly protocol: Matcher | undefined;
  readonly method: Matcher | undefined;
  readonly route: Matcher | undefined;
  readonly pattern: Matcher | undefined;
  readonly absolute: boolean;
  /** `undefined` for a ratio rule: `ratio` decides. */
  readonly fixed: SamplingResult | undefined;
  readonly ratio: Sampler | undefined;
  readonly description: string;
  /** One of {@link DEFAULT_SAMPLING_RULES}. */
  readonly isDefault: boolean;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.+?^${}()|[\]\\/]/g, '\\$&');
}

/** `*` is any run of characters; the whole value must match. */
function wildcardSource(pattern: string): string {
  return pattern.split('*').map(escapeRegExp).join('.*');
}

/** A RegExp without `g`/`y`, whose `test` would otherwise depend on the previous call. */
function statelessRegExp(re: RegExp): RegExp {
  return re.global || re.sticky ? new RegExp(re.source, re.flags.replace(/[gy]/g, '')) : re;
}

/**
 * Strings without wildcards, by Set lookup: cheaper than a case-insensitive RegExp. `fold` is the
 * case every entry is kept in (protocols are lower case, methods upper case, so the value usually
 * hits without folding).
 */
class ExactMatcher implements Matcher {
  private readonly values: ReadonlySet<string>;
  constructor(values: readonly string[], private readonly fold: 'lower' | 'upper' | undefined) {
    this.values = new Set(fold === 'lower' ? values.map((v) => v.toLowerCase()) : fold === 'upper' ? values.map((v) => v.toUpperCase()) : values);
  }
  test(value: string): boolean {
    if (this.values.has(value)) {
      return true;
    }
    return this.fold === 'lower' ? this.values.has(value.toLowerCase()) : this.fold === 'upper' ? this.values.has(value.toUpperCase()) : false;
  }
}

function compileMatch(match: SamplingMatch, fold: 'lower' | 'upper' | undefined, alias?: (s: string) => string): Matcher {
  const items = typeof match === 'string' || match instanceof RegExp ? [match] : [...match];
  const strings = items.filter((item): item is string => typeof item === 'string').map((s) => (alias ? alias(s) : s));
  const exact = strings.filter((s) => !s.includes('*'));
  const wildcards = strings.filter((s) => s.includes('*'));
  const matchers: Matcher[] = [];
  if (exact.length > 0) {
    matchers.push(new ExactMatcher(exact, fold));
  }
  if (wildcards.length > 0) {
    // All the wildcard strings of a field in one RegExp: one test however many there are.
    matchers.push(new RegExp(`^(?:${wildcards.map(wildcardSource).join('|')})$`, fold ? 'i' : ''));
  }
  for (const item of items) {
    if (item instanceof RegExp) {
      matchers.push(statelessRegExp(item));
    }
  }
  return matchers.length === 1 ? matchers[0]! : new AnyMatcher(matchers);
}

function describeMatch(match: SamplingMatch): string {
  const one = (m: string | RegExp): string => (typeof m === 'string' ? m : String(m));
  return typeof match === 'string' || match instanceof RegExp ? one(match) : `[${match.map(one).join('|')}]`;
}

function describeDecision(decision: SamplingDecisionOption): string {
  return typeof decision === 'object' ? String(decision.ratio) : String(decision);
}

function ratioOf(decision: SamplingDecisionOption): number | undefined {
  return typeof decision === 'number' ? decision : typeof decision === 'object' ? decision.ratio : undefined;
}

function fixedResult(decision: SamplingDecisionOption): SamplingResult | undefined {
  const ratio = ratioOf(decision);
  if (decision === 'always' || ratio === 1) {
    return RECORD;
  }
  if (decision === 'drop' || ratio === 0) {
    return DROP;
  }
  return undefined;
}

/** The sampler of a decision for traces that start here (the parent is handled by the caller). */
function decisionSampler(decision: SamplingDecisionOption): Sampler {
  const fixed = fixedResult(decision);
  if (fixed === RECORD) {
    return new AlwaysOnSampler();
  }
  return new TraceIdRatioBasedSampler(fixed === DROP ? 0 : ratioOf(decision));
}

function compileRule(rule: SamplingRule, index: number, isDefault: boolean): CompiledRule {
  const fields = MATCH_FIELDS.filter((field) => rule[field] !== undefined)
    .map((field) => `${field}=${describeMatch(rule[field]!)}`)
    .join(' ');
  const fixed = fixedResult(rule.sample);
  return {
    protocol:
      rule.protocol === undefined
        ? undefined
        : compileMatch(rule.protocol, 'lower', (s) => PROTOCOL_ALIASES[s.toLowerCase()] ?? s),
    method: rule.method === undefined ? undefined : compileMatch(rule.method, 'upper'),
    route: rule.route === undefined ? undefined : compileMatch(rule.route, undefined),
    pattern: rule.pattern === undefined ? undefined : compileMatch(rule.pattern, undefined),
    absolute: rule.absolute === true,
    fixed,
    ratio: fixed === undefined ? new TraceIdRatioBasedSampler(ratioOf(rule.sample)) : undefined,
    isDefault,
    description:
      `${isDefault ? 'default ' : ''}#${index} ${fields || '*'} -> ${describeDecision(rule.sample)}` +
      (rule.absolute === true ? ' (absolute)' : ''),
  };
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** The path of an `http.target` (a new string only when there is a query to cut). */
function pathOf(target: string | undefined): string | undefined {
  if (target === undefined) {
    return undefined;
  }
  const queryAt = target.indexOf('?');
  return queryAt < 0 ? target : target.slice(0, queryAt);
}

function matches(matcher: Matcher | undefined, value: string | undefined): boolean {
  return matcher === undefined || (value !== undefined && matcher.test(value));
}

/**
 * A `Sampler` that decides the entry spans of a process (SERVER and CONSUMER: an HTTP request, a
 * gRPC call, a message) from rules on their protocol, method, route template and message pattern,
 * read from the attributes the span starts with (the semantic conventions' sampling-relevant ones):
 *
 * - HTTP SERVER: protocol `http`, `method` from `http.request.method` (or `http.method`), `route` from
 *   `http.route`, else `url.path` (or the path of `http.target`);
 * - RPC SERVER (gRPC, Nest's TCP transport): protocol from `rpc.system.name` (or `rpc.system`;
 *   `nestjs_tcp` is `tcp`), `method` and `pattern` from `rpc.method` (`pattern` also from `nestjs.pattern`);
 * - messaging CONSUMER: protocol from `messaging.system` (`rabbitmq` is `rmq`, `nestjs_tcp` is `tcp`; any other value is
 *   itself), `pattern` from `nestjs.pattern`, `messaging.destination.template` or
 *   `messaging.destination.name`.
 *
 * The first matching rule decides: parent-based unless the rule is `absolute`. When none matches,
 * and for every other span (INTERNAL, CLIENT, PRODUCER: they follow the span they run under), the
 * `default` decides. Works with any SDK 3 tracer provider:
 *
 * ```ts
 * new NodeTracerProvider({ sampler: new RuleBasedSampler({ rules: [{ route: '/orders/*', sample: 0.1 }] }) });
 * ```
 *
 * Wildcards are compiled once, here; deciding allocates nothing beyond what a ratio sampler returns.
 */
export class RuleBasedSampler implements Sampler {
  private readonly rules: readonly CompiledRule[];
  private readonly fallback: Sampler;
  private readonly fallbackDescription: string;

  constructor(options: RuleBasedSamplerOptions = {}) {
    validateRuleSamplerOptions(options, 'RuleBasedSampler');
    const own = options.rules ?? [];
    const defaults = options.defaults === false ? [] : DEFAULT_SAMPLING_RULES;
    this.rules = [
      ...own.map((rule, i) => compileRule(rule, i, false)),
      ...defaults.map((rule, i) => compileRule(rule, i, true)),
    ];
    const given = options.default;
    if (given !== undefined && typeof given === 'object' && 'shouldSample' in given) {
      this.fallback = given;
      this.fallbackDescription = given.toString();
    } else {
      this.fallback = new ParentBasedSampler({ root: decisionSampler(given ?? 'always') });
      this.fallbackDescription = `ParentBased(${describeSamplingDecision(given ?? 'always')})`;
    }
  }

  shouldSample(context: Context, traceId: string, spanName: string, spanKind: SpanKind, attributes: Attributes, links: Link[]): SamplingResult {
    try {
      if (spanKind === SpanKind.SERVER || spanKind === SpanKind.CONSUMER) {
        const rule = this.firstMatch(attributes);
        if (rule !== undefined) {
          return this.decide(rule, context, traceId, spanName, spanKind, attributes, links);
        }
      }
      return this.fallback.shouldSample(context, traceId, spanName, spanKind, attributes, links);
    } catch (err) {
      // A throwing default sampler (the user's) must not fail the span start: follow the parent.
      diagLimited('error', ruleSamplerFailed(), err);
      const parent = trace.getSpanContext(context);
      return parent && isSpanContextValid(parent) && (parent.traceFlags & TraceFlags.SAMPLED) === 0 ? DROP : RECORD;
    }
  }

  toString(): string {
    return `RuleBased{rules=[${this.rules.map((rule) => rule.description).join(', ')}], default=${this.fallbackDescription}}`;
  }

  private decide(
    rule: CompiledRule,
    context: Context,
    traceId: string,
    spanName: string,
    spanKind: SpanKind,
    attributes: Attributes,
    links: Link[],
  ): SamplingResult {
    if (!rule.absolute) {
      const parent = trace.getSpanContext(context);
      if (parent && isSpanContextValid(parent)) {
        return (parent.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED ? RECORD : DROP;
      }
    }
    return rule.fixed ?? rule.ratio!.shouldSample(context, traceId, spanName, spanKind, attributes, links);
  }

  private firstMatch(attributes: Attributes): CompiledRule | undefined {
    let protocol: string | undefined;
    let method: string | undefined;
    let route: string | undefined;
    let pattern: string | undefined;
    let destinationTemplate: string | undefined;
    let destinationName: string | undefined;
    const httpMethod = str(attributes[ATTR_HTTP_REQUEST_METHOD]) ?? str(attributes[ATTR_HTTP_METHOD_OLD]);
    if (httpMethod !== undefined) {
      protocol = 'http';
      method = httpMethod;
      route = str(attributes[ATTR_HTTP_ROUTE]) ?? str(attributes[ATTR_URL_PATH]) ?? pathOf(str(attributes[ATTR_HTTP_TARGET_OLD]));
    } else {
      const rpcSystem = str(attributes[ATTR_RPC_SYSTEM_NAME]) ?? str(attributes[ATTR_RPC_SYSTEM]);
      if (rpcSystem !== undefined) {
        protocol = PROTOCOL_ALIASES[rpcSystem] ?? rpcSystem;
        method = str(attributes[ATTR_RPC_METHOD]);
        pattern = method;
        // The TCP transport's SERVER spans: the Nest pattern too.
        destinationName = str(attributes[ATTR_NESTJS_PATTERN]);
      } else {
        const system = str(attributes[ATTR_MESSAGING_SYSTEM]) ?? str(attributes[ATTR_MESSAGING_SYSTEM_NAME]);
        if (system !== undefined) {
          protocol = PROTOCOL_ALIASES[system] ?? system;
          pattern = str(attributes[ATTR_NESTJS_PATTERN]);
          destinationTemplate = str(attributes[ATTR_MESSAGING_DESTINATION_TEMPLATE]);
          destinationName = str(attributes[ATTR_MESSAGING_DESTINATION_NAME]);
        }
      }
    }
    for (const rule of this.rules) {
      if (
        matches(rule.protocol, protocol) &&
        matches(rule.method, method) &&
        matches(rule.route, route) &&
        (rule.pattern === undefined ||
          (pattern !== undefined && rule.pattern.test(pattern)) ||
          (destinationTemplate !== undefined && rule.pattern.test(destinationTemplate)) ||
          (destinationName !== undefined && rule.pattern.test(destinationName)))
      ) {
        return rule;
      }
    }
    return undefined;
  }
}

