import { OtelConfigError } from '../otel.messages.js';
import type {
  SagaCompensationReport,
  TwoPhaseCommitParticipantReport,
  TwoPhaseCommitVoteReport,
} from './saga.interfaces.js';
import {
  sagaFailed,
  sagaStepTimedOut,
  twoPhaseAborted,
  twoPhaseCommitFailed,
  twoPhaseInvalidVote,
  twoPhaseTimedOut,
} from './saga.messages.js';

/** A wrong saga definition (bad `@SagaStep` options, duplicate order, missing compensation ...). */
export class SagaDefinitionError extends OtelConfigError {
  constructor(message: string) {
    super(message);
    this.name = 'SagaDefinitionError';
  }
}

/** Wrong arguments to `TwoPhaseCommitCoordinator.run()` (no participants, duplicate names ...). */
export class TwoPhaseCommitDefinitionError extends OtelConfigError {
  constructor(message: string) {
    super(message);
    this.name = 'TwoPhaseCommitDefinitionError';
  }
}

/** An attempt of a step or a compensation took longer than its `timeoutMs`. */
export class SagaStepTimeoutError extends Error {
  constructor(
    readonly sagaName: string,
    readonly step: string,
    readonly phase: 'step' | 'compensation',
    readonly timeoutMs: number,
    readonly attempt: number,
  ) {
    super(sagaStepTimedOut(sagaName, step, phase, timeoutMs, attempt));
    this.name = 'SagaStepTimeoutError';
  }
}

/**
 * A saga run that did not complete. `failedStep` failed with `cause`; the completed steps were then
 * compensated in reverse order, each as `compensations` reports (in the order they ran).
 * `outcome` is `compensated` when every compensation succeeded (or had nothing to do), else
 * `compensation_failed`: the system is left partly changed and needs attention.
 */
export class SagaFailedError<R = Record<string, unknown>> extends Error {
  /** Why `failedStep` failed: the step's own error (or a {@link SagaStepTimeoutError}), unchanged. */
  declare readonly cause: unknown;

  constructor(
    readonly sagaId: string,
    readonly sagaName: string,
    readonly failedStep: string,
    cause: unknown,
    readonly outcome: 'compensated' | 'compensation_failed',
    readonly compensations: readonly SagaCompensationReport[],
    /** Results of the steps that completed before the failure. */
    readonly results: Readonly<Partial<R>>,
  ) {
    super(
      sagaFailed(
        sagaName,
        failedStep,
        cause,
        outcome,
        compensations.filter((report) => report.outcome === 'failed').map((report) => report.step),
      ),
      { cause },
    );
    this.name = 'SagaFailedError';
  }
}

/** An attempt of a participant's prepare, commit or rollback took longer than allowed. */
export class TwoPhaseCommitTimeoutError extends Error {
  constructor(
    readonly participant: string,
    readonly phase: 'prepare' | 'commit' | 'rollback',
    readonly timeoutMs: number,
    readonly attempt: number,
  ) {
    super(twoPhaseTimedOut(participant, phase, timeoutMs, attempt));
    this.name = 'TwoPhaseCommitTimeoutError';
  }
}

/** A participant answered prepare with something that is not a vote. Counts as an `error` vote. */
export class TwoPhaseCommitInvalidVoteError extends Error {
  constructor(
    readonly participant: string,
    readonly value: unknown,
  ) {
    super(twoPhaseInvalidVote(participant, value));
    this.name = 'TwoPhaseCommitInvalidVoteError';
  }
}

/**
 * The transaction was aborted: a participant voted no, failed or timed out in prepare. `votes`
 * says who voted what; `rollbacks` how each rollback ended. `outcome` is `rolled_back`, or
 * `rollback_failed` when a rollback failed after all its attempts.
 */
export class TwoPhaseCommitAbortedError extends Error {
  constructor(
    readonly txId: string,
    readonly txName: string,
    readonly outcome: 'rolled_back' | 'rollback_failed',
    readonly votes: readonly TwoPhaseCommitVoteReport[],
    readonly rollbacks: readonly TwoPhaseCommitParticipantReport[],
  ) {
    super(
      twoPhaseAborted(
        txName,
        votes
          .filter((vote) => vote.vote !== 'yes')
          .map((vote) => `"${vote.participant}" ${vote.vote === 'no' ? 'voted no' : vote.vote === 'timeout' ? 'timed out' : 'failed'}${vote.reason ? `: ${vote.reason}` : ''}`),
        outcome,
      ),
    );
    this.name = 'TwoPhaseCommitAbortedError';
  }
}

/**
 * Every participant voted yes, but a commit failed after all its attempts. The transaction is
 * decided (commit): the failed participants are still prepared and must be committed by recovery.
 */
export class TwoPhaseCommitFailedError extends Error {
  readonly outcome = 'commit_failed' as const;

  constructor(
    readonly txId: string,
    readonly txName: string,
    readonly votes: readonly TwoPhaseCommitVoteReport[],
    readonly commits: readonly TwoPhaseCommitParticipantReport[],
  ) {
    super(
      twoPhaseCommitFailed(
        txName,
        commits.filter((report) => report.outcome === 'failed').map((report) => report.participant),
      ),
    );
    this.name = 'TwoPhaseCommitFailedError';
  }
}
