import { Module, type DynamicModule } from '@nestjs/common';
import { SimpleSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { OtelModule, type OtelModuleOptions } from 'otel-nest';
import { ShopModule } from './shop/shop.module.js';

export interface AppModuleOptions {
  /** Receives every span as it ends (the sample's console tree printer). */
  traceExporter: SpanExporter;
}

/** True when a collector is configured through the standard OpenTelemetry variables. */
export function collectorConfigured(): boolean {
  return Boolean(process.env.OTEL_EXPORTER_OTLP_ENDPOINT || process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

@Module({})
export class AppModule {
  static forRoot({ traceExporter }: AppModuleOptions): DynamicModule {
    // Without a collector, the printer is the exporter, unbatched. With one, otel-nest's OTLP/HTTP
    // exporter (URL, headers and timeout from OTEL_EXPORTER_OTLP_*) sends batches there, and the
    // printer still gets each span through a processor of its own.
    const exportOptions: OtelModuleOptions = collectorConfigured()
      ? { exporter: 'otlp', spanProcessors: [new SimpleSpanProcessor(traceExporter)] }
      : { exporter: traceExporter, batch: false };
    return {
      module: AppModule,
      imports: [
        OtelModule.forRoot({
          serviceName: 'shop',
          serviceVersion: '0.1.0',
          ...exportOptions,
          // Every span started while `tenant.id` is in the baggage gets it as an attribute, in
          // this process and in every service the baggage travels to.
          baggageToAttributes: ['tenant.id'],
        }),
        ShopModule,
      ],
    };
  }
}
