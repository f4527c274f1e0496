import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { context, SpanKind, trace, type Attributes, type Context } from '@opentelemetry/api';
import { recordError } from '../utils/record-error.js';
import {
  markFailed,
  messageOf,
  runAttempts,
  settle,
  startSpan,
  validatePolicy,
  withBaggageEntries,
  type AttemptEvents,
  type OptionProblem,
} from './execution.js';
import {
  ATTR_TX_ATTEMPT,
  ATTR_TX_DECISION,
  ATTR_TX_ID,
  ATTR_TX_NAME,
  ATTR_TX_OUTCOME,
  ATTR_TX_PARTICIPANT_COUNT,
  ATTR_TX_PARTICIPANT_NAME,
  ATTR_TX_PARTICIPANT_OUTCOME,
  ATTR_TX_RETRIES,
  ATTR_TX_VOTE,
  ATTR_TX_VOTE_REASON,
  ATTR_TX_VOTES_NO,
  ATTR_TX_VOTES_YES,
  ATTR_TX_WILL_RETRY,
  EVENT_TX_ATTEMPT_FAILED,
  EVENT_TX_DECISION,
  TWO_PC_COMMIT_SPAN,
  TWO_PC_PREPARE_SPAN,
  TWO_PC_ROLLBACK_SPAN,
  TWO_PC_SPAN,
} from './saga.constants.js';
import {
  TwoPhaseCommitAbortedError,
  TwoPhaseCommitDefinitionError,
  TwoPhaseCommitFailedError,
  TwoPhaseCommitInvalidVoteError,
  TwoPhaseCommitTimeoutError,
} from './saga.errors.js';
import type {
  ExecutionPolicy,
  TwoPhaseCommitOptions,
  TwoPhaseCommitOutcome,
  TwoPhaseCommitParticipant,
  TwoPhaseCommitParticipantReport,
  TwoPhaseCommitResult,
  TwoPhaseCommitVoteReport,
} from './saga.interfaces.js';
import {
  twoPhaseDuplicateParticipant,
  twoPhaseNameInvalid,
  twoPhaseNoParticipants,
  twoPhaseOptionInvalid,
  twoPhaseParticipantInvalid,
} from './saga.messages.js';

/** Default time allowed for one prepare, in ms. */
export const DEFAULT_PREPARE_TIMEOUT_MS = 30_000;
/** Default policy of each commit and rollback: retried, because phase 2 must eventually happen. */
export const DEFAULT_PHASE_TWO_POLICY: Readonly<ExecutionPolicy> = Object.freeze({
  timeoutMs: 30_000,
  retry: Object.freeze({ attempts: 3, delayMs: 100, backoff: 'exponential' as const }),
});

const PHASE_TWO_EVENTS: AttemptEvents = {
  failed: EVENT_TX_ATTEMPT_FAILED,
  attemptKey: ATTR_TX_ATTEMPT,
  willRetryKey: ATTR_TX_WILL_RETRY,
};

interface Tx<P> {
  txId: string;
  txName: string;
  payload: P;
  /** `tx.name` and `tx.id`, on every span of the transaction. */
  common: Attributes;
}

/**
 * Runs two-phase commits. Phase 1 asks every participant to prepare, all at once, under
 * `2pc.prepare`; a no vote, an error or a timeout aborts. The decision is an event on the `2pc`
 * span; phase 2 then commits (all yes) or rolls back, again all at once, under `2pc.commit` or
 * `2pc.rollback`, with retries. `tx.id` and `tx.name` are W3C baggage for the whole transaction.
 *
 * Participants are local objects implementing {@link TwoPhaseCommitParticipant}, or remote
 * services through `remoteParticipant(client, patterns)`.
 *
 * @publicApi
 */
@Injectable()
export class TwoPhaseCommitCoordinator {
  /**
   * Runs transaction `name`. Resolves when every participant committed; rejects with a
   * {@link TwoPhaseCommitAbortedError} after an abort (and the rollbacks), or a
   * {@link TwoPhaseCommitFailedError} when a commit failed after all its attempts.
   */
  async run<P = unknown>(name: string, options: TwoPhaseCommitOptions<P>): Promise<TwoPhaseCommitResult> {
    validate(name, options);
    const txId = options.txId ?? randomUUID();
    const tx: Tx<P> = {
      txId,
      txName: name,
      payload: options.payload as P,
      common: { [ATTR_TX_NAME]: name, [ATTR_TX_ID]: txId },
    };
    const participants = options.participants;
    const base = withBaggageEntries(context.active(), { [ATTR_TX_ID]: txId, [ATTR_TX_NAME]: name });
    const root = startSpan(
      `${TWO_PC_SPAN} ${name}`,
      {
        kind: SpanKind.INTERNAL,
        attributes: { ...options.attributes, ...tx.common, [ATTR_TX_PARTICIPANT_COUNT]: participants.length },
      },
      base,
    );
    const rootCtx = trace.setSpan(base, root);
    let rootEnded = false;
    const endRoot = (outcome: TwoPhaseCommitOutcome): void => {
      rootEnded = true;
      root.setAttribute(ATTR_TX_OUTCOME, outcome);
      root.end();
    };

    try {
      const votes = await this.prepareAll(tx, participants, rootCtx, options.prepareTimeoutMs ?? DEFAULT_PREPARE_TIMEOUT_MS);
      const yes = votes.filter((vote) => vote.vote === 'yes').length;
      const decision = yes === votes.length ? 'commit' : 'rollback';
      root.setAttribute(ATTR_TX_DECISION, decision);
      root.addEvent(EVENT_TX_DECISION, {
        [ATTR_TX_DECISION]: decision,
        [ATTR_TX_VOTES_YES]: yes,
        [ATTR_TX_VOTES_NO]: votes.length - yes,
      });

      if (decision === 'commit') {
        const commits = await this.finishAll(tx, 'commit', participants, rootCtx, {
          ...DEFAULT_PHASE_TWO_POLICY,
          ...options.commit,
        });
        if (commits.some((report) => report.outcome === 'failed')) {
          const error = new TwoPhaseCommitFailedError(txId, name, votes, commits);
          recordError(root, error);
          endRoot('commit_failed');
          throw error;
        }
        endRoot('committed');
        return { txId, txName: name, outcome: 'committed', votes, commits };
      }

      const scope = options.rollbackScope ?? 'all';
      const targets = participants.filter((_participant, index) => scope === 'all' || votes[index]!.vote !== 'no');
      const reports = await this.finishAll(tx, 'rollback', targets, rootCtx, {
        ...DEFAULT_PHASE_TWO_POLICY,
        ...options.rollback,
      });
      // Reports in participant order, those left out by the scope as skipped.
      const rollbacks = participants.map(
        (participant) =>
          reports.find((report) => report.participant === participant.name) ?? {
            participant: participant.name,
            outcome: 'skipped' as const,
            attempts: 0,
          },
      );
      const outcome = rollbacks.some((report) => report.outcome === 'failed') ? 'rollback_failed' : 'rolled_back';
      const error = new TwoPhaseCommitAbortedError(txId, name, outcome, votes, rollbacks);
      recordError(root, error);
      endRoot(outcome);
      throw error;
    } finally {
      if (!rootEnded) {
        root.end();
      }
    }
  }

  private async prepareAll<P>(
    tx: Tx<P>,
    participants: readonly TwoPhaseCommitParticipant<P>[],
    rootCtx: Context,
    timeoutMs: number,
  ): Promise<TwoPhaseCommitVoteReport[]> {
    const phase = startSpan(TWO_PC_PREPARE_SPAN, { kind: SpanKind.INTERNAL, attributes: tx.common }, rootCtx);
    const phaseCtx = trace.setSpan(rootCtx, phase);
    // Every participant's span starts before any of them runs: they are siblings in parallel.
    const votes = await Promise.all(participants.map((participant) => this.prepareOne(tx, participant, phaseCtx, timeoutMs)));
    const failures = votes.filter((vote) => vote.vote === 'error' || vote.vote === 'timeout');
    if (failures.length > 0) {
      markFailed(phase, failures[0]!.error, `${failures.length} of ${votes.length} participant(s) failed to prepare`);
    }
    phase.end();
    return votes;
  }

  private async prepareOne<P>(
    tx: Tx<P>,
    participant: TwoPhaseCommitParticipant<P>,
    phaseCtx: Context,
    timeoutMs: number,
  ): Promise<TwoPhaseCommitVoteReport> {
    const name = participant.name;
    const span = startSpan(
      `${TWO_PC_PREPARE_SPAN} ${name}`,
      { kind: SpanKind.INTERNAL, attributes: { ...tx.common, [ATTR_TX_PARTICIPANT_NAME]: name } },
      phaseCtx,
    );
    let timeout: Error | undefined;
    let report: TwoPhaseCommitVoteReport;
    try {
      const answer = await settle(
        trace.setSpan(phaseCtx, span),
        (signal) =>
          participant.prepare(tx.payload, { txId: tx.txId, txName: tx.txName, participant: name, attempt: 1, signal }),
        timeoutMs,
        () => (timeout = new TwoPhaseCommitTimeoutError(name, 'prepare', timeoutMs, 1)),
      );
      const vote = readVote(name, answer);
      report = { participant: name, ...vote };
    } catch (error) {
      const timedOut = timeout !== undefined && error === timeout;
      report = { participant: name, vote: timedOut ? 'timeout' : 'error', reason: messageOf(error), error };
      recordError(span, error);
    }
    span.setAttribute(ATTR_TX_VOTE, report.vote);
    if (report.vote === 'no' && report.reason !== undefined) {
      span.setAttribute(ATTR_TX_VOTE_REASON, report.reason);
    }
    span.end();
    return report;
  }

  private async finishAll<P>(
    tx: Tx<P>,
    action: 'commit' | 'rollback',
    participants: readonly TwoPhaseCommitParticipant<P>[],
    rootCtx: Context,
    policy: ExecutionPolicy,
  ): Promise<TwoPhaseCommitParticipantReport[]> {
    const spanName = action === 'commit' ? TWO_PC_COMMIT_SPAN : TWO_PC_ROLLBACK_SPAN;
    const done = action === 'commit' ? 'committed' : 'rolled_back';
    const phase = startSpan(spanName, { kind: SpanKind.INTERNAL, attributes: tx.common }, rootCtx);
    const phaseCtx = trace.setSpan(rootCtx, phase);
    const reports = await Promise.all(
      participants.map(async (participant): Promise<TwoPhaseCommitParticipantReport> => {
        const name = participant.name;
        const span = startSpan(
          `${spanName} ${name}`,
          { kind: SpanKind.INTERNAL, attributes: { ...tx.common, [ATTR_TX_PARTICIPANT_NAME]: name } },
          phaseCtx,
        );
        const outcome = await runAttempts({
          span,
          ctx: trace.setSpan(phaseCtx, span),
          policy,
          events: PHASE_TWO_EVENTS,
          call: (attempt, signal) =>
            participant[action](tx.payload, { txId: tx.txId, txName: tx.txName, participant: name, attempt, signal }),
          timeoutError: (attempt, timeoutMs) => new TwoPhaseCommitTimeoutError(name, action, timeoutMs, attempt),
        });
        span.setAttribute(ATTR_TX_RETRIES, outcome.attempts - 1);
        span.setAttribute(ATTR_TX_PARTICIPANT_OUTCOME, outcome.ok ? done : 'failed');
        if (!outcome.ok) {
          recordError(span, outcome.error);
        }
        span.end();
        return outcome.ok
          ? { participant: name, outcome: done, attempts: outcome.attempts }
          : { participant: name, outcome: 'failed', attempts: outcome.attempts, error: outcome.error };
      }),
    );
    const failed = reports.filter((report) => report.outcome === 'failed');
    if (failed.length > 0) {
      markFailed(phase, failed[0]!.error, `${action} failed for ${failed.length} of ${reports.length} participant(s)`);
    }
    phase.end();
    return reports;
  }
}

/** A participant's answer to prepare, as a vote; anything else is refused. */
export function readVote(participant: string, answer: unknown): { vote: 'yes' | 'no'; reason?: string } {
  if (answer === undefined || answer === null || answer === true || answer === 'yes') {
    return { vote: 'yes' };
  }
  if (answer === false || answer === 'no') {
    return { vote: 'no' };
  }
  if (typeof answer === 'object') {
    const { vote, reason } = answer as { vote?: unknown; reason?: unknown };
    if (vote === 'yes' || vote === 'no') {
      return typeof reason === 'string' && reason !== '' ? { vote, reason } : { vote };
    }
  }
  throw new TwoPhaseCommitInvalidVoteError(participant, answer);
}

function validate(name: unknown, options: TwoPhaseCommitOptions<unknown>): asserts name is string {
  if (typeof name !== 'string' || name.trim() === '') {
    throw new TwoPhaseCommitDefinitionError(twoPhaseNameInvalid(name));
  }
  const problem: OptionProblem = (option, expected, got) => {
    throw new TwoPhaseCommitDefinitionError(twoPhaseOptionInvalid(name, option, expected, got));
  };
  if (options === null || typeof options !== 'object') {
    problem('options', 'an object { participants, payload?, ... }', options);
  }
  if (!Array.isArray(options.participants) || options.participants.length === 0) {
    throw new TwoPhaseCommitDefinitionError(twoPhaseNoParticipants(name));
  }
  const names = new Set<string>();
  options.participants.forEach((participant: unknown, index) => {
    const candidate = participant as Partial<TwoPhaseCommitParticipant> | null;
    if (
      candidate === null ||
      typeof candidate !== 'object' ||
      typeof candidate.name !== 'string' ||
      candidate.name === '' ||
      typeof candidate.prepare !== 'function' ||
      typeof candidate.commit !== 'function' ||
      typeof candidate.rollback !== 'function'
    ) {
      throw new TwoPhaseCommitDefinitionError(twoPhaseParticipantInvalid(name, index, participant));
    }
    if (names.has(candidate.name)) {
      throw new TwoPhaseCommitDefinitionError(twoPhaseDuplicateParticipant(name, candidate.name));
    }
    names.add(candidate.name);
  });
  if (options.txId !== undefined && (typeof options.txId !== 'string' || options.txId === '')) {
    problem('txId', 'a non-empty string', options.txId);
  }
  const prepareTimeout = options.prepareTimeoutMs;
  if (prepareTimeout !== undefined && !(typeof prepareTimeout === 'number' && Number.isFinite(prepareTimeout) && prepareTimeout > 0)) {
    problem('prepareTimeoutMs', 'a positive number of milliseconds', prepareTimeout);
  }
  validatePolicy(options.commit, 'commit', problem);
  validatePolicy(options.rollback, 'rollback', problem);
  if (options.rollbackScope !== undefined && options.rollbackScope !== 'all' && options.rollbackScope !== 'prepared') {
    problem('rollbackScope', "'all' or 'prepared'", options.rollbackScope);
  }
}
