import { SDK_DEFAULTS, type ResolvedSampler, type ResolvedSdkConfig, type SdkOptionName } from './sdk-config.js';

/** The options among `names` for which `requested` asks for something else than `running` does. */
export function differingSdkOptions(
  names: Iterable<SdkOptionName>,
  running: ResolvedSdkConfig,
  requested: ResolvedSdkConfig,
): SdkOptionName[] {
  return [...names].filter((name) => !sameSdkOption(name, running, requested));
}

/** Whether `requested` asks for what `running` already does, for one SDK option. */
export function sameSdkOption(name: SdkOptionName, running: ResolvedSdkConfig, requested: ResolvedSdkConfig): boolean {
  switch (name) {
    case 'serviceName':
      return running.serviceName === requested.serviceName;
    case 'serviceVersion':
      return running.serviceVersion === requested.serviceVersion;
    case 'resourceAttributes':
      return sameJson(running.resourceAttributes, requested.resourceAttributes);
    case 'exporter': {
      const [a, b] = [running.exporter, requested.exporter];
      if (a.kind === 'instance' || b.kind === 'instance') {
        return a.kind === 'instance' && b.kind === 'instance' && a.exporter === b.exporter;
      }
      return sameJson(a, b);
    }
    case 'batch':
      return sameJson(running.batch, requested.batch);
    case 'sampler':
      return sameSampler(running.sampler, requested.sampler);
    case 'spanLimits':
      return sameJson(running.spanLimits, requested.spanLimits);
    case 'propagators': {
      const [a, b] = [running.propagators, requested.propagators];
      return a.kind === 'instance' || b.kind === 'instance'
        ? a.kind === 'instance' && b.kind === 'instance' && a.propagator === b.propagator
        : a.names.join() === b.names.join();
    }
    case 'spanProcessors':
      return requested.spanProcessors.every((p) => running.spanProcessors.includes(p));
    case 'requestId':
      return sameJson(running.requestId ?? null, requested.requestId ?? null);
  }
}

/**
 * A given Sampler is the same only as itself (two instances may describe themselves alike and
 * sample differently); built-in ones are the same when name (which says whether it is parent
 * based) and ratio are.
 */
export function sameSampler(a: ResolvedSampler, b: ResolvedSampler): boolean {
  if (a.kind === 'rules' || b.kind === 'rules') {
    return a.kind === 'rules' && b.kind === 'rules' && sameRuleSampler(a, b);
  }
  if (a.kind === 'instance' || b.kind === 'instance') {
    return a.kind === 'instance' && b.kind === 'instance' && a.sampler === b.sampler;
  }
  return a.name === b.name && (a.ratio ?? SDK_DEFAULTS.samplerRatio) === (b.ratio ?? SDK_DEFAULTS.samplerRatio);
}

/**
 * Rule samplers are the same when their rules are (RegExps by source and flags), `defaults` is,
 * and their default is: a given Sampler only as itself, a decision by value, none by the fallback.
 */
function sameRuleSampler(
  a: Extract<ResolvedSampler, { kind: 'rules' }>,
  b: Extract<ResolvedSampler, { kind: 'rules' }>,
): boolean {
  const [x, y] = [a.options, b.options];
  const regExpAware = (_key: string, value: unknown): unknown => (value instanceof RegExp ? `RegExp ${String(value)}` : value);
  const rules = (rules: unknown): string => JSON.stringify(rules ?? [], regExpAware);
  const isInstance = (value: unknown): boolean => typeof value === 'object' && value !== null && 'shouldSample' in value;
  const sameDefault =
    isInstance(x.default) || isInstance(y.default)
      ? x.default === y.default
      : x.default === undefined && y.default === undefined
        ? sameSampler(a.fallback, b.fallback)
        : sameJson(x.default, y.default);
  return rules(x.rules) === rules(y.rules) && (x.defaults !== false) === (y.defaults !== false) && sameDefault;
}

/** Plain data compared by value; key order does not matter. */
function sameJson(a: unknown, b: unknown): boolean {
  const canonical = (value: unknown): unknown =>
    value !== null && typeof value === 'object' && !Array.isArray(value)
      ? Object.fromEntries(
          Object.entries(value)
            .sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))
            .map(([k, v]) => [k, canonical(v)]),
        )
      : value === Infinity
        ? 'Infinity'
        : value;
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
}
