import { Module, type DynamicModule } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { SagaOrchestrator } from './saga.orchestrator.js';
import { SagaRegistry } from './saga.registry.js';
import { ConfigurableOtelSagaModule, OTEL_SAGA_MODULE_OPTIONS_TYPE } from './saga.module-definition.js';
import { TwoPhaseCommitCoordinator } from './two-phase-commit.coordinator.js';

/**
 * Sagas and two-phase commits, traced. Provides {@link SagaOrchestrator},
 * {@link TwoPhaseCommitCoordinator} and {@link SagaRegistry}; finds every `@SagaStep()` method of
 * the application's singleton providers and controllers at module init.
 *
 * ```ts
 * @Module({
 *   imports: [
 *     OtelModule.forRoot({ serviceName: 'orders', baggageToAttributes: [...SAGA_BAGGAGE_KEYS] }),
 *     OtelSagaModule.forRoot({ sagas: [refundSaga] }),
 *   ],
 *   providers: [InventorySteps, PaymentSteps],
 * })
 * export class AppModule {}
 * ```
 *
 * Global unless `isGlobal: false`. `OtelSagaModule` without `forRoot()` works too (no extra
 * sagas, not global). Spans go through the global tracer provider, which `OtelModule` sets up;
 * without it everything runs, untraced.
 *
 * @publicApi
 */
@Module({
  imports: [DiscoveryModule],
  providers: [SagaRegistry, SagaOrchestrator, TwoPhaseCommitCoordinator],
  exports: [SagaRegistry, SagaOrchestrator, TwoPhaseCommitCoordinator],
})
export class OtelSagaModule extends ConfigurableOtelSagaModule {
  /** The module with extra sagas, global unless `isGlobal: false`. Options are optional. */
  static override forRoot(options: typeof OTEL_SAGA_MODULE_OPTIONS_TYPE = {}): DynamicModule {
    return super.forRoot(options);
  }
}
