import type { Observable } from 'rxjs';
import type { SagaStepConfig } from './saga-definition.js';
import { SagaDefinitionError, TwoPhaseCommitDefinitionError } from './saga.errors.js';
import type {
  ExecutionPolicy,
  PrepareVote,
  SagaCompensationContext,
  SagaStepContext,
  TwoPhaseCommitContext,
  TwoPhaseCommitParticipant,
} from './saga.interfaces.js';
import { remoteParticipantInvalid, SAGA_EXAMPLES, sagaOptionInvalid } from './saga.messages.js';

/**
 * What the remote helpers need of a Nest `ClientProxy` (any transport: NATS, RabbitMQ, Kafka,
 * TCP ...). Written structurally so this file does not load `@nestjs/microservices`.
 */
export interface MessageClient {
  send<TResult = any, TInput = any>(pattern: any, data: TInput): Observable<TResult>;
}

/** A Nest message pattern: a string or an object pattern. */
export type MessagePatternLike = string | Record<string, unknown>;

/** The message a remote participant receives by default, for each of prepare, commit and rollback. */
export interface RemoteTwoPhaseCommitMessage<P = unknown> {
  txId: string;
  txName: string;
  payload: P;
}

/** Options of {@link remoteParticipant}. */
export interface RemoteParticipantOptions<P> {
  /** The participant's name. Default: the `prepare` pattern (as JSON if an object). */
  name?: string;
  /** Pattern of the remote `@MessagePattern` handler that prepares and returns the vote. */
  prepare: MessagePatternLike;
  /** Pattern of the remote handler that commits. */
  commit: MessagePatternLike;
  /** Pattern of the remote handler that rolls back. */
  rollback: MessagePatternLike;
  /**
   * The data sent with each request. Default: `{ txId, txName, payload }`
   * ({@link RemoteTwoPhaseCommitMessage}), so the remote side can match commit to prepare.
   */
  message?: (payload: P, ctx: TwoPhaseCommitContext, phase: 'prepare' | 'commit' | 'rollback') => unknown;
}

function isPattern(value: unknown): value is MessagePatternLike {
  return (typeof value === 'string' && value !== '') || (value !== null && typeof value === 'object' && !Array.isArray(value));
}

function patternName(pattern: MessagePatternLike): string {
  return typeof pattern === 'string' ? pattern : JSON.stringify(pattern);
}

/**
 * A two-phase commit participant that is another service, reached through `client`: each phase
 * is a request (`client.send`) to the given pattern, so a traced client (`OtelClientNats`,
 * `OtelClientRMQ` ...) carries the trace context and the `tx.id` / `tx.name` baggage, and the
 * remote handler's span joins the transaction's trace under its `2pc.prepare {name}` span. The
 * prepare handler's reply is the vote (see `PrepareVote`); an RpcException reply is an error vote.
 *
 * @publicApi
 */
export function remoteParticipant<P = unknown>(client: MessageClient, options: RemoteParticipantOptions<P>): TwoPhaseCommitParticipant<P> {
  if (client === null || typeof client !== 'object' || typeof client.send !== 'function') {
    throw new TwoPhaseCommitDefinitionError(remoteParticipantInvalid('client', client));
  }
  for (const key of ['prepare', 'commit', 'rollback'] as const) {
    if (!isPattern(options?.[key])) {
      throw new TwoPhaseCommitDefinitionError(remoteParticipantInvalid(key, options?.[key]));
    }
  }
  const message =
    options.message ?? ((payload: P, ctx: TwoPhaseCommitContext) => ({ txId: ctx.txId, txName: ctx.txName, payload }));
  const call = (phase: 'prepare' | 'commit' | 'rollback') => (payload: P, ctx: TwoPhaseCommitContext) =>
    client.send(options[phase], message(payload, ctx, phase));
  return {
    name: options.name ?? patternName(options.prepare),
    prepare: call('prepare') as (payload: P, ctx: TwoPhaseCommitContext) => Observable<PrepareVote>,
    commit: call('commit'),
    rollback: call('rollback'),
  };
}

/** Options of {@link remoteStep}. */
export interface RemoteStepOptions<I, R, T> extends ExecutionPolicy {
  /** Pattern of the remote `@MessagePattern` handler doing the step; its reply is the step's result. */
  pattern: MessagePatternLike;
  /** Pattern of the remote handler undoing it. Default: none (nothing to undo). */
  compensate?: MessagePatternLike;
  /** Data of the step request. Default: the saga input. */
  payload?: (input: I, ctx: SagaStepContext<I, R>) => unknown;
  /** Data of the compensation request. Default: `{ input, result }` (the step's reply). */
  compensationPayload?: (input: I, ctx: SagaCompensationContext<I, T>) => unknown;
  /** Timeout and retries of the compensation request. Default: no timeout, no retry. */
  compensation?: ExecutionPolicy;
  /** See `SagaStepDefinition.compensateOnFailure`; often wanted for remote steps. Default `false`. */
  compensateOnFailure?: boolean;
}

/**
 * A saga step done by another service through `client` (request-reply), for `defineSaga().step()`:
 *
 * ```ts
 * defineSaga<Order>('order').step('reserve', remoteStep<Order, {}, Reservation>(inventory, { pattern: 'inventory.reserve', compensate: 'inventory.release', timeoutMs: 5000 }))
 * ```
 *
 * @publicApi
 */
export function remoteStep<I = unknown, R = Record<string, unknown>, T = unknown>(
  client: MessageClient,
  options: RemoteStepOptions<I, R, T>,
): SagaStepConfig<I, R, Observable<T>> {
  const problem = (option: string, expected: string, got: unknown): never => {
    throw new SagaDefinitionError(sagaOptionInvalid('remoteStep()', option, expected, got, SAGA_EXAMPLES.remote));
  };
  if (client === null || typeof client !== 'object' || typeof client.send !== 'function') {
    problem('client', 'a ClientProxy (an object with send())', client);
  }
  if (!isPattern(options?.pattern)) {
    problem('pattern', 'a message pattern (a string or an object)', options?.pattern);
  }
  if (options.compensate !== undefined && !isPattern(options.compensate)) {
    problem('compensate', 'a message pattern (a string or an object)', options.compensate);
  }
  const { pattern, compensate, payload, compensationPayload, ...policy } = options;
  const config: SagaStepConfig<I, R, Observable<T>> = {
    ...policy,
    run: (input, ctx) => client.send<T>(pattern, payload ? payload(input, ctx) : input),
  };
  if (compensate !== undefined) {
    config.compensate = (input, ctx) =>
      client.send(compensate, compensationPayload ? compensationPayload(input, ctx) : { input, result: ctx.result });
  }
  return config;
}
