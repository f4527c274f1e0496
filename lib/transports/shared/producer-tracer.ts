import { context, type Context } from '@opentelemetry/api';
import { Observable } from 'rxjs';
import { closeFailsPendingRequests } from '../../nest-compat.js';

/** A started PRODUCER span: the context to publish in, and its exactly-once ender. */
export interface ProducerHandle {
  readonly ctx: Context;
  end(error?: unknown, errorType?: string): void;
}

/** `error.type` of a `send()` the caller abandoned before any reply (rxjs `timeout()`, unsubscribe). */
export const SEND_CANCELLED = 'cancelled';

/**
 * `error.type` of a `send()` still waiting for its last reply when its client was closed, on a
 * Nest whose `close()` leaves such a request pending (Nest 11, 12.0): the caller gets nothing,
 * the span ends all the same. Nest 12.1 fails the request instead, and its span gets that error.
 */
export const SEND_CLIENT_CLOSED = 'client_closed';

/**
 * `error.type` of a `send()` still waiting for its reply when the connection dropped, where the
 * reply cannot survive the drop (RabbitMQ's direct reply-to: the reply goes to the channel the
 * request was sent on, which is gone). Nest leaves such a request pending; the span ends at the
 * drop all the same.
 */
export const SEND_CONNECTION_LOST = 'connection_lost';

/** The `send()` PRODUCER spans of one client that have not ended yet. */
export class PendingRequests {
  private readonly open = new Set<ProducerHandle>();

  /** The same handle, forgotten once it ends. */
  track(producer: ProducerHandle): ProducerHandle {
    const open = this.open;
    open.add(producer);
    return {
      ctx: producer.ctx,
      end(error?: unknown, errorType?: string) {
        open.delete(producer);
        producer.end(error, errorType);
      },
    };
  }

  /** Ends every span still open with ERROR `client_closed`: the client was closed under them. */
  endAllClosed(): void {
    this.endAll(SEND_CLIENT_CLOSED);
  }

  /** Ends every span still open with ERROR and `errorType`. */
  endAll(errorType: string): void {
    const open = [...this.open];
    this.open.clear();
    for (const producer of open) {
      producer.end(undefined, errorType);
    }
  }
}

/**
 * The pending-request registry a traced client needs: one on a Nest whose `close()` leaves requests
 * in flight pending (see `closeFailsPendingRequests`), so that `close()` can end their PRODUCER
 * spans, which would otherwise stay open for good; none where Nest fails them itself. What the
 * callers see is Nest's behaviour either way.
 */
export function pendingRequestsFor(client: object): PendingRequests | undefined {
  return closeFailsPendingRequests(client) ? undefined : new PendingRequests();
}

/**
 * Traces one `ClientProxy#send()` (request-reply). The PRODUCER span starts when the caller
 * subscribes (Nest's `send` is cold: nothing is published before), the source is subscribed in
 * the span's context (so the request is serialized and its headers written there), and the span
 * ends at the last reply, an error reply, or an unsubscription before any reply (`cancelled`).
 * Replies reach the caller's code in the caller's own context, not the span's or the connection's.
 * `start` returning undefined (our failure) sends the request untraced. With `pending`, the span
 * is known to the client's `close()` until it ends.
 */
export function traceRequestReply<T>(
  source: Observable<T>,
  start: () => ProducerHandle | undefined,
  recordable: (error: unknown) => unknown = (error) => error,
  pending?: PendingRequests,
): Observable<T> {
  return new Observable<T>((subscriber) => {
    const caller = context.active();
    const started = start();
    if (!started) {
      return source.subscribe(subscriber);
    }
    const producer = pending ? pending.track(started) : started;
    let replied = false;
    const subscription = context.with(producer.ctx, () =>
      source.subscribe({
        next: (value) => {
          replied = true;
          context.with(caller, () => subscriber.next(value));
        },
        error: (err: unknown) => {
          producer.end(recordable(err));
          context.with(caller, () => subscriber.error(err));
        },
        complete: () => {
          producer.end();
          context.with(caller, () => subscriber.complete());
        },
      }),
    );
    return () => {
      subscription.unsubscribe();
      // After the last reply or an error the span has ended already, and this does nothing.
      producer.end(undefined, replied ? undefined : SEND_CANCELLED);
    };
  });
}

/**
 * Traces one `ClientProxy#emit()`. Nest's `emit` is hot (it connects and publishes at once, on a
 * Subject-backed connectable), so it is called inside the span's context and one more observer
 * ends the span when the broker accepted the message or the publish failed.
 */
export function traceEmit<T>(
  emit: () => Observable<T>,
  producer: ProducerHandle,
  recordable: (error: unknown) => unknown = (error) => error,
): Observable<T> {
  let result: Observable<T>;
  try {
    result = context.with(producer.ctx, emit);
  } catch (err) {
    producer.end(recordable(err));
    throw err;
  }
  result.subscribe({ error: (err: unknown) => producer.end(recordable(err)), complete: () => producer.end() });
  return result;
}
