import { ROOT_CONTEXT, SpanKind, trace, TraceFlags } from '@opentelemetry/api';
import { AlwaysOffSampler, SamplingDecision, TraceIdRatioBasedSampler } from '@opentelemetry/sdk-trace';
import { describe, expect, it } from 'vitest';
import type { OtelModuleOptions } from '../interfaces/otel-module-options.interface.js';
import { OtelConfigError } from '../otel.messages.js';
import { describeSampler, resolveSdkConfig, sameSampler } from './config/index.js';
import { RuleBasedSampler } from './rule-based.sampler.js';
import { createSampler } from './sdk-factory.js';

/** `sampler: { rules }` through the module's configuration: resolution, the SDK's sampler, the summary, reuse. */

const resolve = (sampler: OtelModuleOptions['sampler'], env: NodeJS.ProcessEnv = {}) => resolveSdkConfig({ sampler }, env);
const health = { 'http.request.method': 'GET', 'url.path': '/healthz' };
const order = { 'http.request.method': 'GET', 'url.path': '/orders/1', 'http.route': '/orders/:id' };
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';

describe('sampler: { rules } in the module options', () => {
  it('resolves to a rule sampler whose default, when not given, is what OTEL_TRACES_SAMPLER names', () => {
    const env = { OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.25' };
    const config = resolve({ rules: [{ route: '/orders/:id', sample: 'always' }] }, env);
    expect(config.sampler).toMatchObject({ kind: 'rules', fallback: { kind: 'named', name: 'parentbased_traceidratio', ratio: 0.25 } });
    expect(describeSampler(config.sampler)).toBe('RuleBased(1 rule + 2 default rules, else ParentBased(TraceIdRatio{0.25}))');

    const sampler = createSampler(config.sampler);
    expect(sampler).toBeInstanceOf(RuleBasedSampler);
    const reference = new TraceIdRatioBasedSampler(0.25);
    const decide = (attributes: Record<string, string>, traceId = TRACE_ID) =>
      sampler.shouldSample(ROOT_CONTEXT, traceId, 'GET', SpanKind.SERVER, attributes, []).decision;
    expect(decide(order)).toBe(SamplingDecision.RECORD_AND_SAMPLED);
    expect(decide(health)).toBe(SamplingDecision.NOT_RECORD);
    // Everything else: the environment's ParentBased(TraceIdRatio{0.25}).
    for (const traceId of ['00000000000000000000000000000001', 'ffffffffffffffffffffffffffffffff', TRACE_ID]) {
      expect(decide({ 'http.request.method': 'GET', 'url.path': '/other' }, traceId)).toBe(reference.shouldSample(ROOT_CONTEXT, traceId).decision);
    }
  });

  it('without OTEL_TRACES_SAMPLER the default is parent-based always-on, as without rules', () => {
    const config = resolve({ rules: [], defaults: false });
    expect(describeSampler(config.sampler)).toBe('RuleBased(0 rules, else ParentBased(AlwaysOn))');
    const sampler = createSampler(config.sampler);
    const unsampled = trace.setSpanContext(ROOT_CONTEXT, { traceId: TRACE_ID, spanId: '00f067aa0ba902b7', traceFlags: TraceFlags.NONE, isRemote: true });
    expect(sampler.shouldSample(ROOT_CONTEXT, TRACE_ID, 'x', SpanKind.INTERNAL, {}, []).decision).toBe(SamplingDecision.RECORD_AND_SAMPLED);
    expect(sampler.shouldSample(unsampled, TRACE_ID, 'x', SpanKind.SERVER, health, []).decision).toBe(SamplingDecision.NOT_RECORD);
  });

  it('a default given in the options wins over OTEL_TRACES_SAMPLER', () => {
    const env = { OTEL_TRACES_SAMPLER: 'always_on' };
    expect(describeSampler(resolve({ rules: [], default: 'drop' }, env).sampler)).toBe('RuleBased(0 rules + 2 default rules, else ParentBased(AlwaysOff))');
    expect(describeSampler(resolve({ rules: [], default: { ratio: 0.5 } }, env).sampler)).toBe(
      'RuleBased(0 rules + 2 default rules, else ParentBased(TraceIdRatio{0.5}))',
    );
    expect(describeSampler(resolve({ default: new AlwaysOffSampler() }, env).sampler)).toBe('RuleBased(0 rules + 2 default rules, else AlwaysOffSampler)');
    const sampler = createSampler(resolve({ rules: [], default: 'drop' }, env).sampler);
    expect(sampler.shouldSample(ROOT_CONTEXT, TRACE_ID, 'x', SpanKind.INTERNAL, {}, []).decision).toBe(SamplingDecision.NOT_RECORD);
  });

  it('without a sampler option nothing changes: OTEL_TRACES_SAMPLER as before, no rules (not even the default ones)', () => {
    expect(resolve(undefined, { OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.1' }).sampler).toEqual({
      kind: 'named',
      name: 'traceidratio',
      ratio: 0.1,
    });
    expect(resolve(undefined).sampler).toEqual({ kind: 'named', name: 'parentbased_always_on' });
    const sampler = createSampler(resolve(undefined).sampler);
    expect(sampler.shouldSample(ROOT_CONTEXT, TRACE_ID, 'GET', SpanKind.SERVER, health, []).decision).toBe(SamplingDecision.RECORD_AND_SAMPLED);
  });

  it('a bad rule throws OtelConfigError at bootstrap, naming the rule and field', () => {
    expect(() => resolve({ rules: [{ route: '/a', sample: 'drop' }, { pattern: /x/, sample: 'sometimes' as 'drop' }] })).toThrow(OtelConfigError);
    expect(() => resolve({ rules: [{ route: '/a', sample: 'drop' }, { pattern: /x/, sample: 'sometimes' as 'drop' }] })).toThrow(
      '"sampler.rules[1].sample" must be',
    );
  });

  it('two applications asking for the same rules share the SDK; other rules, defaults or default do not', () => {
    const rules = [{ route: /^\/internal/, sample: 'drop' as const }];
    const a = resolve({ rules });
    expect(sameSampler(a.sampler, resolve({ rules: [{ route: /^\/internal/, sample: 'drop' }] }).sampler)).toBe(true);
    expect(sameSampler(a.sampler, resolve({ rules: [{ route: /^\/internal/i, sample: 'drop' }] }).sampler)).toBe(false);
    expect(sameSampler(a.sampler, resolve({ rules, defaults: false }).sampler)).toBe(false);
    expect(sameSampler(a.sampler, resolve({ rules, default: 0.5 }).sampler)).toBe(false);
    expect(sameSampler(a.sampler, resolve({ rules }, { OTEL_TRACES_SAMPLER: 'always_off' }).sampler)).toBe(false);
    expect(sameSampler(a.sampler, resolve('parentbased_always_on').sampler)).toBe(false);
    const given = new AlwaysOffSampler();
    expect(sameSampler(resolve({ rules, default: given }).sampler, resolve({ rules, default: given }).sampler)).toBe(true);
    expect(sameSampler(resolve({ rules, default: given }).sampler, resolve({ rules, default: new AlwaysOffSampler() }).sampler)).toBe(false);
  });
});
