/**
 * The SDK configuration, in parts: `sdk-config.ts` (the resolved shape and the defaults),
 * `validate-options.ts` (the user's options, with suggestions for typos), `env-reader.ts` (the
 * `OTEL_*` variables), `resolve-config.ts` (explicit > `OTEL_*` > default), `summary.ts` (the one
 * startup summary) and `same-config.ts` (whether two configurations ask for the same SDK).
 */
export { OtelConfigError } from '../../otel.messages.js';
export { resolveSdkConfig } from './resolve-config.js';
export {
  SDK_DEFAULTS,
  type KnownPropagatorName,
  type ResolvedExporter,
  type ResolvedPropagators,
  type ResolvedSampler,
  type ResolvedSdkConfig,
  type SdkOptionName,
} from './sdk-config.js';
export { describeExporter, describePropagators, describeSampler, describeStartup, type SummarizedSdk } from './summary.js';
export { differingSdkOptions, sameSampler, sameSdkOption } from './same-config.js';
