import { Module, type DynamicModule } from '@nestjs/common';
import { APP_GUARD, APP_INTERCEPTOR, DiscoveryModule } from '@nestjs/core';
import { EnhancerSpansRegistration } from './enhancers/enhancer-spans.registration.js';
import { HttpClientInstrumentation } from './http/http-client.instrumentation.js';
import { HttpServerInstrumentation } from './http/http-server.instrumentation.js';
import { HttpRouteTemplates } from './http/http-route-templates.js';
import { OtelHandlerGuard } from './interceptors/otel-handler.guard.js';
import { OtelTracingInterceptor } from './interceptors/otel-tracing.interceptor.js';
import { ConfigurableOtelModule, OTEL_MODULE_ASYNC_OPTIONS_TYPE, OTEL_MODULE_OPTIONS_TYPE } from './otel.module-definition.js';
import { OtelSdkService } from './sdk/otel-sdk.service.js';
import { TraceService } from './services/trace.service.js';

/**
 * OpenTelemetry tracing for a Nest application, with one import:
 *
 * ```ts
 * @Module({ imports: [OtelModule.forRoot({ serviceName: 'orders' })] })
 * export class AppModule {}
 * ```
 *
 * Sets up (or adopts) the OpenTelemetry SDK, traces every HTTP request and outgoing `fetch` /
 * `HttpService` call, and provides {@link TraceService}. Global unless `isGlobal: false`.
 * `forRootAsync({ imports, inject, useFactory })` takes the options from other providers.
 * `globalInterceptor: false` leaves out the global interceptor (see the README's Options).
 */
@Module({
  imports: [DiscoveryModule],
  providers: [
    OtelSdkService,
    HttpServerInstrumentation,
    HttpRouteTemplates,
    HttpClientInstrumentation,
    TraceService,
    EnhancerSpansRegistration,
  ],
  exports: [TraceService, OtelSdkService],
})
export class OtelModule extends ConfigurableOtelModule {
  static override forRoot(options: typeof OTEL_MODULE_OPTIONS_TYPE = {}): DynamicModule {
    return withInterceptor(super.forRoot(options), options.globalInterceptor);
  }

  static override forRootAsync(options: typeof OTEL_MODULE_ASYNC_OPTIONS_TYPE): DynamicModule {
    return withInterceptor(super.forRootAsync(options), options.globalInterceptor);
  }
}

/**
 * The global interceptor names the handler on its span and keeps the error it throws; Nest runs
 * its interceptor pipeline for every request once any global interceptor exists, which
 * `globalInterceptor: false` saves (the README's Options say what the spans lose).
 */
function withInterceptor(definition: DynamicModule, globalInterceptor: boolean | undefined): DynamicModule {
  if (globalInterceptor === false) {
    // Handler names still, from a guard: Nest's guard pipeline costs far less than its interceptor pipeline.
    return { ...definition, providers: [...(definition.providers ?? []), { provide: APP_GUARD, useClass: OtelHandlerGuard }] };
  }
  return { ...definition, providers: [...(definition.providers ?? []), { provide: APP_INTERCEPTOR, useClass: OtelTracingInterceptor }] };
}
