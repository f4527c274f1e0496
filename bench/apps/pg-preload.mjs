// The pg route's traced configuration, set up as the sample does (sample/instrumentation.ts): the
// SDK started from OTEL_* variables by otel-nest/register, instrumentation-pg registered before
// the app imports pg (ESM import hook limited to pg), OtelModule.forRoot() in the app sharing it.
// Run as: node --import ./bench/apps/pg-preload.mjs bench/apps/http-app.mjs
import { register } from 'node:module';
import 'otel-nest/register';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';

register('@opentelemetry/instrumentation/hook.mjs', import.meta.url, { data: { include: ['pg'] } });

// requireParentSpan: no root spans for pool and connection housekeeping outside any request.
registerInstrumentations({
  instrumentations: [new PgInstrumentation({ requireParentSpan: true, ignoreConnectSpans: true })],
});
