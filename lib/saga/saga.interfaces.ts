import type { Attributes } from '@opentelemetry/api';
import type { Observable } from 'rxjs';

/**
 * What a step, a compensation or a participant operation may return: a value, a Promise, or an
 * Observable. An Observable is subscribed inside the step's span and the work is done when it
 * completes; its LAST value is the result (`undefined` if it completes empty). A `ClientProxy.send()`
 * reply emits once and completes, so its one value is the result.
 */
export type StepReturn<T> = T | PromiseLike<T> | Observable<T>;

/** The value a step produces from what its function returns (unwraps Promise and Observable). */
export type StepValue<R> = R extends Observable<infer V> ? V : Awaited<R>;

/** How often, and how fast, a failed step, compensation, commit or rollback is tried again. */
export interface RetryPolicy {
  /** Total number of attempts, the first one included (`3` = one try and two retries). Default 1. */
  attempts: number;
  /** Wait before the first retry, in ms. Default 0. */
  delayMs?: number;
  /**
   * How the wait grows: `'fixed'` (every retry waits `delayMs`), `'exponential'` (`delayMs * 2^(n-1)`
   * before retry n), or a function of the retry number (1-based) and the error, returning ms.
   * Default `'fixed'`.
   */
  backoff?: 'fixed' | 'exponential' | ((retry: number, error: unknown) => number);
  /** Upper bound of a computed wait, in ms. Default: none. */
  maxDelayMs?: number;
  /** Whether an error is worth another attempt. Default: every error, timeouts included. */
  retryIf?: (error: unknown) => boolean;
}

/** Timeout and retries of one operation. */
export interface ExecutionPolicy {
  /**
   * Time allowed for each attempt, in ms. On expiry the attempt fails with a timeout error, the
   * `signal` given to the function is aborted and an Observable result is unsubscribed (a Promise
   * cannot be cancelled: its late outcome is ignored). Default: no timeout.
   */
  timeoutMs?: number;
  /** Retries after a failed attempt. Default: none. */
  retry?: RetryPolicy;
}

/** How a saga run ended. */
export type SagaOutcome = 'completed' | 'compensated' | 'compensation_failed';
/** How a forward step ended. */
export type SagaStepOutcome = 'completed' | 'failed' | 'timed_out';
/** How the compensation of one step ended (`skipped`: the step has none, or compensation stopped). */
export type SagaCompensationOutcome = 'compensated' | 'failed' | 'skipped';

/** The shared state of one saga run. */
export interface SagaContext<I = unknown, R = Record<string, unknown>> {
  /** Id of this run (also the `saga.id` attribute and baggage entry). */
  readonly sagaId: string;
  /** The saga's name. */
  readonly sagaName: string;
  /** The input given to `SagaOrchestrator.run()`. */
  readonly input: I;
  /** Results of the steps completed so far, by step name. */
  readonly results: R;
}

/** What a forward step receives as its second argument. */
export interface SagaStepContext<I = unknown, R = Record<string, unknown>> extends SagaContext<I, R> {
  /** This step's name. */
  readonly step: string;
  /** This step's 0-based position. */
  readonly index: number;
  /** The attempt (1-based) this call is. */
  readonly attempt: number;
  /** Aborted when this attempt times out: hand it to `fetch`, a driver, or check it in loops. */
  readonly signal: AbortSignal;
}

/** What a compensation receives as its second argument. */
export interface SagaCompensationContext<I = unknown, T = unknown>
  extends SagaStepContext<I, Readonly<Record<string, unknown>>> {
  /** The result of the step being undone; `undefined` when it is the failed step itself. */
  readonly result: T | undefined;
  /** The step whose failure started the compensation. */
  readonly failedStep: string;
  /** Why that step failed. */
  readonly error: unknown;
}

/** A step of a saga, as the orchestrator runs it. */
export interface SagaStepDefinition<I = any, T = any> {
  /** Unique within its saga; the `saga.step.name` attribute and the key of its result. */
  readonly name: string;
  /** The forward action. */
  run(input: I, ctx: SagaStepContext<I, any>): StepReturn<T>;
  /** Undoes `run`. Default: none (nothing to undo; reported as `skipped`). */
  compensate?(input: I, ctx: SagaCompensationContext<I, T>): StepReturn<unknown>;
  /** Time allowed for each attempt of `run`, in ms. Default: none. */
  readonly timeoutMs?: number;
  /** Retries of `run`. Default: none. */
  readonly retry?: RetryPolicy;
  /** Timeout and retries of `compensate`. Default: no timeout, no retry. */
  readonly compensation?: ExecutionPolicy;
  /**
   * Also compensate this step when it is the one that fails. Use it for remote steps whose timeout
   * may hide a success (the charge went through, the reply was late). Default `false`.
   */
  readonly compensateOnFailure?: boolean;
}

/** Options of a saga as a whole. */
export interface SagaDefinitionOptions {
  /**
   * After a compensation fails (all its attempts): `'continue'` runs the remaining ones (each is
   * independent, and leaving them undone is worse), `'stop'` skips them. Default `'continue'`.
   */
  onCompensationFailure?: 'continue' | 'stop';
}

/** Options of one `SagaOrchestrator.run()`. */
export interface SagaRunOptions extends SagaDefinitionOptions {
  /** Id of this run, e.g. the order id, so the trace can be found by it. Default: a random UUID. */
  sagaId?: string;
  /** Extra attributes of the `saga` span. Default: none. */
  attributes?: Attributes;
}

/** How the compensation of one completed step ended. */
export interface SagaCompensationReport {
  /** The step that was (or was not) undone. */
  step: string;
  outcome: SagaCompensationOutcome;
  /** Attempts made (0 when skipped). */
  attempts: number;
  /** The last error, when `outcome` is `failed`. */
  error?: unknown;
  /** Why it was skipped, when `outcome` is `skipped`. */
  reason?: string;
}

/** What `SagaOrchestrator.run()` resolves with: every step completed. */
export interface SagaResult<I = unknown, R = Record<string, unknown>> {
  sagaId: string;
  sagaName: string;
  outcome: 'completed';
  /** The input and every step's result. */
  context: SagaContext<I, R>;
}

/** Options of `@SagaStep()`. */
export interface SagaStepOptions extends ExecutionPolicy {
  /** Name of the saga the method is a step of. */
  saga: string;
  /** Step name. Default: the method name. */
  step?: string;
  /** Position in the saga: steps run in ascending order; two steps of one saga may not share one. */
  order: number;
  /**
   * The compensation: the name of a method of the same provider, or a function (called with the
   * provider as `this`). Both get `(input, ctx: SagaCompensationContext)`. Default: none.
   */
  compensate?: string | ((input: any, ctx: SagaCompensationContext<any, any>) => unknown);
  /** Timeout and retries of the compensation. Default: no timeout, no retry. */
  compensation?: ExecutionPolicy;
  /** See {@link SagaStepDefinition.compensateOnFailure}. Default `false`. */
  compensateOnFailure?: boolean;
}

// ---------------------------------------------------------------------------------------------
// Two-phase commit
// ---------------------------------------------------------------------------------------------

/** A participant's vote as the coordinator records it. */
export type TwoPhaseCommitVote = 'yes' | 'no' | 'error' | 'timeout';

/**
 * What `prepare` may return. `undefined`, `true`, `'yes'` or `{ vote: 'yes' }` vote yes; `false`,
 * `'no'` or `{ vote: 'no', reason }` vote no; a throw, a rejection or a timeout counts as no. Any
 * other value is refused as an invalid vote (and counts as an error).
 */
export type PrepareVote = void | boolean | 'yes' | 'no' | { vote: 'yes' | 'no'; reason?: string };

/** How a transaction ended. */
export type TwoPhaseCommitOutcome = 'committed' | 'rolled_back' | 'rollback_failed' | 'commit_failed';

/** What each participant operation receives as its second argument. */
export interface TwoPhaseCommitContext {
  /** Id of the transaction (also the `tx.id` attribute and baggage entry). */
  readonly txId: string;
  /** The transaction's name. */
  readonly txName: string;
  /** This participant's name. */
  readonly participant: string;
  /** The attempt (1-based) this call is. */
  readonly attempt: number;
  /** Aborted when this attempt times out. */
  readonly signal: AbortSignal;
}

/** A resource manager taking part in a two-phase commit. */
export interface TwoPhaseCommitParticipant<P = unknown> {
  /** Unique within a transaction; the `tx.participant.name` attribute. */
  readonly name: string;
  /** Phase 1: make the change durable but invisible, and vote. */
  prepare(payload: P, ctx: TwoPhaseCommitContext): StepReturn<PrepareVote>;
  /** Phase 2 after all yes votes: make the prepared change visible. Must be idempotent. */
  commit(payload: P, ctx: TwoPhaseCommitContext): StepReturn<unknown>;
  /**
   * Phase 2 otherwise: discard the prepared change. Must be idempotent, and accept a rollback of a
   * transaction it never prepared (it voted no, or its prepare timed out before it got the request).
   */
  rollback(payload: P, ctx: TwoPhaseCommitContext): StepReturn<unknown>;
}

/** Options of `TwoPhaseCommitCoordinator.run()`. */
export interface TwoPhaseCommitOptions<P = unknown> {
  /** The participants; prepare runs on all of them at once. */
  participants: readonly TwoPhaseCommitParticipant<P>[];
  /** Given to every participant operation. Default `undefined`. */
  payload?: P;
  /** Id of the transaction. Default: a random UUID. */
  txId?: string;
  /** Time allowed for each participant's prepare, in ms; a late vote counts as no. Default 30000. */
  prepareTimeoutMs?: number;
  /** Timeout and retries of each commit. Default: 30000 ms, 3 attempts, 100 ms exponential backoff. */
  commit?: ExecutionPolicy;
  /** Timeout and retries of each rollback. Default: 30000 ms, 3 attempts, 100 ms exponential backoff. */
  rollback?: ExecutionPolicy;
  /**
   * Who is rolled back after an abort: `'all'` participants (the safe default: one that voted no or
   * failed may hold locks), or only those that did not explicitly vote no (`'prepared'`: yes votes,
   * errors and timeouts, whose state is unknown). Default `'all'`.
   */
  rollbackScope?: 'all' | 'prepared';
  /** Extra attributes of the `2pc` span. Default: none. */
  attributes?: Attributes;
}

/** One participant's vote. */
export interface TwoPhaseCommitVoteReport {
  participant: string;
  vote: TwoPhaseCommitVote;
  /** The participant's reason for a no vote, or the error message. */
  reason?: string;
  /** The error, for `error` and `timeout` votes. */
  error?: unknown;
}

/** How one participant's commit or rollback ended. */
export interface TwoPhaseCommitParticipantReport {
  participant: string;
  outcome: 'committed' | 'rolled_back' | 'failed' | 'skipped';
  /** Attempts made (0 when skipped). */
  attempts: number;
  /** The last error, when `outcome` is `failed`. */
  error?: unknown;
}

/** What `TwoPhaseCommitCoordinator.run()` resolves with: every participant committed. */
export interface TwoPhaseCommitResult {
  txId: string;
  txName: string;
  outcome: 'committed';
  votes: TwoPhaseCommitVoteReport[];
  commits: TwoPhaseCommitParticipantReport[];
}
