export { SagaStep } from './saga-step.decorator.js';
export { OtelSagaModule } from './saga.module.js';
export {
  OTEL_SAGA_MODULE_OPTIONS,
  OTEL_SAGA_MODULE_OPTIONS_TYPE,
  OTEL_SAGA_MODULE_ASYNC_OPTIONS_TYPE,
  type OtelSagaModuleOptions,
} from './saga.module-definition.js';
export { SagaOrchestrator } from './saga.orchestrator.js';
export { SagaRegistry } from './saga.registry.js';
export { SagaDefinition, SagaBuilder, defineSaga, type SagaStepConfig } from './saga-definition.js';
export {
  TwoPhaseCommitCoordinator,
  DEFAULT_PREPARE_TIMEOUT_MS,
  DEFAULT_PHASE_TWO_POLICY,
} from './two-phase-commit.coordinator.js';
export {
  remoteParticipant,
  remoteStep,
  type MessageClient,
  type MessagePatternLike,
  type RemoteParticipantOptions,
  type RemoteStepOptions,
  type RemoteTwoPhaseCommitMessage,
} from './remote.js';
export {
  SagaDefinitionError,
  SagaFailedError,
  SagaStepTimeoutError,
  TwoPhaseCommitAbortedError,
  TwoPhaseCommitDefinitionError,
  TwoPhaseCommitFailedError,
  TwoPhaseCommitInvalidVoteError,
  TwoPhaseCommitTimeoutError,
} from './saga.errors.js';
export {
  ATTR_SAGA_ID,
  ATTR_SAGA_NAME,
  ATTR_TX_ID,
  ATTR_TX_NAME,
  SAGA_BAGGAGE_KEYS,
  TWO_PHASE_COMMIT_BAGGAGE_KEYS,
} from './saga.constants.js';
export type {
  ExecutionPolicy,
  PrepareVote,
  RetryPolicy,
  SagaCompensationContext,
  SagaCompensationOutcome,
  SagaCompensationReport,
  SagaContext,
  SagaDefinitionOptions,
  SagaOutcome,
  SagaResult,
  SagaRunOptions,
  SagaStepContext,
  SagaStepDefinition,
  SagaStepOptions,
  SagaStepOutcome,
  StepReturn,
  StepValue,
  TwoPhaseCommitContext,
  TwoPhaseCommitOptions,
  TwoPhaseCommitOutcome,
  TwoPhaseCommitParticipant,
  TwoPhaseCommitParticipantReport,
  TwoPhaseCommitResult,
  TwoPhaseCommitVote,
  TwoPhaseCommitVoteReport,
} from './saga.interfaces.js';
