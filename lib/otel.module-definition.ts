import { ConfigurableModuleBuilder } from '@nestjs/common';
import type { OtelModuleOptions } from './interfaces/otel-module-options.interface.js';

export const {
  ConfigurableModuleClass: ConfigurableOtelModule,
  MODULE_OPTIONS_TOKEN: OTEL_MODULE_OPTIONS,
  OPTIONS_TYPE: OTEL_MODULE_OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE: OTEL_MODULE_ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<OtelModuleOptions>({ moduleName: 'Otel' })
  .setClassMethodName('forRoot')
  // Extras, not options: they shape the module itself, so `forRootAsync` takes them next to
  // `useFactory` (known before any provider resolves). `globalInterceptor` is applied by OtelModule.
  .setExtras({ isGlobal: true, globalInterceptor: true }, (definition, extras) => ({ ...definition, global: extras.isGlobal }))
  .build();
