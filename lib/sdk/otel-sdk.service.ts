import {
  Inject,
  Injectable,
  Logger,
  Optional,
  type OnApplicationBootstrap,
  type OnModuleInit,
  type OnApplicationShutdown,
} from '@nestjs/common';
import { DiscoveryService, ModulesContainer } from '@nestjs/core';
import { diag } from '@opentelemetry/api';
import type { OtelModuleOptions } from '../interfaces/otel-module-options.interface.js';
import { OTEL_MODULE_OPTIONS } from '../otel.module-definition.js';
import { tracedTransportsNotListed } from '../otel.messages.js';
import { tracedTransportLabel } from '../utils/traced-transport.js';
import { describeStartup, resolveSdkConfig, type ResolvedSdkConfig } from './config/index.js';
import { acquireSdk, releaseSdk, type SdkHandle } from './sdk-handle.js';
import { compileBaggagePolicy, installBaggagePolicy, uninstallBaggagePolicy } from '../propagation/baggage-policy.js';

/**
 * Owns this application's hold on the process-wide OpenTelemetry SDK: acquires it when the module
 * is created (so spans work from the first provider on), logs the startup summary, and on
 * application shutdown flushes every finished span and releases it. The last application to
 * release it shuts the SDK down.
 */
@Injectable()
export class OtelSdkService implements OnModuleInit, OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('OtelModule');
  /** The resolved configuration (options over `OTEL_*` variables over defaults). */
  readonly config: ResolvedSdkConfig;
  private readonly handle: SdkHandle;
  private readonly traced: string[] = [];
  private readonly tracedByOthers: string[] = [];
  private released = false;

  constructor(
    @Inject(OTEL_MODULE_OPTIONS) options: OtelModuleOptions,
    @Optional() private readonly modules?: ModulesContainer,
    @Optional() private readonly discovery?: DiscoveryService,
  ) {
    // Wrong options throw here, at bootstrap, with a message that says how to fix them.
    this.config = resolveSdkConfig(options);
    this.handle = acquireSdk(this.config);
    // Process-wide, as the propagators are: the last application created sets it.
    installBaggagePolicy(compileBaggagePolicy(options?.baggage), this);
  }

  /** True when spans are recorded by an SDK (ours or the application's own). */
  get isActive(): boolean {
    return !this.handle.disabled;
  }

  /** Called by the instrumentations so that the startup summary says what is traced. */
  addTraced(what: string): void {
    if (!this.traced.includes(what)) {
      this.traced.push(what);
    }
  }

  /**
   * Called by the instrumentations that step aside because another instrumentation already traces
   * the same calls (the application's instrumentation-undici, instrumentation-http), so that the
   * summary says who traces them.
   */
  addTracedByOthers(what: string): void {
    if (!this.tracedByOthers.includes(what)) {
      this.tracedByOthers.push(what);
    }
  }

  /** Exports every finished span now. */
  async forceFlush(): Promise<void> {
    await this.handle.forceFlush();
  }

  /**
   * Waits until metrics record (their packages load asynchronously, so the first request is
   * measured). A configuration that cannot work (the Prometheus exporter not installed) throws here,
   * at bootstrap, as a wrong option does.
   */
  async onModuleInit(): Promise<void> {
    const error = await this.handle.metrics?.ready;
    if (error !== undefined) {
      throw error;
    }
  }

  onApplicationBootstrap(): void {
    if (this.config.logSummary === false) {
      return;
    }
    for (const warning of [...this.config.warnings, ...this.handle.warnings]) {
      this.logger.warn(warning);
    }
    this.logger.log(this.summary());
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.released) {
      return;
    }
    this.released = true;
    uninstallBaggagePolicy(this);
    // Nest calls this after the HTTP server stopped taking requests, so every span of a finished
    // request has ended by now and the flush below exports all of them.
    await releaseSdk(this.handle);
  }

  /** One line: service, exporter, sampler, propagators, what is traced (and what others trace). */
  summary(): string {
    return describeStartup(this.handle, [...this.traced, ...this.applicationTransports()], this.tracedByOthers);
  }

  /**
   * The traced transports of this application, not of the whole process (several applications
   * can share one): its microservice strategies, which Nest announces on the application's RPC
   * target registry, and its client providers (`ClientsModule.register({ customClass })`).
   */
  private applicationTransports(): string[] {
    const found = new Set<string>();
    const note = (candidate: unknown): void => {
      const label = tracedTransportLabel(candidate);
      if (label) {
        found.add(label);
      }
    };
    try {
      // A ReplaySubject: subscribing replays every target registered so far, synchronously.
      this.modules?.getRpcTargetRegistry?.().subscribe(note).unsubscribe();
      for (const wrapper of this.discovery?.getProviders() ?? []) {
        note(wrapper.instance);
      }
    } catch (err) {
      diag.error(tracedTransportsNotListed(), err);
    }
    return [...found];
  }
}
