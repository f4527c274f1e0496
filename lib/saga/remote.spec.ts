import { defer, of, throwError, type Observable } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { remoteParticipant, remoteStep, type MessageClient } from './remote.js';
import { defineSaga } from './saga-definition.js';
import { SagaDefinitionError, SagaFailedError, TwoPhaseCommitAbortedError, TwoPhaseCommitDefinitionError } from './saga.errors.js';
import { SagaOrchestrator } from './saga.orchestrator.js';
import { TwoPhaseCommitCoordinator } from './two-phase-commit.coordinator.js';

/** A ClientProxy double: answers each pattern with a handler; every request is logged. */
function fakeClient(handlers: Record<string, (data: any) => unknown>): MessageClient & { sent: Array<[string, unknown]> } {
  const sent: Array<[string, unknown]> = [];
  return {
    sent,
    send<T>(pattern: unknown, data: unknown): Observable<T> {
      // Cold, like ClientProxy.send: nothing is sent until subscribed.
      return defer(() => {
        sent.push([pattern as string, data]);
        const handler = handlers[pattern as string];
        if (!handler) {
          return throwError(() => new Error(`no handler for ${String(pattern)}`));
        }
        try {
          return of(handler(data) as T);
        } catch (error) {
          return throwError(() => error);
        }
      });
    },
  };
}

describe('remoteStep()', () => {
  it('sends the input to the pattern and compensates with { input, result } by default', async () => {
    const client = fakeClient({
      'inventory.reserve': (data: { sku: string }) => ({ reservationId: `r-${data.sku}` }),
      'inventory.release': () => true,
    });
    const saga = defineSaga<{ sku: string }>('order')
      .step('reserve', remoteStep<{ sku: string }, {}, { reservationId: string }>(client, { pattern: 'inventory.reserve', compensate: 'inventory.release' }))
      .step('charge', {
        run: () => {
          throw new Error('declined');
        },
      })
      .build();
    const error = (await new SagaOrchestrator().run(saga, { sku: 'a' }).catch((e: unknown) => e)) as SagaFailedError;
    expect(error).toBeInstanceOf(SagaFailedError);
    expect(error.results).toEqual({ reserve: { reservationId: 'r-a' } });
    expect(client.sent).toEqual([
      ['inventory.reserve', { sku: 'a' }],
      ['inventory.release', { input: { sku: 'a' }, result: { reservationId: 'r-a' } }],
    ]);
  });

  it('uses the payload functions and keeps the policies', async () => {
    const client = fakeClient({ pay: (data) => data, refund: (data) => data });
    const step = remoteStep<{ total: number }>(client, {
      pattern: 'pay',
      compensate: 'refund',
      payload: (input, ctx) => ({ amount: input.total, saga: ctx.sagaName }),
      compensationPayload: (_input, ctx) => ({ refund: ctx.result }),
      timeoutMs: 100,
      retry: { attempts: 2 },
      compensateOnFailure: true,
    });
    expect(step).toMatchObject({ timeoutMs: 100, retry: { attempts: 2 }, compensateOnFailure: true });
    const result = await new SagaOrchestrator().run(defineSaga<{ total: number }>('p').step('pay', step).build(), { total: 3 });
    expect(result.context.results.pay).toEqual({ amount: 3, saga: 'p' });
  });

  it('rejects a missing client or pattern', () => {
    expect(() => remoteStep({} as MessageClient, { pattern: 'x' })).toThrow(SagaDefinitionError);
    expect(() => remoteStep(fakeClient({}), { pattern: '' })).toThrow(/remoteStep\(\): "pattern" must be a message pattern/);
    expect(() => remoteStep(fakeClient({}), { pattern: 'x', compensate: 5 as never })).toThrow(/"compensate" must be a message pattern/);
  });
});

describe('remoteParticipant()', () => {
  it('sends { txId, txName, payload } to each phase pattern and reads the reply as the vote', async () => {
    const client = fakeClient({
      'stock.prepare': () => ({ vote: 'no', reason: 'out of stock' }),
      'stock.commit': () => true,
      'stock.rollback': () => true,
    });
    const participant = remoteParticipant<{ sku: string }>(client, {
      prepare: 'stock.prepare',
      commit: 'stock.commit',
      rollback: 'stock.rollback',
    });
    expect(participant.name).toBe('stock.prepare');
    const error = (await new TwoPhaseCommitCoordinator()
      .run('order', { txId: 't-1', payload: { sku: 'a' }, participants: [participant] })
      .catch((e: unknown) => e)) as TwoPhaseCommitAbortedError;
    expect(error).toBeInstanceOf(TwoPhaseCommitAbortedError);
    expect(error.votes).toEqual([{ participant: 'stock.prepare', vote: 'no', reason: 'out of stock' }]);
    expect(client.sent).toEqual([
      ['stock.prepare', { txId: 't-1', txName: 'order', payload: { sku: 'a' } }],
      ['stock.rollback', { txId: 't-1', txName: 'order', payload: { sku: 'a' } }],
    ]);
  });

  it('takes a name and a message function', async () => {
    const client = fakeClient({ p: () => 'yes', c: () => 'done', r: () => 'done' });
    const participant = remoteParticipant(client, {
      name: 'ledger',
      prepare: 'p',
      commit: 'c',
      rollback: 'r',
      message: (payload, ctx, phase) => ({ phase, id: ctx.txId, payload }),
    });
    const result = await new TwoPhaseCommitCoordinator().run('t', { txId: 'x', payload: 1, participants: [participant] });
    expect(result.votes).toEqual([{ participant: 'ledger', vote: 'yes' }]);
    expect(client.sent).toEqual([
      ['p', { phase: 'prepare', id: 'x', payload: 1 }],
      ['c', { phase: 'commit', id: 'x', payload: 1 }],
    ]);
  });

  it('rejects a missing client or pattern', () => {
    expect(() => remoteParticipant(null as never, { prepare: 'p', commit: 'c', rollback: 'r' })).toThrow(TwoPhaseCommitDefinitionError);
    expect(() => remoteParticipant(fakeClient({}), { prepare: 'p', commit: 'c' } as never)).toThrow(
      /remoteParticipant\(\): "rollback" must be a message pattern \(a string or an object\), got undefined/,
    );
  });
});
