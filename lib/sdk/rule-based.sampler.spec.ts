import {
  diag,
  DiagLogLevel,
  ROOT_CONTEXT,
  SpanKind,
  trace,
  TraceFlags,
  type Attributes,
  type Context,
  type DiagLogger,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  AlwaysOffSampler,
  InMemorySpanExporter,
  SamplingDecision,
  SimpleSpanProcessor,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type Sampler,
} from '@opentelemetry/sdk-trace';
import { afterEach, describe, expect, it } from 'vitest';
import { OtelConfigError } from '../otel.messages.js';
import { DEFAULT_SAMPLING_RULES, RuleBasedSampler, type RuleBasedSamplerOptions } from './rule-based.sampler.js';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN_ID = '00f067aa0ba902b7';

const http = (method: string, path: string, route?: string): Attributes => ({
  'http.request.method': method,
  'url.path': path,
  'url.scheme': 'http',
  ...(route ? { 'http.route': route } : {}),
});
const grpc = (method: string): Attributes => ({ 'rpc.system.name': 'grpc', 'rpc.method': method });
const messaging = (system: string, pattern: string, destination = pattern, template?: string): Attributes => ({
  'messaging.system': system,
  'messaging.destination.name': destination,
  'nestjs.pattern': pattern,
  ...(template ? { 'messaging.destination.template': template } : {}),
});

function parentContext(sampled: boolean, isRemote = true): Context {
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: TRACE_ID,
    spanId: SPAN_ID,
    traceFlags: sampled ? TraceFlags.SAMPLED : TraceFlags.NONE,
    isRemote,
  });
}

function decide(
  sampler: Sampler,
  attributes: Attributes,
  { ctx = ROOT_CONTEXT, kind = SpanKind.SERVER, traceId = TRACE_ID }: { ctx?: Context; kind?: SpanKind; traceId?: string } = {},
): SamplingDecision {
  return sampler.shouldSample(ctx, traceId, 'span', kind, attributes, []).decision;
}

const RECORD = SamplingDecision.RECORD_AND_SAMPLED;
const DROP = SamplingDecision.NOT_RECORD;

function rules(options: RuleBasedSamplerOptions): RuleBasedSampler {
  return new RuleBasedSampler({ defaults: false, ...options });
}

/** Trace ids spread over the id space, deterministic. */
function traceIds(count: number): string[] {
  const ids: string[] = [];
  let x = 0x9e3779b9;
  for (let i = 0; i < count; i++) {
    let id = '';
    for (let j = 0; j < 4; j++) {
      x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
      id += x.toString(16).padStart(8, '0');
    }
    ids.push(id);
  }
  return ids;
}

describe('RuleBasedSampler: matching', () => {
  it('matches protocol, method and route (template first, path when no route is known)', () => {
    const sampler = rules({ rules: [{ protocol: 'http', method: 'GET', route: '/orders/:id', sample: 'drop' }] });
    expect(decide(sampler, http('GET', '/orders/42', '/orders/:id'))).toBe(DROP);
    expect(decide(sampler, http('POST', '/orders/42', '/orders/:id'))).toBe(RECORD);
    expect(decide(sampler, http('GET', '/orders/42'))).toBe(RECORD);
    expect(decide(sampler, http('GET', '/orders/:id'))).toBe(DROP);
  });

  it('reads the older HTTP attribute names other instrumentations may start spans with', () => {
    const sampler = rules({ rules: [{ protocol: 'http', method: 'GET', route: '/internal/*', sample: 'drop' }] });
    expect(decide(sampler, { 'http.method': 'GET', 'http.target': '/internal/x?y=1' })).toBe(DROP);
    expect(decide(sampler, { 'http.method': 'GET', 'http.target': '/public?next=/internal/x' })).toBe(RECORD);
  });

  it('wildcards stand for any run of characters, and the whole value must match', () => {
    const sampler = rules({ rules: [{ route: '/internal/*', sample: 'drop' }, { pattern: 'audit.*.created', sample: 'drop' }] });
    expect(decide(sampler, http('GET', '/internal/a/b'))).toBe(DROP);
    expect(decide(sampler, http('GET', '/internal'))).toBe(RECORD);
    expect(decide(sampler, http('GET', '/api/internal/x'))).toBe(RECORD);
    expect(decide(sampler, messaging('nats', 'audit.user.created'), { kind: SpanKind.CONSUMER })).toBe(DROP);
    expect(decide(sampler, messaging('nats', 'audit.user.created.v2'), { kind: SpanKind.CONSUMER })).toBe(RECORD);
    // Regex characters in a wildcard string are literal.
    const dots = rules({ rules: [{ pattern: 'a.b', sample: 'drop' }] });
    expect(decide(dots, messaging('nats', 'aXb'), { kind: SpanKind.CONSUMER })).toBe(RECORD);
  });

  it('protocol and method are case-insensitive; route and pattern are not', () => {
    const sampler = rules({ rules: [{ protocol: 'HTTP', method: 'get', route: '/Health', sample: 'drop' }] });
    expect(decide(sampler, http('GET', '/Health'))).toBe(DROP);
    expect(decide(sampler, http('GET', '/health'))).toBe(RECORD);
  });

  it('takes RegExps (a global one gives the same answer every time) and lists of strings and RegExps', () => {
    const sampler = rules({ rules: [{ route: /^\/v\d+\/ping$/g, sample: 'drop' }, { route: ['/a', /^\/b\//], sample: 'drop' }] });
    for (let i = 0; i < 3; i++) {
      expect(decide(sampler, http('GET', '/v1/ping'))).toBe(DROP);
    }
    expect(decide(sampler, http('GET', '/a'))).toBe(DROP);
    expect(decide(sampler, http('GET', '/b/c'))).toBe(DROP);
    expect(decide(sampler, http('GET', '/c'))).toBe(RECORD);
  });

  it('derives the protocol of gRPC and of every messaging system (rabbitmq is rmq, others are themselves)', () => {
    const sampler = rules({
      rules: [
        { protocol: 'grpc', method: '*/Ping', sample: 'drop' },
        { protocol: 'rmq', pattern: 'jobs', sample: 'drop' },
        { protocol: 'rabbitmq', pattern: 'legacy', sample: 'drop' },
        { protocol: ['tcp', 'redis', 'mqtt'], pattern: 'noise', sample: 'drop' },
        { protocol: 'kafka', pattern: 'orders.*', sample: 'drop' },
        { protocol: 'zeromq', sample: 'drop' },
      ],
    });
    expect(decide(sampler, grpc('orders.v1.OrderService/Ping'))).toBe(DROP);
    expect(decide(sampler, grpc('orders.v1.OrderService/Place'))).toBe(RECORD);
    const consumer = { kind: SpanKind.CONSUMER };
    expect(decide(sampler, messaging('rabbitmq', 'jobs'), consumer)).toBe(DROP);
    expect(decide(sampler, messaging('rabbitmq', 'legacy'), consumer)).toBe(DROP);
    for (const system of ['tcp', 'redis', 'mqtt']) {
      expect(decide(sampler, messaging(system, 'noise'), consumer)).toBe(DROP);
      expect(decide(sampler, messaging(system, 'other'), consumer)).toBe(RECORD);
    }
    expect(decide(sampler, messaging('kafka', 'orders.created'), consumer)).toBe(DROP);
    // Nest's TCP transport: SERVER spans with rpc.system.name nestjs_tcp.
    expect(decide(sampler, { 'rpc.system.name': 'nestjs_tcp', 'rpc.method': 'noise', 'nestjs.pattern': 'noise' })).toBe(DROP);
    expect(decide(sampler, { 'rpc.system.name': 'nestjs_tcp', 'rpc.method': 'sum', 'nestjs.pattern': 'sum' })).toBe(RECORD);
    expect(decide(sampler, messaging('zeromq', 'x'), consumer)).toBe(DROP);
    // A field the span cannot have never matches: no route on a message.
    const routeOnly = rules({ rules: [{ route: '*', sample: 'drop' }] });
    expect(decide(routeOnly, messaging('nats', 'x'), consumer)).toBe(RECORD);
  });

  it('matches the pattern against the Nest pattern, the destination template and the destination name', () => {
    const sampler = rules({ rules: [{ pattern: 'orders.>', sample: 'drop' }] });
    const consumer = { kind: SpanKind.CONSUMER };
    expect(decide(sampler, messaging('nats', 'other', 'other', 'orders.>'), consumer)).toBe(DROP);
    expect(decide(sampler, messaging('nats', 'orders.>', 'orders.eu.created'), consumer)).toBe(DROP);
    expect(decide(sampler, messaging('nats', 'p', 'orders.>'), consumer)).toBe(DROP);
    expect(decide(sampler, messaging('nats', 'p', 'q'), consumer)).toBe(RECORD);
  });

  it('the first matching rule wins', () => {
    const sampler = rules({ rules: [{ route: '/orders/vip', sample: 'always' }, { route: '/orders/*', sample: 'drop' }] });
    expect(decide(sampler, http('GET', '/orders/vip'))).toBe(RECORD);
    expect(decide(sampler, http('GET', '/orders/1'))).toBe(DROP);
  });

  it('the default rules come after the given ones, and only unless defaults: false', () => {
    const withDefaults = new RuleBasedSampler({ rules: [{ route: '/health', sample: 'always' }] });
    expect(decide(withDefaults, http('GET', '/health'))).toBe(RECORD);
    for (const path of ['/healthz', '/health/live', '/readyz', '/livez', '/metrics', '/healthcheck']) {
      expect(decide(withDefaults, http('GET', path)), path).toBe(DROP);
    }
    expect(decide(withDefaults, http('GET', '/healthcare'))).toBe(RECORD);
    expect(decide(withDefaults, grpc('grpc.health.v1.Health/Check'))).toBe(DROP);
    const without = new RuleBasedSampler({ rules: [], defaults: false });
    expect(decide(without, http('GET', '/healthz'))).toBe(RECORD);
    expect(DEFAULT_SAMPLING_RULES.length).toBeGreaterThan(0);
    expect(Object.isFrozen(DEFAULT_SAMPLING_RULES)).toBe(true);
  });

  it('rules apply to entry spans only: other kinds follow their parent, or the default at the root', () => {
    const sampler = rules({ rules: [{ sample: 'drop' }], default: 'always' });
    expect(decide(sampler, http('GET', '/x'))).toBe(DROP);
    expect(decide(sampler, messaging('nats', 'x'), { kind: SpanKind.CONSUMER })).toBe(DROP);
    for (const kind of [SpanKind.INTERNAL, SpanKind.CLIENT, SpanKind.PRODUCER]) {
      expect(decide(sampler, http('GET', '/x'), { kind })).toBe(RECORD);
      expect(decide(sampler, {}, { kind, ctx: parentContext(false, false) })).toBe(DROP);
      expect(decide(sampler, {}, { kind, ctx: parentContext(true, false) })).toBe(RECORD);
    }
  });
});

describe('RuleBasedSampler: parent-based unless absolute', () => {
  it('a sampled parent stays sampled under a drop rule, unless the rule is absolute', () => {
    const attributes = http('GET', '/healthz');
    for (const isRemote of [true, false]) {
      const ctx = parentContext(true, isRemote);
      expect(decide(rules({ rules: [{ route: '/healthz', sample: 'drop' }] }), attributes, { ctx })).toBe(RECORD);
      expect(decide(rules({ rules: [{ route: '/healthz', sample: 'drop', absolute: true }] }), attributes, { ctx })).toBe(DROP);
    }
  });

  it('an unsampled parent stays unsampled under an always rule, unless the rule is absolute', () => {
    const attributes = http('POST', '/payments');
    for (const isRemote of [true, false]) {
      const ctx = parentContext(false, isRemote);
      expect(decide(rules({ rules: [{ route: '/payments', sample: 'always' }] }), attributes, { ctx })).toBe(DROP);
      expect(decide(rules({ rules: [{ route: '/payments', sample: 'always', absolute: true }] }), attributes, { ctx })).toBe(RECORD);
    }
  });

  it('an absolute ratio rule ignores the parent and decides from the trace id', () => {
    const sampler = rules({ rules: [{ route: '/x', sample: 0.5, absolute: true }] });
    const reference = new TraceIdRatioBasedSampler(0.5);
    for (const traceId of traceIds(50)) {
      const expected = reference.shouldSample(ROOT_CONTEXT, traceId).decision;
      const ctx = trace.setSpanContext(ROOT_CONTEXT, { traceId, spanId: SPAN_ID, traceFlags: TraceFlags.SAMPLED, isRemote: true });
      expect(decide(sampler, http('GET', '/x'), { ctx, traceId })).toBe(expected);
    }
  });

  it('without a matching rule, the default decides parent-based: children and continued traces follow the parent', () => {
    const sampler = rules({ rules: [], default: 'drop' });
    expect(decide(sampler, http('GET', '/x'))).toBe(DROP);
    expect(decide(sampler, http('GET', '/x'), { ctx: parentContext(true) })).toBe(RECORD);
    const always = rules({ rules: [] });
    expect(decide(always, http('GET', '/x'))).toBe(RECORD);
    expect(decide(always, http('GET', '/x'), { ctx: parentContext(false) })).toBe(DROP);
  });

  it('a Sampler given as the default is used as is', () => {
    const sampler = rules({ rules: [{ route: '/kept', sample: 'always' }], default: new AlwaysOffSampler() });
    expect(decide(sampler, http('GET', '/other'), { ctx: parentContext(true) })).toBe(DROP);
    expect(decide(sampler, http('GET', '/kept'))).toBe(RECORD);
  });
});

describe('RuleBasedSampler: ratios', () => {
  it('decides per trace id exactly as TraceIdRatioBased with the same ratio (number or { ratio })', () => {
    const reference = new TraceIdRatioBasedSampler(0.3);
    const asNumber = rules({ rules: [{ route: '/orders/*', sample: 0.3 }] });
    const asObject = rules({ rules: [{ route: '/orders/*', sample: { ratio: 0.3 } }] });
    let sampled = 0;
    for (const traceId of traceIds(2000)) {
      const expected = reference.shouldSample(ROOT_CONTEXT, traceId).decision;
      const first = decide(asNumber, http('GET', '/orders/1'), { traceId });
      expect(first).toBe(expected);
      expect(decide(asNumber, http('GET', '/orders/2'), { traceId })).toBe(first);
      expect(decide(asObject, http('GET', '/orders/1'), { traceId })).toBe(first);
      sampled += first === RECORD ? 1 : 0;
    }
    expect(sampled).toBeGreaterThan(450);
    expect(sampled).toBeLessThan(750);
  });

  it('a ratio default is parent-based TraceIdRatioBased', () => {
    const sampler = rules({ rules: [], default: 0.25 });
    const reference = new TraceIdRatioBasedSampler(0.25);
    for (const traceId of traceIds(200)) {
      expect(decide(sampler, {}, { kind: SpanKind.INTERNAL, traceId })).toBe(reference.shouldSample(ROOT_CONTEXT, traceId).decision);
    }
    expect(decide(sampler, {}, { kind: SpanKind.INTERNAL, ctx: parentContext(true) })).toBe(RECORD);
  });

  it('ratios 0 and 1 are drop and always', () => {
    expect(decide(rules({ rules: [{ sample: 0 }] }), http('GET', '/'))).toBe(DROP);
    expect(decide(rules({ rules: [{ sample: 1 }] }), http('GET', '/'))).toBe(RECORD);
  });
});

describe('RuleBasedSampler: toString', () => {
  it('lists every rule with its decision, then the default', () => {
    const sampler = new RuleBasedSampler({
      rules: [
        { protocol: 'http', route: '/orders/:id', sample: 0.1 },
        { protocol: 'grpc', method: /Ping$/, sample: 'drop', absolute: true },
        { pattern: ['a.*', 'b'], sample: { ratio: 0.5 } },
      ],
    });
    expect(sampler.toString()).toBe(
      'RuleBased{rules=[#0 protocol=http route=/orders/:id -> 0.1, #1 protocol=grpc method=/Ping$/ -> drop (absolute), ' +
        '#2 pattern=[a.*|b] -> 0.5, ' +
        'default #0 protocol=http route=[/health|/health/*|/healthz|/healthz/*|/healthcheck|/readyz|/readyz/*|/livez|/livez/*|/metrics] -> drop, ' +
        'default #1 protocol=grpc method=grpc.health.v1.Health/* -> drop], default=ParentBased(AlwaysOn)}',
    );
    expect(rules({ rules: [{ sample: 'always' }], default: 0.2 }).toString()).toBe(
      'RuleBased{rules=[#0 * -> always], default=ParentBased(TraceIdRatio{0.2})}',
    );
    expect(rules({ default: new AlwaysOffSampler() }).toString()).toBe('RuleBased{rules=[], default=AlwaysOffSampler}');
  });
});

describe('RuleBasedSampler: validation', () => {
  const bad: Array<[string, unknown, string]> = [
    ['rules not an array', { rules: {} }, '"RuleBasedSampler.rules" must be an array of rules'],
    ['a rule not an object', { rules: ['/health'] }, '"RuleBasedSampler.rules[0]" must be a rule object'],
    ['a missing decision', { rules: [{ route: '/x' }] }, '"RuleBasedSampler.rules[0].sample" must be'],
    ['a wrong decision', { rules: [{ route: '/x', sample: 'keep' }] }, `"RuleBasedSampler.rules[0].sample" must be 'drop', 'always', a ratio between 0 and 1 or { ratio }, got "keep"`],
    ['a ratio above 1', { rules: [{ route: '/x', sample: 1 }, { route: '/y', sample: 1.5 }] }, '"RuleBasedSampler.rules[1].sample" must be'],
    ['a bad { ratio }', { rules: [{ sample: { ratio: -1 } }] }, '"RuleBasedSampler.rules[0].sample.ratio" must be a number between 0 and 1, got -1'],
    ['an empty route', { rules: [{ route: '', sample: 'drop' }] }, '"RuleBasedSampler.rules[0].route" must be a non-empty string'],
    ['a bad list item', { rules: [{ pattern: ['a', 3], sample: 'drop' }] }, '"RuleBasedSampler.rules[0].pattern[1]" must be'],
    ['absolute not a boolean', { rules: [{ sample: 'drop', absolute: 'yes' }] }, '"RuleBasedSampler.rules[0].absolute" must be a boolean'],
    ['a misspelt field', { rules: [{ rout: '/x', sample: 'drop' }] }, 'unknown option "rout" (did you mean "route"?) in "RuleBasedSampler.rules[0]"'],
    ['a misspelt option', { rule: [] }, 'unknown option "rule" (did you mean "rules"?)'],
    ['defaults not a boolean', { defaults: 'no' }, '"RuleBasedSampler.defaults" must be a boolean'],
    ['a bad default', { default: 'sometimes' }, '"RuleBasedSampler.default" must be'],
    ['a default object without ratio', { default: {} }, 'or a Sampler instance'],
  ];
  it.each(bad)('%s throws OtelConfigError naming the rule index and field', (_name, options, message) => {
    expect(() => new RuleBasedSampler(options as RuleBasedSamplerOptions)).toThrow(OtelConfigError);
    expect(() => new RuleBasedSampler(options as RuleBasedSamplerOptions)).toThrow(message);
  });
});

describe('RuleBasedSampler: failures', () => {
  afterEach(() => diag.disable());

  it('a throwing default sampler is reported once and the span follows its parent', () => {
    const errors: unknown[][] = [];
    const logger: DiagLogger = {
      error: (...args) => errors.push(args),
      warn: () => {},
      info: () => {},
      debug: () => {},
      verbose: () => {},
    };
    diag.setLogger(logger, DiagLogLevel.ERROR);
    const throwing: Sampler = {
      shouldSample: () => {
        throw new Error('sampler bug');
      },
      toString: () => 'Throwing',
    };
    const sampler = rules({ rules: [], default: throwing });
    expect(decide(sampler, {}, { kind: SpanKind.INTERNAL, ctx: parentContext(false) })).toBe(DROP);
    expect(decide(sampler, {}, { kind: SpanKind.INTERNAL })).toBe(RECORD);
    expect(errors.filter(([message]) => String(message).includes("rule sampler's default sampler threw"))).toHaveLength(1);
  });
});

describe('RuleBasedSampler outside Nest: a plain SDK TracerProvider', () => {
  it('drops a health check, keeps the order, and what the health check calls carries a not-sampled traceparent', () => {
    const exporter = new InMemorySpanExporter();
    const provider = new TracerProvider({
      sampler: new RuleBasedSampler({ rules: [{ route: '/orders/:id', sample: 'always' }] }),
      spanProcessors: [new SimpleSpanProcessor({ exporter })],
    });
    const tracer = provider.getTracer('plain');
    const propagator = new W3CTraceContextPropagator();

    const health = tracer.startSpan('GET', { kind: SpanKind.SERVER, attributes: http('GET', '/healthz') }, ROOT_CONTEXT);
    const healthCtx = trace.setSpan(ROOT_CONTEXT, health);
    const downstream = tracer.startSpan('GET', { kind: SpanKind.CLIENT }, healthCtx);
    const carrier: Record<string, string> = {};
    propagator.inject(trace.setSpan(healthCtx, downstream), carrier, { set: (c, k, v) => ((c as Record<string, string>)[k] = v) });
    downstream.end();
    health.end();

    const order = tracer.startSpan('GET /orders/:id', { kind: SpanKind.SERVER, attributes: http('GET', '/orders/7', '/orders/:id') }, ROOT_CONTEXT);
    order.end();

    expect(health.isRecording()).toBe(false);
    expect(carrier.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    expect(carrier.traceparent!.split('-')[1]).toBe(health.spanContext().traceId);
    const exported = exporter.getFinishedSpans();
    expect(exported.map((span) => span.name)).toEqual(['GET /orders/:id']);
    expect(exported[0]!.spanContext().traceFlags & TraceFlags.SAMPLED).toBe(TraceFlags.SAMPLED);
  });
});
