/**
 * `node --import otel-nest/register dist/main.js`: starts the OpenTelemetry SDK from the `OTEL_*`
 * environment variables before the application's own modules load.
 *
 * Needed only for instrumentations that patch modules through require/import hooks (pg, ioredis,
 * the `http` module, ...): they must be registered before those modules are first loaded, which is
 * earlier than any `OtelModule.forRoot()` can run. `OtelModule` then shares this SDK (and applies its
 * `baggageToAttributes`); its other SDK options cannot change a running provider. Without such
 * instrumentations, `OtelModule.forRoot()` alone is enough.
 *
 * Importing it twice is harmless: ES modules evaluate once, and startSdkFromEnv() returns the
 * first handle when this file is reached through a second path.
 */
import { startSdkFromEnv } from './sdk/preload.js';

startSdkFromEnv();
