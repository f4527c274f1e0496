export { OtelModule } from './otel.module.js';
export { OTEL_MODULE_OPTIONS } from './otel.module-definition.js';
export type {
  BatchOptions,
  EnhancerSpansOptions,
  ExporterOption,
  HttpClientTracingOptions,
  HttpServerTracingOptions,
  HttpBodyCaptureOptions,
  RedactionOptions,
  OtelModuleOptions,
  OtlpHttpExporterOptions,
  PropagatorName,
  SamplerName,
  SamplerOption,
} from './interfaces/otel-module-options.interface.js';
export { Traced, type TracedOptions } from './decorators/traced.decorator.js';
export {
  otelInstrument,
  withEnhancerSpans,
  type NestInstrumentOption,
  type OtelInstrumentOptions,
} from './enhancers/otel-instrument.js';
export { CurrentSpan, Baggage } from './decorators/current-span.decorator.js';
export { TraceService, BAGGAGE_TENANT_ID, BAGGAGE_USER_ID, type WithSpanOptions } from './services/trace.service.js';
export { OtelSdkService } from './sdk/otel-sdk.service.js';
export { BaggageAttributesSpanProcessor } from './sdk/baggage-attributes.processor.js';
export {
  RuleBasedSampler,
  DEFAULT_SAMPLING_RULES,
  type RuleBasedSamplerOptions,
  type SamplingRule,
  type SamplingDecisionOption,
  type SamplingMatch,
  type SamplingProtocol,
} from './sdk/rule-based.sampler.js';
export { RedactionSpanProcessor } from './redaction/redaction.processor.js';
export { BUILTIN_REDACTION_PATTERNS, DEFAULT_REDACTED_KEYS, type BuiltinRedactionPattern } from './redaction/redaction-rules.js';
export type {
  BaggageChannel,
  BaggagePolicyOptions,
  InboundBaggageRule,
} from './propagation/baggage-policy.js';
export { OtelConfigError } from './otel.messages.js';
export { instrumentAxios, type AxiosLike } from './http/http-client.instrumentation.js';
export { withContext, bindObservableToContext } from './utils/run-in-context.js';
export {
  OTEL_CONSUME_EXTRA,
  type ConsumeInfo,
  type ConsumePolicy,
  type MessagingClientTracingOptions,
  type MessagingServerTracingOptions,
  type PublishInfo,
  type ReplyInfo,
} from './transports/shared/messaging-tracing.js';
export type { SpanHook } from './utils/user-hook.js';
export { SEND_CANCELLED } from './transports/shared/producer-tracer.js';
export type { MessageCaptureOptions, MessageBodyCaptureOptions } from './transports/shared/message-capture.js';
export * from './transports/nats/index.js';
export * from './transports/rmq/index.js';
export * from './transports/kafka/index.js';
export * from './transports/grpc/index.js';
export * from './transports/tcp/index.js';
export * from './transports/redis/index.js';
export * from './transports/mqtt/index.js';
export * from './logging/index.js';
export {
  getRequestId,
  isValidRequestId,
  RequestIdPropagator,
  REQUEST_ID_DEFAULTS,
  type RequestIdOptions,
} from './propagation/request-id.propagator.js';
export { RequestIdSpanProcessor } from './sdk/request-id.processor.js';
