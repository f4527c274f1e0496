import { context, diag } from '@opentelemetry/api';
import { Observable } from 'rxjs';
import { consumerSpanEndFailed, consumerSpanStartFailed } from '../../otel.messages.js';
import { isIgnoredBy } from '../../utils/user-hook.js';
import {
  consumeInfo,
  endConsumerSpan,
  getConsumerState,
  resolveConsumePolicy,
  startConsumerSpan,
  type ConsumerState,
  type IncomingMessageDescription,
  type MessagingServerTracingOptions,
} from './messaging-tracing.js';

/** Nest's processing hook shapes (`Server#setOnProcessingStartHook` / `EndHook`). */
export type ProcessingStartHook = (transportId: any, ctx: unknown, done: () => Promise<any>) => any;
export type ProcessingEndHook = (transportId: any, ctx: unknown) => void;

/** The part of Nest's `Server` the tracer reads. */
export interface HandlerLookup {
  getHandlerByPattern(pattern: string): { extras?: Record<string, unknown> } | null | undefined;
}

/**
 * CONSUMER spans for a Nest transport server, through the public processing hooks that every
 * transport calls around a message's whole handler pipeline (guards, interceptors, pipes,
 * handler, and the Observable it returns), on Nest 11 and 12.
 *
 * A server subclass owns one instance and wires it in four places:
 * - constructor: `super.setOnProcessingStartHook(tracer.startHook)` and the same for the end hook;
 * - `setOnProcessingStartHook` / `setOnProcessingEndHook` overrides: `tracer.chainStart(hook)`,
 *   so hooks set by others (e.g. @nestjs/observe) still run, inside our span;
 * - `handleEvent` override: `tracer.markEvent(ctx)` before `super.handleEvent(...)`;
 * - `send` override: `super.send(tracer.watchReply(stream$, endOnSettle), respond)`;
 * - around each reply's publish, where Nest 11 calls the end hook: `tracer.publishReply(ctx, packet, publish)`
 *   (NATS, RabbitMQ; the Kafka server ends its spans after the reply is published, its own way).
 */
export class ConsumerTracer<Ctx extends object> {
  private userStart?: ProcessingStartHook;
  private userEnd?: ProcessingEndHook;
  private readonly states = new WeakMap<object, ConsumerState>();
  private readonly events = new WeakSet<object>();
  /** Contexts whose end hook call comes from a reply that is not the last (see publishReply). */
  private readonly heldOpen = new WeakSet<object>();

  constructor(
    private readonly server: HandlerLookup,
    /** Reads the transport's context; `undefined` means "do not trace this one". */
    private readonly describe: (ctx: Ctx) => IncomingMessageDescription<any> | undefined,
    private readonly options: MessagingServerTracingOptions | undefined,
  ) {}

  chainStart(hook: ProcessingStartHook): void {
    this.userStart = hook;
  }

  chainEnd(hook: ProcessingEndHook): void {
    this.userEnd = hook;
  }

  /** Marks a transport context as an event (`@EventPattern`); anything else is request-reply. */
  markEvent(ctx: unknown): void {
    if (isObject(ctx)) {
      this.events.add(ctx);
    }
  }

  readonly startHook: ProcessingStartHook = (transportId, ctx, done) => {
    let state: ConsumerState | undefined;
    let spanContext;
    try {
      const description = isObject(ctx) ? this.describe(ctx as Ctx) : undefined;
      const isEvent = isObject(ctx) && this.events.has(ctx);
      if (description && isObject(ctx) && !this.isIgnored(description, isEvent, ctx)) {
        const handler = this.server.getHandlerByPattern(description.pattern);
        const policy = resolveConsumePolicy(handler, isEvent, this.options);
        const started = startConsumerSpan(description, isEvent, policy, this.options, ctx);
        state = started.state;
        spanContext = started.ctx;
        this.states.set(ctx, state);
      }
    } catch (err) {
      diag.error(consumerSpanStartFailed(), err);
    }
    const run = (): unknown => (this.userStart ? this.userStart(transportId, ctx, done) : done());
    if (!state || !spanContext) {
      return run();
    }
    const traced = state;
    const result = context.with(spanContext, run);
    if (isThenable(result)) {
      // Nest 12 runs the end hook when processing rejects; older versions may not. Ending here
      // too is safe: a span ends once.
      return result.then(undefined, (err: unknown) => {
        traced.error ??= err;
        this.end(ctx);
        throw err;
      });
    }
    return result;
  };

  readonly endHook: ProcessingEndHook = (transportId, ctx) => {
    if (!(isObject(ctx) && this.heldOpen.has(ctx))) {
      this.end(ctx);
    }
    this.userEnd?.(transportId, ctx);
  };

  /**
   * Publishes one reply of a request. Nest 12.1 runs the end hook once, when the handler's reply
   * stream has settled; Nest 11 (and 12.0) run it inside the publish of every reply (NATS,
   * RabbitMQ), which would end a streamed reply's span at its first value. An end hook called
   * from a reply that is not the last (`isDisposed`) leaves the span open (it ends when the stream
   * settles, see watchReply); the user's end hook still runs whenever Nest calls it. Nest 12.1
   * calls no hook in here, so this changes nothing there.
   */
  publishReply<T>(ctx: unknown, reply: unknown, publish: () => T): T {
    if (!isObject(ctx) || isLastReply(reply)) {
      return publish();
    }
    this.heldOpen.add(ctx);
    try {
      return publish();
    } finally {
      this.heldOpen.delete(ctx);
    }
  }

  /**
   * Returns the reply stream with a tap that keeps the first error for the span. The error
   * notification reaches this tap before Nest's end hook runs (the hook is a `finalize`).
   *
   * `endOnSettle`: the span also ends when the stream completes, errors or is unsubscribed, which
   * is when Nest 12.1 runs the end hook. Nest 11 runs it in the publish of each reply instead
   * (see publishReply), the last one published a tick after the stream settled; ending here gives
   * the span the same extent on both. Ending twice is harmless: a span ends once.
   */
  watchReply<T>(stream$: Observable<T>, endOnSettle = false): Observable<T> {
    const state = getConsumerState();
    if (!state) {
      return stream$;
    }
    // One Observable per reply rather than `tap` + `finalize` (two operators and their subscribers
    // per message). The teardown runs after complete, error or unsubscribe, as `finalize` would.
    return new Observable<T>((subscriber) => {
      const subscription = stream$.subscribe({
        next: (value) => subscriber.next(value),
        error: (err: unknown) => {
          state.error ??= err;
          subscriber.error(err);
        },
        complete: () => subscriber.complete(),
      });
      return endOnSettle
        ? () => {
            subscription.unsubscribe();
            this.endState(state);
          }
        : subscription;
    });
  }

  private isIgnored(description: IncomingMessageDescription<any>, isEvent: boolean, ctx: unknown): boolean {
    const ignore = this.options?.ignore;
    return ignore !== undefined && isIgnoredBy('server ignore predicate', ignore, consumeInfo(description, isEvent, ctx));
  }

  private end(ctx: unknown): void {
    const state = isObject(ctx) ? this.states.get(ctx) : undefined;
    if (!state) {
      return;
    }
    this.states.delete(ctx as object);
    this.endState(state);
  }

  private endState(state: ConsumerState): void {
    try {
      endConsumerSpan(state);
    } catch (err) {
      diag.error(consumerSpanEndFailed(), err);
    }
  }
}

/** Nest's last packet of a reply stream (its error packet included) carries `isDisposed`. */
function isLastReply(packet: unknown): boolean {
  return isObject(packet) && (packet as { isDisposed?: unknown }).isDisposed === true;
}

function isObject(value: unknown): value is object {
  return value !== null && (typeof value === 'object' || typeof value === 'function');
}

function isThenable(value: unknown): value is Promise<unknown> {
  return value !== null && typeof value === 'object' && typeof (value as Promise<unknown>).then === 'function';
}
