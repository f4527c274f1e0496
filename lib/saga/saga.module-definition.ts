import { ConfigurableModuleBuilder } from '@nestjs/common';
import type { SagaDefinition } from './saga-definition.js';

/** Options of `OtelSagaModule.forRoot()`. */
export interface OtelSagaModuleOptions {
  /**
   * Sagas built with `defineSaga(...).build()`, registered next to the `@SagaStep()` ones so that
   * `SagaOrchestrator.run(name)` finds them by name. Default: none.
   */
  sagas?: readonly SagaDefinition<any, any>[];
}

export const {
  ConfigurableModuleClass: ConfigurableOtelSagaModule,
  MODULE_OPTIONS_TOKEN: OTEL_SAGA_MODULE_OPTIONS,
  OPTIONS_TYPE: OTEL_SAGA_MODULE_OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE: OTEL_SAGA_MODULE_ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<OtelSagaModuleOptions>({ moduleName: 'OtelSaga' })
  .setClassMethodName('forRoot')
  .setExtras({ isGlobal: true }, (definition, extras) => ({ ...definition, global: extras.isGlobal }))
  .build();
