export { OtelModule } from './otel.module.js';
export {
  OTEL_MODULE_OPTIONS,
  OTEL_MODULE_OPTIONS_TYPE,
  OTEL_MODULE_ASYNC_OPTIONS_TYPE,
} from './otel.module-definition.js';
export type {
  BatchOptions,
  ExporterOption,
  HttpClientTracingOptions,
  HttpServerTracingOptions,
  OtelModuleOptions,
  OtlpHttpExporterOptions,
  PropagatorName,
  SamplerName,
  SamplerOption,
} from './interfaces/otel-module-options.interface.js';
export { Traced, OTEL_TRACED_CONSUME_METADATA, type TracedOptions, type TracedConsume } from './decorators/traced.decorator.js';
export { CurrentSpan, Baggage } from './decorators/current-span.decorator.js';
export { TraceService, BAGGAGE_TENANT_ID, BAGGAGE_USER_ID, type WithSpanOptions } from './services/trace.service.js';
export { OtelSdkService } from './sdk/otel-sdk.service.js';
export { BaggageAttributesSpanProcessor } from './sdk/baggage-attributes.processor.js';
export { OtelConfigError } from './otel.messages.js';
export { instrumentAxios, type AxiosLike } from './http/http-client.instrumentation.js';
export { withContext, bindObservableToContext } from './utils/run-in-context.js';
export {
  OTEL_CONSUME_EXTRA,
  type ConsumePolicy,
  type MessagingServerTracingOptions,
} from './transports/shared/messaging-tracing.js';
export * from './transports/nats/index.js';
export * from './transports/rmq/index.js';
export * from './transports/kafka/index.js';
export { SagaStep } from './decorators/saga-step.decorator.js';
export {
  OtelSagaModule,
  OTEL_SAGA_MODULE_OPTIONS,
  OTEL_SAGA_MODULE_OPTIONS_TYPE,
  OTEL_SAGA_MODULE_ASYNC_OPTIONS_TYPE,
  type OtelSagaModuleOptions,
  SagaOrchestrator,
  SagaRegistry,
  SagaDefinition,
  SagaBuilder,
  defineSaga,
  type SagaStepConfig,
  TwoPhaseCommitCoordinator,
  DEFAULT_PREPARE_TIMEOUT_MS,
  DEFAULT_PHASE_TWO_POLICY,
  remoteParticipant,
  remoteStep,
  type MessageClient,
  type MessagePatternLike,
  type RemoteParticipantOptions,
  type RemoteStepOptions,
  type RemoteTwoPhaseCommitMessage,
  SagaDefinitionError,
  SagaFailedError,
  SagaStepTimeoutError,
  TwoPhaseCommitAbortedError,
  TwoPhaseCommitDefinitionError,
  TwoPhaseCommitFailedError,
  TwoPhaseCommitInvalidVoteError,
  TwoPhaseCommitTimeoutError,
  ATTR_SAGA_ID,
  ATTR_SAGA_NAME,
  ATTR_TX_ID,
  ATTR_TX_NAME,
  SAGA_BAGGAGE_KEYS,
  TWO_PHASE_COMMIT_BAGGAGE_KEYS,
  type ExecutionPolicy,
  type PrepareVote,
  type RetryPolicy,
  type SagaCompensationContext,
  type SagaCompensationOutcome,
  type SagaCompensationReport,
  type SagaContext,
  type SagaDefinitionOptions,
  type SagaOutcome,
  type SagaResult,
  type SagaRunOptions,
  type SagaStepContext,
  type SagaStepDefinition,
  type SagaStepOptions,
  type SagaStepOutcome,
  type StepReturn,
  type StepValue,
  type TwoPhaseCommitContext,
  type TwoPhaseCommitOptions,
  type TwoPhaseCommitOutcome,
  type TwoPhaseCommitParticipant,
  type TwoPhaseCommitParticipantReport,
  type TwoPhaseCommitResult,
  type TwoPhaseCommitVote,
  type TwoPhaseCommitVoteReport,
} from './saga/index.js';
