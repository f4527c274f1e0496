import { randomUUID } from 'node:crypto';
import { Injectable, Optional } from '@nestjs/common';
import { context, SpanKind, trace, type Attributes, type Context, type Link, type SpanContext } from '@opentelemetry/api';
import { recordError } from '../utils/record-error.js';
import { markFailed, runAttempts, startSpan, withBaggageEntries, type AttemptEvents } from './execution.js';
import {
  ATTR_SAGA_COMPENSATION_ATTEMPT,
  ATTR_SAGA_COMPENSATION_COUNT,
  ATTR_SAGA_COMPENSATION_OUTCOME,
  ATTR_SAGA_COMPENSATION_RETRIES,
  ATTR_SAGA_COMPENSATION_SKIP_REASON,
  ATTR_SAGA_COMPENSATION_WILL_RETRY,
  ATTR_SAGA_FAILED_STEP,
  ATTR_SAGA_ID,
  ATTR_SAGA_LINK_TYPE,
  ATTR_SAGA_NAME,
  ATTR_SAGA_OUTCOME,
  ATTR_SAGA_STEP_ATTEMPT,
  ATTR_SAGA_STEP_COUNT,
  ATTR_SAGA_STEP_INDEX,
  ATTR_SAGA_STEP_NAME,
  ATTR_SAGA_STEP_OUTCOME,
  ATTR_SAGA_STEP_RETRIES,
  ATTR_SAGA_STEP_WILL_RETRY,
  EVENT_SAGA_COMPENSATION_COMPLETED,
  EVENT_SAGA_COMPENSATION_FAILED,
  EVENT_SAGA_COMPENSATION_SKIPPED,
  EVENT_SAGA_COMPENSATION_STARTED,
  EVENT_SAGA_STEP_COMPLETED,
  EVENT_SAGA_STEP_FAILED,
  EVENT_SAGA_STEP_STARTED,
  SAGA_COMPENSATE_SPAN,
  SAGA_COMPENSATION_SPAN,
  SAGA_SPAN,
  SAGA_STEP_SPAN,
} from './saga.constants.js';
import { SagaDefinition, sagaProblem } from './saga-definition.js';
import { SagaDefinitionError, SagaFailedError, SagaStepTimeoutError } from './saga.errors.js';
import type {
  SagaCompensationReport,
  SagaOutcome,
  SagaResult,
  SagaRunOptions,
  SagaStepDefinition,
} from './saga.interfaces.js';
import { SAGA_EXAMPLES, sagaNoRegistry } from './saga.messages.js';
import { SagaRegistry } from './saga.registry.js';

const STEP_EVENTS: AttemptEvents = {
  started: EVENT_SAGA_STEP_STARTED,
  completed: EVENT_SAGA_STEP_COMPLETED,
  failed: EVENT_SAGA_STEP_FAILED,
  attemptKey: ATTR_SAGA_STEP_ATTEMPT,
  willRetryKey: ATTR_SAGA_STEP_WILL_RETRY,
};

const COMPENSATION_EVENTS: AttemptEvents = {
  started: EVENT_SAGA_COMPENSATION_STARTED,
  completed: EVENT_SAGA_COMPENSATION_COMPLETED,
  failed: EVENT_SAGA_COMPENSATION_FAILED,
  attemptKey: ATTR_SAGA_COMPENSATION_ATTEMPT,
  willRetryKey: ATTR_SAGA_COMPENSATION_WILL_RETRY,
};

const NO_COMPENSATION = 'the step has no compensation';
const STOPPED = 'an earlier compensation failed and onCompensationFailure is "stop"';

/** A step whose forward action ran: its result and the span to link its compensation to. */
interface RanStep {
  step: SagaStepDefinition;
  index: number;
  span: SpanContext;
  result: unknown;
}

/** What one run shares between its phases. */
interface Run {
  definition: SagaDefinition<any, any>;
  sagaId: string;
  input: unknown;
  /** Results by step name; each step and compensation gets a frozen copy. */
  results: Record<string, unknown>;
  /** Context of the `saga` span, with the saga baggage. */
  ctx: Context;
  /** `saga.name` and `saga.id`, on every span of the run. */
  common: Attributes;
}

/**
 * Runs sagas: the steps in order, each in a `saga.step {step}` span under one `saga {name}` span;
 * when a step fails (error, rejection, errored Observable, timeout, after its retries), the
 * compensations of the completed steps in reverse order under `saga.compensate {name}`, each
 * linked to the step it undoes and to the failed step. `saga.id` and `saga.name` are W3C baggage
 * for the whole run, so remote services that copy them (`baggageToAttributes`) tag their spans.
 *
 * @publicApi
 */
@Injectable()
export class SagaOrchestrator {
  constructor(@Optional() private readonly registry?: SagaRegistry) {}

  /**
   * Runs `saga` (a definition, or the name of a registered or `@SagaStep()` saga) with `input`.
   * Resolves when every step completed; otherwise rejects with a {@link SagaFailedError} once the
   * compensations ran. A {@link SagaDefinitionError} (unknown saga, bad options) rejects before
   * anything runs.
   */
  run<I, R>(saga: SagaDefinition<I, R>, input: I, options?: SagaRunOptions): Promise<SagaResult<I, R>>;
  run<I = unknown, R = Record<string, unknown>>(saga: string, input: I, options?: SagaRunOptions): Promise<SagaResult<I, R>>;
  async run(saga: SagaDefinition<any, any> | string, input: unknown, options: SagaRunOptions = {}): Promise<SagaResult> {
    const definition = this.resolve(saga);
    validateRunOptions(definition.name, options);
    const name = definition.name;
    const sagaId = options.sagaId ?? randomUUID();
    const common: Attributes = { [ATTR_SAGA_NAME]: name, [ATTR_SAGA_ID]: sagaId };
    const base = withBaggageEntries(context.active(), { [ATTR_SAGA_ID]: sagaId, [ATTR_SAGA_NAME]: name });
    const root = startSpan(
      `${SAGA_SPAN} ${name}`,
      {
        kind: SpanKind.INTERNAL,
        attributes: { ...options.attributes, ...common, [ATTR_SAGA_STEP_COUNT]: definition.steps.length },
      },
      base,
    );
    let rootEnded = false;
    const endRoot = (outcome: SagaOutcome): void => {
      rootEnded = true;
      root.setAttribute(ATTR_SAGA_OUTCOME, outcome);
      root.end();
    };
    const run: Run = { definition, sagaId, input, results: {}, ctx: trace.setSpan(base, root), common };

    try {
      const ran: RanStep[] = [];
      for (const [index, step] of definition.steps.entries()) {
        const outcome = await this.runStep(run, step, index);
        if (outcome.ok) {
          run.results[step.name] = outcome.value;
          ran.push({ step, index, span: outcome.span, result: outcome.value });
          continue;
        }
        const failed: RanStep = { step, index, span: outcome.span, result: undefined };
        const onFailure = options.onCompensationFailure ?? definition.options.onCompensationFailure ?? 'continue';
        const reports = await this.compensate(run, ran, failed, outcome.error, onFailure);
        const sagaOutcome = reports.some((report) => report.outcome === 'failed') ? 'compensation_failed' : 'compensated';
        const error = new SagaFailedError(sagaId, name, step.name, outcome.error, sagaOutcome, reports, { ...run.results });
        root.setAttribute(ATTR_SAGA_FAILED_STEP, step.name);
        // A new error object, so this is its one exception event; the step's own error was
        // recorded on the step span.
        recordError(root, error);
        endRoot(sagaOutcome);
        throw error;
      }
      endRoot('completed');
      return {
        sagaId,
        sagaName: name,
        outcome: 'completed',
        context: { sagaId, sagaName: name, input, results: { ...run.results } },
      };
    } finally {
      // Only reached un-ended if our own code failed; the span must still end once.
      if (!rootEnded) {
        root.end();
      }
    }
  }

  private resolve(saga: SagaDefinition<any, any> | string): SagaDefinition<any, any> {
    if (saga instanceof SagaDefinition) {
      return saga;
    }
    if (typeof saga === 'string') {
      if (!this.registry) {
        throw new SagaDefinitionError(sagaNoRegistry(saga));
      }
      return this.registry.getOrThrow(saga);
    }
    return sagaProblem('SagaOrchestrator.run()', SAGA_EXAMPLES.run)('saga', 'a SagaDefinition or the name of a saga', saga);
  }

  private async runStep(
    run: Run,
    step: SagaStepDefinition,
    index: number,
  ): Promise<({ ok: true; value: unknown } | { ok: false; error: unknown }) & { span: SpanContext }> {
    const { definition, sagaId, input } = run;
    const span = startSpan(
      `${SAGA_STEP_SPAN} ${step.name}`,
      {
        kind: SpanKind.INTERNAL,
        attributes: { ...run.common, [ATTR_SAGA_STEP_NAME]: step.name, [ATTR_SAGA_STEP_INDEX]: index },
      },
      run.ctx,
    );
    const results = Object.freeze({ ...run.results });
    const outcome = await runAttempts({
      span,
      ctx: trace.setSpan(run.ctx, span),
      policy: { timeoutMs: step.timeoutMs, retry: step.retry },
      events: STEP_EVENTS,
      call: (attempt, signal) =>
        step.run(input, { sagaId, sagaName: definition.name, input, results, step: step.name, index, attempt, signal }),
      timeoutError: (attempt, timeoutMs) => new SagaStepTimeoutError(definition.name, step.name, 'step', timeoutMs, attempt),
    });
    span.setAttribute(ATTR_SAGA_STEP_RETRIES, outcome.attempts - 1);
    if (outcome.ok) {
      span.setAttribute(ATTR_SAGA_STEP_OUTCOME, 'completed');
    } else {
      span.setAttribute(ATTR_SAGA_STEP_OUTCOME, outcome.timedOut ? 'timed_out' : 'failed');
      recordError(span, outcome.error);
    }
    span.end();
    const spanContext = span.spanContext();
    return outcome.ok
      ? { ok: true, value: outcome.value, span: spanContext }
      : { ok: false, error: outcome.error, span: spanContext };
  }

  /** Undoes `ran` in reverse order (and `failed` first, if it asks for it). Never throws. */
  private async compensate(
    run: Run,
    ran: readonly RanStep[],
    failed: RanStep,
    cause: unknown,
    onFailure: 'continue' | 'stop',
  ): Promise<SagaCompensationReport[]> {
    const { definition, sagaId, input } = run;
    const parent = startSpan(
      `${SAGA_COMPENSATE_SPAN} ${definition.name}`,
      { kind: SpanKind.INTERNAL, attributes: { ...run.common, [ATTR_SAGA_FAILED_STEP]: failed.step.name } },
      run.ctx,
    );
    const parentCtx = trace.setSpan(run.ctx, parent);
    const queue = [...ran].reverse();
    if (failed.step.compensateOnFailure) {
      queue.unshift(failed);
    }
    const results = Object.freeze({ ...run.results });
    const reports: SagaCompensationReport[] = [];
    let firstError: unknown;
    let failures = 0;
    let count = 0;

    for (const entry of queue) {
      const { step, index } = entry;
      const compensateFn = step.compensate;
      const reason = !compensateFn ? NO_COMPENSATION : failures > 0 && onFailure === 'stop' ? STOPPED : undefined;
      if (!compensateFn || reason !== undefined) {
        parent.addEvent(EVENT_SAGA_COMPENSATION_SKIPPED, {
          [ATTR_SAGA_STEP_NAME]: step.name,
          [ATTR_SAGA_STEP_INDEX]: index,
          [ATTR_SAGA_COMPENSATION_SKIP_REASON]: reason ?? NO_COMPENSATION,
        });
        reports.push({ step: step.name, outcome: 'skipped', attempts: 0, reason: reason ?? NO_COMPENSATION });
        continue;
      }
      const compensate = compensateFn.bind(step);
      const links: Link[] = [
        { context: entry.span, attributes: { [ATTR_SAGA_LINK_TYPE]: 'compensated_step' } },
        { context: failed.span, attributes: { [ATTR_SAGA_LINK_TYPE]: 'failed_step' } },
      ];
      const span = startSpan(
        `${SAGA_COMPENSATION_SPAN} ${step.name}`,
        {
          kind: SpanKind.INTERNAL,
          attributes: { ...run.common, [ATTR_SAGA_STEP_NAME]: step.name, [ATTR_SAGA_STEP_INDEX]: index },
          links,
        },
        parentCtx,
      );
      count++;
      const outcome = await runAttempts({
        span,
        ctx: trace.setSpan(parentCtx, span),
        policy: step.compensation,
        events: COMPENSATION_EVENTS,
        call: (attempt, signal) =>
          compensate(input, {
            sagaId,
            sagaName: definition.name,
            input,
            results,
            step: step.name,
            index,
            attempt,
            signal,
            result: entry.result,
            failedStep: failed.step.name,
            error: cause,
          }),
        timeoutError: (attempt, timeoutMs) =>
          new SagaStepTimeoutError(definition.name, step.name, 'compensation', timeoutMs, attempt),
      });
      span.setAttribute(ATTR_SAGA_COMPENSATION_RETRIES, outcome.attempts - 1);
      if (outcome.ok) {
        span.setAttribute(ATTR_SAGA_COMPENSATION_OUTCOME, 'compensated');
        reports.push({ step: step.name, outcome: 'compensated', attempts: outcome.attempts });
      } else {
        span.setAttribute(ATTR_SAGA_COMPENSATION_OUTCOME, 'failed');
        recordError(span, outcome.error);
        reports.push({ step: step.name, outcome: 'failed', attempts: outcome.attempts, error: outcome.error });
        firstError ??= outcome.error;
        failures++;
      }
      span.end();
    }

    parent.setAttribute(ATTR_SAGA_COMPENSATION_COUNT, count);
    if (failures > 0) {
      // Status and error.type only: the exception event is on the compensation's own span.
      markFailed(parent, firstError, `${failures} of ${count} compensation(s) failed`);
    }
    parent.end();
    return reports;
  }
}

function validateRunOptions(saga: string, options: SagaRunOptions): void {
  const problem = sagaProblem(`SagaOrchestrator.run("${saga}")`, SAGA_EXAMPLES.run);
  if (options === null || typeof options !== 'object') {
    problem('options', 'an object { sagaId?, attributes?, onCompensationFailure? }', options);
  }
  if (options.sagaId !== undefined && (typeof options.sagaId !== 'string' || options.sagaId === '')) {
    problem('sagaId', 'a non-empty string', options.sagaId);
  }
  const onFailure = options.onCompensationFailure;
  if (onFailure !== undefined && onFailure !== 'continue' && onFailure !== 'stop') {
    problem('onCompensationFailure', "'continue' or 'stop'", onFailure);
  }
}
