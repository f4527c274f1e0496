import { FOREIGN_SDK_DESCRIPTION, startupSummary } from '../../otel.messages.js';
import { describeRedaction, REDACTION_DEFAULT } from '../../redaction/redaction-options.js';
import { DEFAULT_SAMPLING_RULES, describeSamplingDecision } from '../sampling-rules.js';
import { SDK_DEFAULTS, type ResolvedExporter, type ResolvedPropagators, type ResolvedSampler, type ResolvedSdkConfig } from './sdk-config.js';

/** What the startup summary needs to know about the SDK an application uses (an `SdkHandle` has it). */
export interface SummarizedSdk {
  readonly disabled: boolean;
  readonly disabledReason: string | undefined;
  /** The provider was created by otel-nest. */
  readonly owned: boolean;
  /** An otel-nest provider already ran and this application shares it. */
  readonly reused: boolean;
  readonly serviceName: string;
  /** The configuration the running otel-nest SDK was built from; undefined when disabled or foreign. */
  readonly running: ResolvedSdkConfig | undefined;
  /** Where the metrics go, when they are on. */
  readonly metrics?: { readonly description: string };
}

/**
 * The one startup summary of an application: its SDK, and what it traces (`traced`) or leaves to
 * other instrumentations (`tracedByOthers`).
 */
export function describeStartup(sdk: SummarizedSdk, traced: readonly string[], tracedByOthers: readonly string[]): string {
  const running = sdk.running;
  return startupSummary({
    serviceName: sdk.serviceName,
    sdk: sdk.disabled ? 'disabled' : !sdk.owned ? 'foreign' : sdk.reused ? 'shared' : 'started',
    disabledReason: sdk.disabledReason,
    exporter: running ? describeExporter(running.exporter) : FOREIGN_SDK_DESCRIPTION,
    sampler: running ? describeSampler(running.sampler) : FOREIGN_SDK_DESCRIPTION,
    propagators: running ? describePropagators(running.propagators) : FOREIGN_SDK_DESCRIPTION,
    // Only when it is not the default (on, built-in rules): `off` or `on (custom)`.
    redaction: running && running.redaction !== REDACTION_DEFAULT ? describeRedaction(running.redaction) : undefined,
    traced,
    tracedByOthers,
    metrics: sdk.metrics?.description,
  });
}

/** `otlp http://localhost:4318/v1/traces`, `console`, `none`, or the class name of a given SpanExporter. */
export function describeExporter(exporter: ResolvedExporter): string {
  switch (exporter.kind) {
    case 'otlp':
      return `otlp ${exporter.url}`;
    case 'instance':
      return instanceName(exporter.exporter, 'SpanExporter');
    default:
      return exporter.kind;
  }
}

/** `ParentBased(TraceIdRatio{0.25})`, `AlwaysOn`, ... or the `toString()` of a given Sampler. */
export function describeSampler(sampler: ResolvedSampler): string {
  if (sampler.kind === 'rules') {
    return describeRuleSampler(sampler);
  }
  if (sampler.kind === 'instance') {
    const text = String(sampler.sampler.toString?.() ?? '');
    return text && text !== '[object Object]' ? text : instanceName(sampler.sampler, 'Sampler');
  }
  const ratio = `TraceIdRatio{${sampler.ratio ?? SDK_DEFAULTS.samplerRatio}}`;
  switch (sampler.name) {
    case 'always_on':
      return 'AlwaysOn';
    case 'always_off':
      return 'AlwaysOff';
    case 'traceidratio':
      return ratio;
    case 'parentbased_always_on':
      return 'ParentBased(AlwaysOn)';
    case 'parentbased_always_off':
      return 'ParentBased(AlwaysOff)';
    case 'parentbased_traceidratio':
      return `ParentBased(${ratio})`;
  }
}

/** `tracecontext,baggage`; `none` for none; the class name of a given propagator. */
export function describePropagators(propagators: ResolvedPropagators): string {
  if (propagators.kind === 'instance') {
    return instanceName(propagators.propagator, 'TextMapPropagator');
  }
  return propagators.names.join(',') || 'none';
}

function instanceName(value: object, fallback: string): string {
  const name = value.constructor?.name;
  return name && name !== 'Object' ? name : fallback;
}

/** `RuleBased(2 rules + 2 default rules, else ParentBased(AlwaysOn))`. */
function describeRuleSampler(sampler: Extract<ResolvedSampler, { kind: 'rules' }>): string {
  const own = sampler.options.rules?.length ?? 0;
  const defaults = sampler.options.defaults === false ? 0 : DEFAULT_SAMPLING_RULES.length;
  const given = sampler.options.default;
  const fallback =
    given === undefined
      ? describeSampler(sampler.fallback)
      : typeof given === 'object' && 'shouldSample' in given
        ? describeSampler({ kind: 'instance', sampler: given })
        : `ParentBased(${describeSamplingDecision(given)})`;
  const count = (n: number, what: string): string => `${n} ${what}${n === 1 ? '' : 's'}`;
  const parts = [count(own, 'rule'), ...(defaults > 0 ? [count(defaults, 'default rule')] : [])];
  return `RuleBased(${parts.join(' + ')}, else ${fallback})`;
}
