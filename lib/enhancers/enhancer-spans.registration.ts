import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import type { OtelModuleOptions } from '../interfaces/otel-module-options.interface.js';
import { OTEL_MODULE_OPTIONS } from '../otel.module-definition.js';
import { enhancerSpansWithoutInstrument } from '../otel.messages.js';
import { OtelSdkService } from '../sdk/otel-sdk.service.js';
import {
  addRegistration,
  describeEnhancerSpans,
  ENHANCER_REGISTRATION,
  removeRegistration,
  resolveEnhancerSpans,
  type EnhancerSpansRegistrationLike,
  type ResolvedEnhancerSpans,
} from './enhancer-spans.config.js';

/**
 * This application's `enhancerSpans`, where the application's `otelInstrument()` decorator finds
 * it: Nest hands this instance to the decorator as it hands every instance it creates. Also the
 * fallback of enhancers wrapped outside a decorator (`withEnhancerSpans()`), while the application runs.
 */
@Injectable()
export class EnhancerSpansRegistration implements EnhancerSpansRegistrationLike, OnApplicationBootstrap, OnApplicationShutdown {
  readonly [ENHANCER_REGISTRATION] = true;
  readonly config: ResolvedEnhancerSpans | undefined;
  seen = false;
  private readonly logSummary: boolean;

  constructor(@Inject(OTEL_MODULE_OPTIONS) options: OtelModuleOptions, sdk: OtelSdkService) {
    // OtelSdkService validated the options (it is created first: it is injected here).
    this.config = sdk.isActive ? resolveEnhancerSpans(options?.enhancerSpans) : undefined;
    this.logSummary = options?.logSummary !== false;
    if (this.config) {
      sdk.addTraced(describeEnhancerSpans(this.config));
    }
    addRegistration(this);
  }

  onApplicationBootstrap(): void {
    if (this.config && !this.seen && this.logSummary) {
      new Logger('OtelModule').warn(enhancerSpansWithoutInstrument());
    }
  }

  onApplicationShutdown(): void {
    removeRegistration(this);
  }
}
