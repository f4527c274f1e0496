// Preload of the services that use PostgreSQL or Redis (orders, inventory):
//   OTEL_SERVICE_NAME=inventory node --import ./instrumentation.js inventory/main.js
// It starts the SDK (otel-nest/register, from the OTEL_* variables) and registers the standard
// instrumentations before the application imports `pg` and `ioredis`; OtelModule.forRoot() then
// shares this SDK.
import { register } from 'node:module';
import 'otel-nest/register';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';

// The sample is ESM: `import { Redis } from 'ioredis'` does not go through require(), so the
// instrumentations also need the import hook, limited to the modules they patch.
register('@opentelemetry/instrumentation/hook.mjs', import.meta.url, { data: { include: ['pg', 'ioredis'] } });

// requireParentSpan: no root spans for pool and connection housekeeping outside any request.
registerInstrumentations({
  instrumentations: [
    new PgInstrumentation({ requireParentSpan: true, ignoreConnectSpans: true }),
    new IORedisInstrumentation({ requireParentSpan: true }),
  ],
});
