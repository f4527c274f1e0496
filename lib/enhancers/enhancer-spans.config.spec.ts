import { describe, expect, it } from 'vitest';
import { OtelConfigError } from '../otel.messages.js';
import { validateOptions } from '../sdk/config/validate-options.js';
import { describeEnhancerSpans, resolveEnhancerSpans } from './enhancer-spans.config.js';

function thrown(enhancerSpans: unknown): string {
  try {
    validateOptions({ enhancerSpans } as never);
  } catch (error) {
    expect(error).toBeInstanceOf(OtelConfigError);
    return (error as Error).message;
  }
  throw new Error('expected an OtelConfigError');
}

describe('enhancerSpans option', () => {
  it('is off by default and with false', () => {
    expect(resolveEnhancerSpans(undefined)).toBeUndefined();
    expect(resolveEnhancerSpans(false)).toBeUndefined();
    expect(resolveEnhancerSpans({ guards: false, pipes: false, interceptors: false, filters: false })).toBeUndefined();
  });

  it('true turns every kind on, collapsing above 10 calls and keeping the 3 slowest', () => {
    expect(resolveEnhancerSpans(true)).toEqual({
      guard: true,
      pipe: true,
      interceptor: true,
      filter: true,
      collapseAbove: 10,
      keepSlowest: 3,
    });
    expect(resolveEnhancerSpans({ pipes: false, collapseAbove: false })).toMatchObject({ pipe: false, guard: true, collapseAbove: Infinity });
    expect(describeEnhancerSpans(resolveEnhancerSpans({ filters: false, collapseAbove: 20, keepSlowest: 2 })!)).toBe(
      'enhancer spans (guards, pipes, interceptors; collapse above 20, keep 2)',
    );
  });

  it('accepts valid values', () => {
    for (const value of [undefined, true, false, {}, { guards: true, pipes: false }, { collapseAbove: 5, keepSlowest: 5 }, { collapseAbove: false, keepSlowest: 50 }]) {
      expect(() => validateOptions({ enhancerSpans: value } as never)).not.toThrow();
    }
  });

  it('rejects wrong values with a clear OtelConfigError', () => {
    expect(thrown('yes')).toBe(
      'otel-nest: "enhancerSpans" must be a boolean or an options object, got "yes". Use e.g. { enhancerSpans: true } or ' +
        '{ enhancerSpans: { pipes: false, collapseAbove: 20, keepSlowest: 3 } }.',
    );
    expect(thrown({ guards: 'on' })).toContain('"enhancerSpans.guards" must be a boolean, got "on".');
    expect(thrown({ collapseAbove: 0 })).toContain('"enhancerSpans.collapseAbove" must be a positive integer or false, got 0.');
    expect(thrown({ collapseAbove: 2.5 })).toContain('"enhancerSpans.collapseAbove" must be a positive integer or false, got 2.5.');
    expect(thrown({ keepSlowest: 0 })).toContain('"enhancerSpans.keepSlowest" must be a positive integer, got 0.');
    expect(thrown({ keepSlowest: 11 })).toContain('"enhancerSpans.keepSlowest" must be at most "collapseAbove" (10), got 11.');
    expect(thrown({ collapseAbove: 4, keepSlowest: 5 })).toContain('at most "collapseAbove" (4), got 5.');
  });

  it('names the option probably meant for an unknown key', () => {
    expect(thrown({ pipe: false })).toContain('unknown option "pipe" (did you mean "pipes"?) in "enhancerSpans"');
  });
});
