import type { EnhancerSpansOptions } from '../interfaces/otel-module-options.interface.js';
import { OtelConfigError, invalidEnhancerSpansOption } from '../otel.messages.js';
import { rejectUnknownKeys } from '../sdk/config/suggest.js';
import { processGlobal } from '../utils/process-global.js';

/** The four kinds of Nest enhancers that get spans, as `nestjs.type` names them. */
export type EnhancerType = 'guard' | 'pipe' | 'interceptor' | 'filter';

/** The method Nest calls on each kind, the one that is timed. */
export const ENHANCER_METHODS: Readonly<Record<EnhancerType, 'canActivate' | 'transform' | 'intercept' | 'catch'>> = {
  guard: 'canActivate',
  pipe: 'transform',
  interceptor: 'intercept',
  filter: 'catch',
};

/** `enhancerSpans` once resolved; `undefined` stands for off. */
export interface ResolvedEnhancerSpans {
  readonly guard: boolean;
  readonly pipe: boolean;
  readonly interceptor: boolean;
  readonly filter: boolean;
  /** More calls than this of one enhancer under one parent span (in one window) are collapsed; `Infinity`: never. */
  readonly collapseAbove: number;
  readonly keepSlowest: number;
}

export const ENHANCER_SPANS_DEFAULTS = { collapseAbove: 10, keepSlowest: 3 } as const;

const KNOWN_KEYS = ['guards', 'pipes', 'interceptors', 'filters', 'collapseAbove', 'keepSlowest'] as const;
const EXAMPLE = '{ enhancerSpans: true } or { enhancerSpans: { pipes: false, collapseAbove: 20, keepSlowest: 3 } }';

const isPositiveInteger = (value: unknown): value is number =>
  typeof value === 'number' && Number.isSafeInteger(value) && value > 0;

function fail(path: string, expected: string, got: unknown): never {
  throw new OtelConfigError(invalidEnhancerSpansOption(path, expected, EXAMPLE, got));
}

/** Throws {@link OtelConfigError} for a wrong explicit `enhancerSpans`. */
export function validateEnhancerSpansOption(value: unknown): void {
  if (value === undefined || typeof value === 'boolean') {
    return;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    fail('enhancerSpans', 'a boolean or an options object', value);
  }
  const given = value as Record<string, unknown>;
  rejectUnknownKeys(given, KNOWN_KEYS, '"enhancerSpans"');
  for (const key of ['guards', 'pipes', 'interceptors', 'filters'] as const) {
    if (given[key] !== undefined && typeof given[key] !== 'boolean') {
      fail(`enhancerSpans.${key}`, 'a boolean', given[key]);
    }
  }
  if (given.collapseAbove !== undefined && given.collapseAbove !== false && !isPositiveInteger(given.collapseAbove)) {
    fail('enhancerSpans.collapseAbove', 'a positive integer or false', given.collapseAbove);
  }
  if (given.keepSlowest !== undefined) {
    if (!isPositiveInteger(given.keepSlowest)) {
      fail('enhancerSpans.keepSlowest', 'a positive integer', given.keepSlowest);
    }
    const above = given.collapseAbove ?? ENHANCER_SPANS_DEFAULTS.collapseAbove;
    if (typeof above === 'number' && given.keepSlowest > above) {
      fail('enhancerSpans.keepSlowest', `at most "collapseAbove" (${above})`, given.keepSlowest);
    }
  }
}

/** `undefined` when off (the default). Assumes a validated option. */
export function resolveEnhancerSpans(option: boolean | EnhancerSpansOptions | undefined): ResolvedEnhancerSpans | undefined {
  if (option === undefined || option === false) {
    return undefined;
  }
  const given: EnhancerSpansOptions = option === true ? {} : option;
  const resolved: ResolvedEnhancerSpans = {
    guard: given.guards !== false,
    pipe: given.pipes !== false,
    interceptor: given.interceptors !== false,
    filter: given.filters !== false,
    collapseAbove: given.collapseAbove === false ? Infinity : (given.collapseAbove ?? ENHANCER_SPANS_DEFAULTS.collapseAbove),
    keepSlowest: given.keepSlowest ?? ENHANCER_SPANS_DEFAULTS.keepSlowest,
  };
  return resolved.guard || resolved.pipe || resolved.interceptor || resolved.filter ? resolved : undefined;
}

/** `guards, pipes, interceptors, filters; collapse above 10 (keep 3)`: for the startup summary. */
export function describeEnhancerSpans(config: ResolvedEnhancerSpans): string {
  const kinds = (['guard', 'pipe', 'interceptor', 'filter'] as const).filter((type) => config[type]).map((type) => `${type}s`);
  const collapse = Number.isFinite(config.collapseAbove)
    ? `collapse above ${config.collapseAbove}, keep ${config.keepSlowest}`
    : 'no collapse';
  return `enhancer spans (${kinds.join(', ')}; ${collapse})`;
}

/**
 * Where a decorator made by `otelInstrument()` finds the configuration of its application: set
 * when the decorator sees that application's {@link EnhancerSpansRegistration} instance (Nest
 * hands it every instance it creates, ours included).
 */
export interface EnhancerConfigSource {
  linked: boolean;
  config: ResolvedEnhancerSpans | undefined;
}

/** What a registration exposes to the decorator (an interface, so that two package copies match). */
export interface EnhancerSpansRegistrationLike {
  readonly config: ResolvedEnhancerSpans | undefined;
  /** Set when an `otelInstrument()` decorator saw this instance. */
  seen: boolean;
}

/** Classes of otel-nest's own enhancers carry this static brand: they get no spans of their own. */
export const OTEL_INTERNAL_ENHANCER = Symbol.for('otel-nest.internal-enhancer');

/** Brand of a registration instance, found by the decorator whichever copy of the package made it. */
export const ENHANCER_REGISTRATION = Symbol.for('otel-nest.enhancer-spans.registration');

export function isEnhancerRegistration(value: unknown): value is EnhancerSpansRegistrationLike {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[ENHANCER_REGISTRATION] === true;
}

/**
 * The applications alive in this process, in creation order. An enhancer wrapped outside any
 * application's decorator (`withEnhancerSpans()`, or a decorator that never saw its application's
 * registration) follows the last one.
 */
const registrations = processGlobal('enhancer-spans.registrations', () => [] as EnhancerSpansRegistrationLike[]);

export function addRegistration(registration: EnhancerSpansRegistrationLike): void {
  registrations.push(registration);
}

export function removeRegistration(registration: EnhancerSpansRegistrationLike): void {
  const at = registrations.indexOf(registration);
  if (at >= 0) {
    registrations.splice(at, 1);
  }
}

/** The configuration an enhancer call follows. */
export function currentConfig(source: EnhancerConfigSource | undefined): ResolvedEnhancerSpans | undefined {
  if (source?.linked) {
    return source.config;
  }
  return registrations[registrations.length - 1]?.config;
}
