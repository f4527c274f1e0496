import { Module } from '@nestjs/common';
import { APP_INTERCEPTOR, DiscoveryModule } from '@nestjs/core';
import { HttpClientInstrumentation } from './http/http-client.instrumentation.js';
import { HttpServerInstrumentation } from './http/http-server.instrumentation.js';
import { OtelTracingInterceptor } from './interceptors/otel-tracing.interceptor.js';
import { ConfigurableOtelModule } from './otel.module-definition.js';
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
 */
@Module({
  imports: [DiscoveryModule],
  providers: [
    OtelSdkService,
    HttpServerInstrumentation,
    HttpClientInstrumentation,
    TraceService,
    { provide: APP_INTERCEPTOR, useClass: OtelTracingInterceptor },
  ],
  exports: [TraceService, OtelSdkService],
})
export class OtelModule extends ConfigurableOtelModule {}
