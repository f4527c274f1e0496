/**
 * The sentences sagas and two-phase commits show to users. They live next to the saga code rather
 * than in `otel.messages.ts` because this feature is an optional module; they follow its rules:
 * say what is wrong and how to fix it.
 */
import { describeValue, MESSAGE_PREFIX } from '../otel.messages.js';
import { messageOf } from './execution.js';

/** Examples shown after a wrong option, by the API it was given to. */
export const SAGA_EXAMPLES = {
  decorator: "@SagaStep({ saga: 'order', order: 1, compensate: 'release', timeoutMs: 5000, retry: { attempts: 3 } })",
  builder: "defineSaga('order').step('reserve', { run, compensate, timeoutMs: 5000, retry: { attempts: 3 } })",
  remote: "remoteStep(client, { pattern: 'inventory.reserve', compensate: 'inventory.release', timeoutMs: 5000 })",
  run: "orchestrator.run('order', input, { sagaId: order.id })",
} as const;

export function sagaOptionInvalid(where: string, option: string, expected: string, got: unknown, example?: string): string {
  const hint = example ? ` Use e.g. ${example}.` : '';
  return `${MESSAGE_PREFIX} ${where}: "${option}" must be ${expected}, got ${describeValue(got)}.${hint}`;
}

export function sagaStepOnNonMethod(where: string): string {
  return `${MESSAGE_PREFIX} @SagaStep() can only decorate methods, and ${where} is not a method. Move it to a method.`;
}

export function sagaNameInvalid(got: unknown): string {
  return `${MESSAGE_PREFIX} a saga name must be a non-empty string, got ${describeValue(got)}. Use e.g. defineSaga('order').`;
}

export function sagaWithoutSteps(saga: string): string {
  return `${MESSAGE_PREFIX} saga "${saga}" has no steps. Add one with .step('reserve', { run, compensate }) or @SagaStep().`;
}

export function sagaDuplicateStep(saga: string, step: string, first: string, second: string): string {
  return (
    `${MESSAGE_PREFIX} saga "${saga}" has two steps named "${step}" (${first} and ${second}). ` +
    "Step names key the results, so they must be unique: rename one, e.g. @SagaStep({ step: 'reserve-stock', ... })."
  );
}

export function sagaDuplicateOrder(saga: string, order: number, first: string, second: string): string {
  return (
    `${MESSAGE_PREFIX} saga "${saga}" has two steps with order ${order} (${first} and ${second}), so their ` +
    'sequence is undefined. Give each step of a saga its own order.'
  );
}

export function sagaMissingCompensation(saga: string, step: string, where: string, method: string, available: readonly string[]): string {
  const known = available.length > 0 ? ` Methods of the provider: ${available.join(', ')}.` : '';
  return (
    `${MESSAGE_PREFIX} step "${step}" of saga "${saga}" (${where}) names compensation method "${method}", ` +
    `which the provider does not have.${known} Fix the name, or pass the function itself as { compensate }.`
  );
}

export function sagaStepNotStatic(saga: string, where: string): string {
  return (
    `${MESSAGE_PREFIX} ${where} is a step of saga "${saga}", but its provider is request-scoped or transient ` +
    '(it depends on REQUEST, or a provider with that scope), so there is no single instance to run it on. ' +
    'Make the provider a singleton, and pass request data through the saga input.'
  );
}

export function sagaDefinedTwice(saga: string): string {
  return (
    `${MESSAGE_PREFIX} saga "${saga}" is defined twice (by @SagaStep() methods and/or registered definitions). ` +
    'Give each saga one definition, or rename one of them.'
  );
}

export function sagaUnknown(saga: string, known: readonly string[]): string {
  const list = known.length > 0 ? `Known sagas: ${known.map((name) => `"${name}"`).join(', ')}.` : 'No saga is defined.';
  return (
    `${MESSAGE_PREFIX} there is no saga named "${saga}". ${list} Define it with @SagaStep({ saga: '${saga}', ... }) on ` +
    'a provider of an application that imports OtelSagaModule, or register defineSaga(...).build() with ' +
    'OtelSagaModule.forRoot({ sagas: [...] }).'
  );
}

export function sagaNoRegistry(saga: string): string {
  return (
    `${MESSAGE_PREFIX} SagaOrchestrator.run("${saga}") looks sagas up by name, which needs the SagaRegistry of ` +
    'OtelSagaModule. Import OtelSagaModule (or OtelSagaModule.forRoot()), or pass the SagaDefinition itself.'
  );
}

export function sagaStepTimedOut(saga: string, step: string, what: 'step' | 'compensation', timeoutMs: number, attempt: number): string {
  return `${what === 'step' ? 'Step' : 'Compensation of step'} "${step}" of saga "${saga}" timed out after ${timeoutMs} ms (attempt ${attempt}).`;
}

export function sagaFailed(saga: string, step: string, cause: unknown, outcome: string, failedCompensations: readonly string[]): string {
  const why = messageOf(cause);
  const tail =
    outcome === 'compensated'
      ? 'the completed steps were compensated.'
      : `compensation failed for ${failedCompensations.map((name) => `"${name}"`).join(', ')}.`;
  return `Saga "${saga}" failed at step "${step}" (${why}); ${tail}`;
}

// ---------------------------------------------------------------------------------------------
// Two-phase commit
// ---------------------------------------------------------------------------------------------

export function twoPhaseNameInvalid(got: unknown): string {
  return `${MESSAGE_PREFIX} a two-phase commit needs a non-empty name, got ${describeValue(got)}. Use e.g. coordinator.run('transfer', { participants }).`;
}

export function twoPhaseNoParticipants(tx: string): string {
  return `${MESSAGE_PREFIX} two-phase commit "${tx}" has no participants. Pass { participants: [a, b] }.`;
}

export function twoPhaseParticipantInvalid(tx: string, index: number, got: unknown): string {
  return (
    `${MESSAGE_PREFIX} participant #${index + 1} of two-phase commit "${tx}" must be an object with a non-empty ` +
    `name and prepare, commit and rollback methods, got ${describeValue(got)}. For a remote service use ` +
    "remoteParticipant(client, { name: 'inventory', prepare: 'inventory.prepare', commit: 'inventory.commit', rollback: 'inventory.rollback' })."
  );
}

export function twoPhaseDuplicateParticipant(tx: string, name: string): string {
  return `${MESSAGE_PREFIX} two-phase commit "${tx}" has two participants named "${name}". Give each participant its own name.`;
}

export function twoPhaseOptionInvalid(tx: string, option: string, expected: string, got: unknown): string {
  return `${MESSAGE_PREFIX} two-phase commit "${tx}": "${option}" must be ${expected}, got ${describeValue(got)}.`;
}

export function twoPhaseInvalidVote(participant: string, got: unknown): string {
  return (
    `Participant "${participant}" answered prepare with ${describeValue(got)}, which is not a vote. Return ` +
    "nothing or true / 'yes' / { vote: 'yes' } to vote yes, and false / 'no' / { vote: 'no', reason } to vote no."
  );
}

export function twoPhaseTimedOut(participant: string, phase: string, timeoutMs: number, attempt: number): string {
  return `The ${phase} of participant "${participant}" timed out after ${timeoutMs} ms (attempt ${attempt}).`;
}

export function twoPhaseAborted(tx: string, refusals: readonly string[], outcome: string): string {
  const tail = outcome === 'rolled_back' ? 'every participant was rolled back.' : 'the rollback failed for some participants.';
  return `Two-phase commit "${tx}" was aborted (${refusals.join('; ')}); ${tail}`;
}

export function twoPhaseCommitFailed(tx: string, failed: readonly string[]): string {
  return (
    `Two-phase commit "${tx}" decided to commit, but the commit failed for ${failed.map((name) => `"${name}"`).join(', ')} ` +
    'after all attempts; the other participants committed. Those participants are prepared and must be committed ' +
    'by recovery.'
  );
}

export function remoteParticipantInvalid(option: string, got: unknown): string {
  return (
    `${MESSAGE_PREFIX} remoteParticipant(): "${option}" must be a message pattern (a string or an object), got ` +
    `${describeValue(got)}. Use e.g. remoteParticipant(client, { prepare: 'inventory.prepare', commit: ` +
    "'inventory.commit', rollback: 'inventory.rollback' })."
  );
}
