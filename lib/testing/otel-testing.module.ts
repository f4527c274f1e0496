import { Module, type DynamicModule } from '@nestjs/common';
import type { OtelModuleOptions } from '../interfaces/otel-module-options.interface.js';
import { OtelModule } from '../otel.module.js';
import { SpanRecorder, spanRecorder } from './span-recorder.js';

/** Options of {@link OtelTestingModule.forRoot}: those of `OtelModule`, minus the export pipeline it sets. */
export type OtelTestingModuleOptions = Omit<OtelModuleOptions, 'exporter' | 'batch'> & {
  /** As `OtelModule.forRoot`'s: `false` leaves out the global interceptor. */
  globalInterceptor?: boolean;
};

/**
 * `OtelModule` wired for tests: spans go to the process-wide {@link SpanRecorder} as each one
 * ends (no batching delay), and the startup summary is quiet. Inject `SpanRecorder` or use
 * `app.get(SpanRecorder)` to read them.
 */
@Module({})
export class OtelTestingModule {
  static forRoot(options: OtelTestingModuleOptions = {}): DynamicModule {
    return {
      module: OtelTestingModule,
      global: true,
      imports: [
        OtelModule.forRoot({
          ...options,
          exporter: spanRecorder.exporter,
          batch: false,
          logSummary: options.logSummary ?? false,
        }),
      ],
      providers: [{ provide: SpanRecorder, useValue: spanRecorder }],
      exports: [SpanRecorder],
    };
  }
}
