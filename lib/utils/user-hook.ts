import type { Span } from '@opentelemetry/api';
import { diagLimited } from './diag-limited.js';
import { userHookFailed } from '../otel.messages.js';

/** A user's span hook (`requestHook`, `consumeHook`, ...): adds attributes or events to `span`. */
export type SpanHook<Info> = (span: Span, info: Info) => void;

/**
 * Calls a user's hook on a recording span. A hook that throws is logged (rate-limited, see
 * diagLimited) and otherwise ignored: the request or message goes on as if there were none.
 */
export function callSpanHook<Info>(name: string, hook: SpanHook<Info> | undefined, span: Span, info: Info): void {
  if (hook === undefined || !span.isRecording()) {
    return;
  }
  try {
    hook(span, info);
  } catch (error) {
    diagLimited('warn', userHookFailed(name), error);
  }
}

/**
 * A user's `ignore` predicate: true means "do not trace this one". A predicate that throws is
 * logged and counts as false (traced).
 */
export function isIgnoredBy<Info>(name: string, predicate: ((info: Info) => boolean) | undefined, info: Info): boolean {
  if (predicate === undefined) {
    return false;
  }
  try {
    return predicate(info) === true;
  } catch (error) {
    diagLimited('warn', userHookFailed(name), error);
    return false;
  }
}
