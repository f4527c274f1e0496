/**
 * Span names, attribute names, event names and baggage keys of sagas and two-phase commits.
 * The library's semantic-convention names live in `lib/semconv.ts`; these have no OpenTelemetry
 * convention yet, so they are ours and are kept here, next to the code that emits them.
 */

/** Reflect-metadata key, on a method, of its `@SagaStep` options (an array: one per saga). */
export const SAGA_STEP_METADATA = 'otel-nest:saga-step';

// Span names. Each is `<operation> <name>`, like the rest of the library (`send orders.created`).
/** Root span of a saga run: `saga order`. */
export const SAGA_SPAN = 'saga';
/** One span per forward step: `saga.step reserve`. */
export const SAGA_STEP_SPAN = 'saga.step';
/** Parent of the compensations of a failed run: `saga.compensate order`. */
export const SAGA_COMPENSATE_SPAN = 'saga.compensate';
/** One span per compensation that ran: `saga.compensation reserve`. */
export const SAGA_COMPENSATION_SPAN = 'saga.compensation';

/** Root span of a two-phase commit: `2pc transfer`. */
export const TWO_PC_SPAN = '2pc';
/** The voting phase, parent of one `2pc.prepare {participant}` span per participant. */
export const TWO_PC_PREPARE_SPAN = '2pc.prepare';
/** The commit phase, parent of one `2pc.commit {participant}` span per participant. */
export const TWO_PC_COMMIT_SPAN = '2pc.commit';
/** The rollback phase, parent of one `2pc.rollback {participant}` span per participant. */
export const TWO_PC_ROLLBACK_SPAN = '2pc.rollback';

// Saga attributes.
/** The saga's name (`order`). Also a baggage key. */
export const ATTR_SAGA_NAME = 'saga.name';
/** The id of one run of a saga (a UUID unless given). Also a baggage key. */
export const ATTR_SAGA_ID = 'saga.id';
/** How the run ended: see {@link SagaOutcome}. Set on the `saga` span when it ends. */
export const ATTR_SAGA_OUTCOME = 'saga.outcome';
/** Number of forward steps in the saga definition. */
export const ATTR_SAGA_STEP_COUNT = 'saga.step.count';
/** The name of the step that failed (on the `saga` and `saga.compensate` spans of a failed run). */
export const ATTR_SAGA_FAILED_STEP = 'saga.failed_step';
/** A step's name (`reserve`). */
export const ATTR_SAGA_STEP_NAME = 'saga.step.name';
/** A step's 0-based position in the run. */
export const ATTR_SAGA_STEP_INDEX = 'saga.step.index';
/** How a forward step ended: `completed`, `failed` or `timed_out`. */
export const ATTR_SAGA_STEP_OUTCOME = 'saga.step.outcome';
/** How many times a step was retried: attempts - 1. */
export const ATTR_SAGA_STEP_RETRIES = 'saga.step.retries';
/** On a step event: the attempt (1-based) it is about. */
export const ATTR_SAGA_STEP_ATTEMPT = 'saga.step.attempt';
/** On a step failure event: whether another attempt follows. */
export const ATTR_SAGA_STEP_WILL_RETRY = 'saga.step.will_retry';
/** Number of compensations the `saga.compensate` span ran. */
export const ATTR_SAGA_COMPENSATION_COUNT = 'saga.compensation.count';
/** How one compensation ended: `compensated` or `failed` (`skipped` ones have no span). */
export const ATTR_SAGA_COMPENSATION_OUTCOME = 'saga.compensation.outcome';
/** How many times a compensation was retried: attempts - 1. */
export const ATTR_SAGA_COMPENSATION_RETRIES = 'saga.compensation.retries';
/** On a compensation event: the attempt (1-based) it is about. */
export const ATTR_SAGA_COMPENSATION_ATTEMPT = 'saga.compensation.attempt';
/** On a compensation failure event: whether another attempt follows. */
export const ATTR_SAGA_COMPENSATION_WILL_RETRY = 'saga.compensation.will_retry';
/** On a `saga.compensation.skipped` event: why the step was not compensated. */
export const ATTR_SAGA_COMPENSATION_SKIP_REASON = 'saga.compensation.skip_reason';
/**
 * On the links of a `saga.compensation` span: `compensated_step` (the forward step it undoes) or
 * `failed_step` (the step whose failure started the compensation).
 */
export const ATTR_SAGA_LINK_TYPE = 'saga.link.type';

// Two-phase commit attributes.
/** The transaction id (a UUID unless given). Also a baggage key. */
export const ATTR_TX_ID = 'tx.id';
/** The transaction's name (`transfer`). Also a baggage key. */
export const ATTR_TX_NAME = 'tx.name';
/** How the transaction ended: see {@link TwoPhaseCommitOutcome}. */
export const ATTR_TX_OUTCOME = 'tx.outcome';
/** Number of participants. */
export const ATTR_TX_PARTICIPANT_COUNT = 'tx.participant.count';
/** A participant's name. */
export const ATTR_TX_PARTICIPANT_NAME = 'tx.participant.name';
/** A participant's vote: `yes`, `no`, `error` or `timeout`. */
export const ATTR_TX_VOTE = 'tx.vote';
/** The reason a participant gave for a `no` vote. */
export const ATTR_TX_VOTE_REASON = 'tx.vote.reason';
/** The coordinator's decision: `commit` or `rollback`. */
export const ATTR_TX_DECISION = 'tx.decision';
/** How a participant's commit or rollback ended: `committed`, `rolled_back` or `failed`. */
export const ATTR_TX_PARTICIPANT_OUTCOME = 'tx.participant.outcome';
/** How many times a participant's commit or rollback was retried. */
export const ATTR_TX_RETRIES = 'tx.retries';
/** On a `2pc.attempt.failed` event: the attempt (1-based) it is about. */
export const ATTR_TX_ATTEMPT = 'tx.attempt';
/** On a `2pc.attempt.failed` event: whether another attempt follows. */
export const ATTR_TX_WILL_RETRY = 'tx.will_retry';
/** Number of `yes` votes, on the decision event. */
export const ATTR_TX_VOTES_YES = 'tx.votes.yes';
/** Number of votes other than `yes`, on the decision event. */
export const ATTR_TX_VOTES_NO = 'tx.votes.no';

// Events.
export const EVENT_SAGA_STEP_STARTED = 'saga.step.started';
export const EVENT_SAGA_STEP_COMPLETED = 'saga.step.completed';
export const EVENT_SAGA_STEP_FAILED = 'saga.step.failed';
export const EVENT_SAGA_COMPENSATION_STARTED = 'saga.compensation.started';
export const EVENT_SAGA_COMPENSATION_COMPLETED = 'saga.compensation.completed';
export const EVENT_SAGA_COMPENSATION_FAILED = 'saga.compensation.failed';
/** On `saga.compensate`: a completed step that has nothing to run (no compensation, or stopped). */
export const EVENT_SAGA_COMPENSATION_SKIPPED = 'saga.compensation.skipped';
/** On the `2pc` span, between the phases. */
export const EVENT_TX_DECISION = '2pc.decision';
export const EVENT_TX_ATTEMPT_FAILED = '2pc.attempt.failed';

/** Baggage keys a saga run sets. Give them to `OtelModule.forRoot({ baggageToAttributes })` of remote services. */
export const SAGA_BAGGAGE_KEYS: readonly string[] = [ATTR_SAGA_ID, ATTR_SAGA_NAME];
/** Baggage keys a two-phase commit sets. */
export const TWO_PHASE_COMMIT_BAGGAGE_KEYS: readonly string[] = [ATTR_TX_ID, ATTR_TX_NAME];
