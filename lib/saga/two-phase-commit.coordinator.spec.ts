import { context, propagation, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { startTestingSdk, type TestingSdk } from '../testing/testing-sdk.js';
import { of } from 'rxjs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { expectSpan } from '../testing/span-assertions.js';
import { childrenOf, getSpan } from '../testing/span-query.js';
import {
  TwoPhaseCommitAbortedError,
  TwoPhaseCommitDefinitionError,
  TwoPhaseCommitFailedError,
  TwoPhaseCommitInvalidVoteError,
  TwoPhaseCommitTimeoutError,
} from './saga.errors.js';
import type { PrepareVote, StepReturn, TwoPhaseCommitContext, TwoPhaseCommitParticipant } from './saga.interfaces.js';
import { readVote, TwoPhaseCommitCoordinator } from './two-phase-commit.coordinator.js';

const exporter = new InMemorySpanExporter();
let sdk: TestingSdk;
const coordinator = new TwoPhaseCommitCoordinator();

beforeAll(() => {
  sdk = startTestingSdk({ exporter });
});
beforeEach(() => exporter.reset());
afterAll(() => sdk.shutdown());

const spans = (): ReadableSpan[] => exporter.getFinishedSpans();
const exceptions = (span: ReadableSpan) => span.events.filter((event) => event.name === 'exception');

/** `name STATUS` lines under their parent; parallel siblings sorted by name. */
function shape(all: readonly ReadableSpan[]): string[] {
  const lines: string[] = [];
  const visit = (span: ReadableSpan, depth: number): void => {
    lines.push(`${'  '.repeat(depth)}${span.name} ${SpanStatusCode[span.status.code]}`);
    const children = childrenOf(all, span);
    // Phases (prepare, then commit/rollback) are sequential; participants within one are parallel.
    const phases = children.filter((child) => !child.name.includes(' '));
    const rest = children.filter((child) => child.name.includes(' ')).sort((a, b) => a.name.localeCompare(b.name));
    for (const child of [...phases, ...rest]) {
      visit(child, depth + 1);
    }
  };
  for (const top of all.filter((span) => !span.parentSpanContext)) {
    visit(top, 0);
  }
  return lines;
}

interface Account {
  name: string;
  log: string[];
  vote?: StepReturn<PrepareVote>;
  prepare?: (ctx: TwoPhaseCommitContext) => StepReturn<PrepareVote>;
  commit?: (ctx: TwoPhaseCommitContext) => StepReturn<unknown>;
  rollback?: (ctx: TwoPhaseCommitContext) => StepReturn<unknown>;
}

/** A participant that logs every call, with overridable behaviour per phase. */
function participant(account: Account): TwoPhaseCommitParticipant<{ amount: number }> {
  const { name, log } = account;
  return {
    name,
    prepare: (payload, ctx) => {
      log.push(`${name} prepare ${payload?.amount}`);
      return account.prepare ? account.prepare(ctx) : (account.vote ?? 'yes');
    },
    commit: (_payload, ctx) => {
      log.push(`${name} commit`);
      return account.commit ? account.commit(ctx) : undefined;
    },
    rollback: (_payload, ctx) => {
      log.push(`${name} rollback`);
      return account.rollback ? account.rollback(ctx) : undefined;
    },
  };
}

describe('TwoPhaseCommitCoordinator: all vote yes', () => {
  it('prepares every participant in parallel, then commits all', async () => {
    const log: string[] = [];
    const started: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    // Both prepares must be running at once for the gate to open: proof they are parallel.
    const waiting = (name: string) => async () => {
      started.push(name);
      if (started.length === 2) {
        release();
      }
      await gate;
      return { vote: 'yes' as const };
    };
    const result = await coordinator.run('transfer', {
      txId: 'tx-1',
      payload: { amount: 10 },
      participants: [
        participant({ name: 'debit', log, prepare: waiting('debit') }),
        participant({ name: 'credit', log, prepare: waiting('credit') }),
      ],
    });
    expect(result).toEqual({
      txId: 'tx-1',
      txName: 'transfer',
      outcome: 'committed',
      votes: [
        { participant: 'debit', vote: 'yes' },
        { participant: 'credit', vote: 'yes' },
      ],
      commits: [
        { participant: 'debit', outcome: 'committed', attempts: 1 },
        { participant: 'credit', outcome: 'committed', attempts: 1 },
      ],
    });
    expect(log.slice(0, 2).sort()).toEqual(['credit prepare 10', 'debit prepare 10']);
    expect(log.slice(2).sort()).toEqual(['credit commit', 'debit commit']);
  });

  it('traces it: 2pc {name} > 2pc.prepare > one span per participant, decision event, 2pc.commit > one per participant', async () => {
    const log: string[] = [];
    await coordinator.run('transfer', {
      txId: 'tx-1',
      payload: { amount: 10 },
      attributes: { 'transfer.currency': 'EUR' },
      participants: [participant({ name: 'debit', log }), participant({ name: 'credit', log, vote: of(true) })],
    });
    const all = spans();
    expect(shape(all)).toEqual([
      '2pc transfer UNSET',
      '  2pc.prepare UNSET',
      '    2pc.prepare credit UNSET',
      '    2pc.prepare debit UNSET',
      '  2pc.commit UNSET',
      '    2pc.commit credit UNSET',
      '    2pc.commit debit UNSET',
    ]);
    const common = { 'tx.id': 'tx-1', 'tx.name': 'transfer' };
    const root = getSpan(all, '2pc transfer');
    expectSpan(root, all)
      .toHaveKind(SpanKind.INTERNAL)
      .toBeRoot()
      .toHaveAttributes({
        ...common,
        'tx.outcome': 'committed',
        'tx.decision': 'commit',
        'tx.participant.count': 2,
        'transfer.currency': 'EUR',
      })
      .toHaveEvent('2pc.decision', { 'tx.decision': 'commit', 'tx.votes.yes': 2, 'tx.votes.no': 0 });
    const prepare = getSpan(all, '2pc.prepare');
    const commit = getSpan(all, '2pc.commit');
    expectSpan(prepare, all).toHaveParent(root).toHaveAttributes(common);
    expectSpan(commit, all).toHaveParent(root).toHaveAttributes(common);
    // The decision comes after the votes and before phase 2 (the SDK clock has millisecond steps).
    const decisionTime = root.events.find((event) => event.name === '2pc.decision')!.time;
    const ms = (t: [number, number]) => t[0] * 1e3 + t[1] / 1e6;
    expect(ms(decisionTime)).toBeGreaterThanOrEqual(ms(prepare.endTime) - 1);
    expect(ms(decisionTime)).toBeLessThanOrEqual(ms(commit.startTime) + 1);
    for (const name of ['debit', 'credit']) {
      expectSpan(getSpan(all, `2pc.prepare ${name}`), all)
        .toHaveParent(prepare)
        .toHaveAttributes({ ...common, 'tx.participant.name': name, 'tx.vote': 'yes' });
      expectSpan(getSpan(all, `2pc.commit ${name}`), all)
        .toHaveParent(commit)
        .toHaveAttributes({ ...common, 'tx.participant.name': name, 'tx.participant.outcome': 'committed', 'tx.retries': 0 });
    }
  });

  it('runs each participant call inside its span, with tx.id and tx.name as baggage', async () => {
    const seen: Array<{ span?: string; baggage: Record<string, string> }> = [];
    const look = () => {
      const baggage = propagation.getBaggage(context.active());
      seen.push({
        span: trace.getActiveSpan()?.spanContext().spanId,
        baggage: Object.fromEntries((baggage?.getAllEntries() ?? []).map(([key, entry]) => [key, entry.value])),
      });
    };
    await coordinator.run('look', {
      txId: 'tx-b',
      participants: [participant({ name: 'only', log: [], prepare: () => void look(), commit: () => look() })],
    });
    expect(seen).toEqual([
      { span: getSpan(spans(), '2pc.prepare only').spanContext().spanId, baggage: { 'tx.id': 'tx-b', 'tx.name': 'look' } },
      { span: getSpan(spans(), '2pc.commit only').spanContext().spanId, baggage: { 'tx.id': 'tx-b', 'tx.name': 'look' } },
    ]);
  });
});

describe('TwoPhaseCommitCoordinator: abort', () => {
  it('a no vote rolls back every participant and throws TwoPhaseCommitAbortedError with the votes', async () => {
    const log: string[] = [];
    const error = await coordinator
      .run('transfer', {
        txId: 'tx-2',
        payload: { amount: 5 },
        participants: [
          participant({ name: 'debit', log }),
          participant({ name: 'credit', log, vote: { vote: 'no', reason: 'account frozen' } }),
        ],
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TwoPhaseCommitAbortedError);
    expect(error).toMatchObject({
      name: 'TwoPhaseCommitAbortedError',
      txId: 'tx-2',
      txName: 'transfer',
      outcome: 'rolled_back',
      votes: [
        { participant: 'debit', vote: 'yes' },
        { participant: 'credit', vote: 'no', reason: 'account frozen' },
      ],
      rollbacks: [
        { participant: 'debit', outcome: 'rolled_back', attempts: 1 },
        { participant: 'credit', outcome: 'rolled_back', attempts: 1 },
      ],
    });
    expect((error as Error).message).toBe(
      'Two-phase commit "transfer" was aborted ("credit" voted no: account frozen); every participant was rolled back.',
    );
    expect(log.filter((line) => line.includes('commit'))).toEqual([]);
    expect(log.slice(2).sort()).toEqual(['credit rollback', 'debit rollback']);

    const all = spans();
    expect(shape(all)).toEqual([
      '2pc transfer ERROR',
      '  2pc.prepare UNSET',
      '    2pc.prepare credit UNSET',
      '    2pc.prepare debit UNSET',
      '  2pc.rollback UNSET',
      '    2pc.rollback credit UNSET',
      '    2pc.rollback debit UNSET',
    ]);
    expectSpan(getSpan(all, '2pc transfer'), all)
      .toHaveStatus(SpanStatusCode.ERROR, /was aborted/)
      .toHaveAttributes({ 'tx.outcome': 'rolled_back', 'tx.decision': 'rollback', 'error.type': 'TwoPhaseCommitAbortedError' })
      .toHaveEvent('2pc.decision', { 'tx.decision': 'rollback', 'tx.votes.yes': 1, 'tx.votes.no': 1 });
    // A no vote is an answer, not an error of the participant.
    expectSpan(getSpan(all, '2pc.prepare credit'), all)
      .toHaveStatus(SpanStatusCode.UNSET)
      .toHaveAttributes({ 'tx.vote': 'no', 'tx.vote.reason': 'account frozen' });
    expectSpan(getSpan(all, '2pc.rollback debit'), all)
      .toHaveParent(getSpan(all, '2pc.rollback'))
      .toHaveAttributes({ 'tx.participant.outcome': 'rolled_back' });
    expect(all.flatMap((span) => exceptions(span).map(() => span.name))).toEqual(['2pc transfer']);
  });

  it("rollbackScope: 'prepared' leaves out participants that voted no", async () => {
    const log: string[] = [];
    const error = (await coordinator
      .run('transfer', {
        payload: { amount: 5 },
        rollbackScope: 'prepared',
        participants: [participant({ name: 'debit', log }), participant({ name: 'credit', log, vote: false })],
      })
      .catch((e: unknown) => e)) as TwoPhaseCommitAbortedError;
    expect(log.filter((line) => line.endsWith('rollback'))).toEqual(['debit rollback']);
    expect(error.rollbacks).toEqual([
      { participant: 'debit', outcome: 'rolled_back', attempts: 1 },
      { participant: 'credit', outcome: 'skipped', attempts: 0 },
    ]);
    expect(childrenOf(spans(), getSpan(spans(), '2pc.rollback')).map((span) => span.name)).toEqual(['2pc.rollback debit']);
  });

  it('a prepare error or an invalid vote is an error vote, recorded on the participant span', async () => {
    const boom = new TypeError('disk full');
    const error = (await coordinator
      .run('tx', {
        participants: [
          participant({ name: 'a', log: [], prepare: () => Promise.reject(boom) }),
          participant({ name: 'b', log: [], vote: 42 as unknown as PrepareVote }),
          participant({ name: 'c', log: [] }),
        ],
      })
      .catch((e: unknown) => e)) as TwoPhaseCommitAbortedError;
    expect(error.votes).toMatchObject([
      { participant: 'a', vote: 'error', reason: 'disk full', error: boom },
      { participant: 'b', vote: 'error', error: expect.any(TwoPhaseCommitInvalidVoteError) },
      { participant: 'c', vote: 'yes' },
    ]);
    expect(error.message).toMatch(/"a" failed: disk full; "b" failed: Participant "b" answered prepare with 42/);
    const all = spans();
    expectSpan(getSpan(all, '2pc.prepare a'), all)
      .toHaveStatus(SpanStatusCode.ERROR, 'disk full')
      .toHaveAttributes({ 'tx.vote': 'error', 'error.type': 'TypeError' });
    expectSpan(getSpan(all, '2pc.prepare b'), all).toHaveAttributes({ 'tx.vote': 'error', 'error.type': 'TwoPhaseCommitInvalidVoteError' });
    expectSpan(getSpan(all, '2pc.prepare'), all)
      .toHaveStatus(SpanStatusCode.ERROR, '2 of 3 participant(s) failed to prepare')
      .toHaveAttributes({ 'error.type': 'TypeError' });
    expect(exceptions(getSpan(all, '2pc.prepare'))).toHaveLength(0);
    expect(exceptions(getSpan(all, '2pc.prepare a'))).toHaveLength(1);
  });

  it('a prepare that does not answer in prepareTimeoutMs is a timeout vote, and its signal is aborted', async () => {
    let signal: AbortSignal | undefined;
    const log: string[] = [];
    const error = (await coordinator
      .run('slow', {
        prepareTimeoutMs: 20,
        participants: [
          participant({ name: 'fast', log }),
          participant({
            name: 'stuck',
            log,
            prepare: (ctx) => {
              signal = ctx.signal;
              return new Promise<never>(() => undefined);
            },
          }),
        ],
      })
      .catch((e: unknown) => e)) as TwoPhaseCommitAbortedError;
    expect(error.votes[1]).toMatchObject({ participant: 'stuck', vote: 'timeout' });
    expect(error.votes[1]!.error).toBeInstanceOf(TwoPhaseCommitTimeoutError);
    expect(error.votes[1]!.reason).toBe('The prepare of participant "stuck" timed out after 20 ms (attempt 1).');
    expect(signal?.aborted).toBe(true);
    // The timed-out participant may have prepared after all: it is rolled back too.
    expect(log.filter((line) => line.endsWith('rollback')).sort()).toEqual(['fast rollback', 'stuck rollback']);
    expect(error.message).toContain('"stuck" timed out');
    expectSpan(getSpan(spans(), '2pc.prepare stuck'))
      .toHaveStatus(SpanStatusCode.ERROR, /timed out after 20 ms/)
      .toHaveAttributes({ 'tx.vote': 'timeout', 'error.type': 'TwoPhaseCommitTimeoutError' });
  });

  it('retries a failing rollback, then reports rollback_failed', async () => {
    let calls = 0;
    const error = (await coordinator
      .run('tx', {
        rollback: { retry: { attempts: 3, delayMs: 1 } },
        participants: [
          participant({ name: 'no', log: [], vote: 'no' }),
          participant({
            name: 'sticky',
            log: [],
            rollback: () => {
              calls++;
              throw new Error(`locked ${calls}`);
            },
          }),
        ],
      })
      .catch((e: unknown) => e)) as TwoPhaseCommitAbortedError;
    expect(calls).toBe(3);
    expect(error.outcome).toBe('rollback_failed');
    expect(error.rollbacks).toMatchObject([
      { participant: 'no', outcome: 'rolled_back', attempts: 1 },
      { participant: 'sticky', outcome: 'failed', attempts: 3, error: { message: 'locked 3' } },
    ]);
    const all = spans();
    expectSpan(getSpan(all, '2pc tx'), all).toHaveAttributes({ 'tx.outcome': 'rollback_failed' });
    expectSpan(getSpan(all, '2pc.rollback'), all).toHaveStatus(SpanStatusCode.ERROR, 'rollback failed for 1 of 2 participant(s)');
    expectSpan(getSpan(all, '2pc.rollback sticky'), all)
      .toHaveStatus(SpanStatusCode.ERROR, 'locked 3')
      .toHaveAttributes({ 'tx.participant.outcome': 'failed', 'tx.retries': 2 })
      .toHaveEvent('2pc.attempt.failed', { 'tx.attempt': 1, 'tx.will_retry': true, 'exception.message': 'locked 1' })
      .toHaveEvent('2pc.attempt.failed', { 'tx.attempt': 3, 'tx.will_retry': false });
  });
});

describe('TwoPhaseCommitCoordinator: commit failure', () => {
  it('retries a commit (default policy), then throws TwoPhaseCommitFailedError', async () => {
    let calls = 0;
    const error = (await coordinator
      .run('tx', {
        commit: { retry: { attempts: 2 } },
        participants: [
          participant({ name: 'ok', log: [] }),
          participant({
            name: 'down',
            log: [],
            commit: (ctx) => {
              calls++;
              throw new Error(`unreachable ${ctx.attempt}`);
            },
          }),
        ],
      })
      .catch((e: unknown) => e)) as TwoPhaseCommitFailedError;
    expect(error).toBeInstanceOf(TwoPhaseCommitFailedError);
    expect(calls).toBe(2);
    expect(error.outcome).toBe('commit_failed');
    expect(error.commits).toMatchObject([
      { participant: 'ok', outcome: 'committed', attempts: 1 },
      { participant: 'down', outcome: 'failed', attempts: 2, error: { message: 'unreachable 2' } },
    ]);
    expect(error.message).toMatch(/decided to commit, but the commit failed for "down"/);
    expectSpan(getSpan(spans(), '2pc tx')).toHaveAttributes({ 'tx.outcome': 'commit_failed', 'error.type': 'TwoPhaseCommitFailedError' });
  });

  it('times out a commit attempt per the commit policy', async () => {
    const error = (await coordinator
      .run('tx', {
        commit: { timeoutMs: 15, retry: { attempts: 1 } },
        participants: [participant({ name: 'hang', log: [], commit: () => new Promise(() => undefined) })],
      })
      .catch((e: unknown) => e)) as TwoPhaseCommitFailedError;
    expect(error.commits[0]!.error).toBeInstanceOf(TwoPhaseCommitTimeoutError);
    expect(error.commits[0]!.error).toMatchObject({ phase: 'commit', participant: 'hang', timeoutMs: 15 });
  });
});

describe('TwoPhaseCommitCoordinator: votes and misuse', () => {
  it('reads votes', () => {
    for (const yes of [undefined, null, true, 'yes', { vote: 'yes' }]) {
      expect(readVote('p', yes)).toEqual({ vote: 'yes' });
    }
    for (const no of [false, 'no', { vote: 'no' }, { vote: 'no', reason: '' }]) {
      expect(readVote('p', no)).toEqual({ vote: 'no' });
    }
    expect(readVote('p', { vote: 'no', reason: 'busy' })).toEqual({ vote: 'no', reason: 'busy' });
    for (const bad of [0, 'maybe', {}, { vote: true }, []]) {
      expect(() => readVote('p', bad)).toThrow(TwoPhaseCommitInvalidVoteError);
    }
  });

  it('rejects bad arguments with a clear message before anything runs', async () => {
    const ok = participant({ name: 'a', log: [] });
    const cases: Array<[string, unknown, RegExp]> = [
      ['', { participants: [ok] }, /needs a non-empty name, got ""/],
      ['t', { participants: [] }, /two-phase commit "t" has no participants/],
      ['t', { participants: [{ name: 'x', prepare: () => true }] }, /participant #1 of two-phase commit "t" must be an object with a non-empty name and prepare, commit and rollback/],
      ['t', { participants: [ok, participant({ name: 'a', log: [] })] }, /two participants named "a"/],
      ['t', { participants: [ok], prepareTimeoutMs: 0 }, /"prepareTimeoutMs" must be a positive number of milliseconds, got 0/],
      ['t', { participants: [ok], commit: { retry: { attempts: 0 } } }, /"commit.retry.attempts" must be a positive integer/],
      ['t', { participants: [ok], rollbackScope: 'some' }, /"rollbackScope" must be 'all' or 'prepared', got "some"/],
      ['t', { participants: [ok], txId: 7 }, /"txId" must be a non-empty string, got 7/],
    ];
    for (const [name, options, message] of cases) {
      const error = await coordinator.run(name, options as never).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TwoPhaseCommitDefinitionError);
      expect((error as Error).message).toMatch(message);
    }
    expect(spans()).toHaveLength(0);
  });

  it('is a child of the active span', async () => {
    const tracer = trace.getTracer('test');
    await tracer.startActiveSpan('POST /transfers', async (request) => {
      await coordinator.run('t', { participants: [participant({ name: 'a', log: [] })] });
      request.end();
    });
    expectSpan(getSpan(spans(), '2pc t')).toHaveParent(getSpan(spans(), 'POST /transfers'));
  });
});
