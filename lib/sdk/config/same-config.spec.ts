import { AlwaysOnSampler, type Sampler } from '@opentelemetry/sdk-trace';
import { describe, expect, it } from 'vitest';
import type { OtelModuleOptions } from '../../interfaces/otel-module-options.interface.js';
import { describeSampler, differingSdkOptions, resolveSdkConfig, sameSampler } from './index.js';

const sampler = (option: OtelModuleOptions['sampler'], env: NodeJS.ProcessEnv = {}) =>
  resolveSdkConfig({ sampler: option }, env).sampler;

/** Samples like AlwaysOn and describes itself with a fixed text, as many custom samplers do. */
class TenantSampler extends AlwaysOnSampler implements Sampler {
  override toString(): string {
    return 'TenantSampler';
  }
}

describe('sameSampler', () => {
  it('two Sampler instances that describe themselves alike are not the same sampler', () => {
    const a = sampler(new TenantSampler());
    const b = sampler(new TenantSampler());
    expect(describeSampler(a)).toBe(describeSampler(b));
    expect(sameSampler(a, b)).toBe(false);
    expect(sameSampler(a, sampler((a as { sampler: Sampler }).sampler))).toBe(true);
  });

  it('a Sampler instance is never the same as a built-in sampler, even one described alike', () => {
    class LooksBuiltIn extends AlwaysOnSampler {
      override toString(): string {
        return 'ParentBased(AlwaysOn)';
      }
    }
    expect(sameSampler(sampler(new LooksBuiltIn()), sampler('parentbased_always_on'))).toBe(false);
  });

  it('built-in samplers are the same when name and ratio are, however they were given', () => {
    expect(sameSampler(sampler({ ratio: 0.25 }), sampler('parentbased_traceidratio', { OTEL_TRACES_SAMPLER_ARG: '0.25' }))).toBe(true);
    expect(sameSampler(sampler('traceidratio'), sampler({ ratio: 1, parentBased: false }))).toBe(true);
    expect(sameSampler(sampler({ ratio: 0.25 }), sampler({ ratio: 0.5 }))).toBe(false);
    expect(sameSampler(sampler({ ratio: 0.25 }), sampler({ ratio: 0.25, parentBased: false }))).toBe(false);
    expect(sameSampler(sampler('always_on'), sampler('parentbased_always_on'))).toBe(false);
  });
});

describe('differingSdkOptions', () => {
  it('lists the options whose requested value differs from the running one', () => {
    const running = resolveSdkConfig({ serviceName: 'a', sampler: new TenantSampler(), batch: false }, {});
    const requested = resolveSdkConfig({ serviceName: 'a', sampler: new TenantSampler(), batch: false }, {});
    expect(differingSdkOptions(['serviceName', 'sampler', 'batch'], running, requested)).toEqual(['sampler']);
  });
});
