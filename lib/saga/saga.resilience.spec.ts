import { diag, trace, type Tracer, type TracerProvider } from '@opentelemetry/api';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { defineSaga } from './saga-definition.js';
import { SagaFailedError, TwoPhaseCommitAbortedError } from './saga.errors.js';
import { SagaOrchestrator } from './saga.orchestrator.js';
import { TwoPhaseCommitCoordinator } from './two-phase-commit.coordinator.js';

const saga = (fail: boolean) =>
  defineSaga('resilient')
    .step('a', { run: () => 'A', compensate: () => undefined })
    .step('b', {
      run: () => {
        if (fail) {
          throw new Error('b failed');
        }
        return 'B';
      },
    })
    .build();

const participants = (vote: 'yes' | 'no') => [
  { name: 'p', prepare: () => vote, commit: () => undefined, rollback: () => undefined },
];

async function runAll(): Promise<void> {
  const orchestrator = new SagaOrchestrator();
  const coordinator = new TwoPhaseCommitCoordinator();
  await expect(orchestrator.run(saga(false), undefined)).resolves.toMatchObject({ outcome: 'completed', context: { results: { a: 'A', b: 'B' } } });
  await expect(orchestrator.run(saga(true), undefined)).rejects.toBeInstanceOf(SagaFailedError);
  await expect(coordinator.run('t', { participants: participants('yes') })).resolves.toMatchObject({ outcome: 'committed' });
  await expect(coordinator.run('t', { participants: participants('no') })).rejects.toBeInstanceOf(TwoPhaseCommitAbortedError);
}

describe('tracing never breaks sagas and two-phase commits', () => {
  afterEach(() => {
    trace.disable();
    vi.restoreAllMocks();
  });

  it('runs without any SDK (non-recording spans)', async () => {
    await runAll();
  });

  it('runs when the tracer throws, and says so through diag', async () => {
    const warn = vi.spyOn(diag, 'warn').mockImplementation(() => undefined);
    const broken: Tracer = {
      startSpan: () => {
        throw new Error('tracer exploded');
      },
      startActiveSpan: (() => {
        throw new Error('tracer exploded');
      }) as Tracer['startActiveSpan'],
    };
    const provider: TracerProvider = { getTracer: () => broken };
    trace.setGlobalTracerProvider(provider);
    await runAll();
    expect(warn).toHaveBeenCalledWith(expect.stringMatching(/could not start span "saga resilient"; the work runs untraced/), expect.any(Error));
  });
});
