import {
  createContextKey,
  createTraceState,
  isSpanContextValid,
  trace,
  TraceFlags,
  type Context,
  type SpanContext,
  type TextMapGetter,
  type TextMapPropagator,
  type TextMapSetter,
  type TraceState,
} from '@opentelemetry/api';
import { isTracingSuppressed } from '@opentelemetry/core';

/**
 * W3C Trace Context Level 2 (https://www.w3.org/TR/trace-context-2/), as a `TextMapPropagator`.
 * Where it differs from `@opentelemetry/core`'s `W3CTraceContextPropagator`, and why:
 * - the **random** trace flag (`0x02`, Level 2) is kept: on the remote span context, on the
 *   headers sent for any span of a trace that arrived with it (see {@link isRandomTrace}), and on
 *   spans otel-nest's SDK starts (random-flag.processor.ts). Core keeps only "sampled".
 * - **tracestate is validated as a whole header**: one invalid member (key or value grammar, key
 *   longer than 256, a duplicated key), more than 32 members, or an empty member list discards all
 *   of it, as the spec and its test suite (STRICT_LEVEL 2) require; core drops members one by one.
 * - **no empty `tracestate:`** header is ever sent.
 * - a valid `tracestate` longer than 512 characters is shortened the way the spec suggests
 *   (members longer than 128 characters first, then from the end); the API's `TraceState`
 *   would drop it entirely.
 * - other trace flags bits are not propagated (the spec: "vendors MUST set unused flags to zero").
 * The traceparent grammar is the spec's: lower-case hex only, version `ff` invalid, version `00`
 * exactly 55 characters, a higher version parsed by its first 55 characters when what follows
 * starts with `-`, all-zero ids invalid, leading and trailing spaces and tabs ignored.
 */

export const TRACE_PARENT_HEADER = 'traceparent';
export const TRACE_STATE_HEADER = 'tracestate';

/** Level 2's "random" trace flag: the right 7 bytes of the trace id are random. */
export const TRACE_FLAG_RANDOM = 0x02;
const KNOWN_FLAGS = TraceFlags.SAMPLED | TRACE_FLAG_RANDOM;

/** The trace id of a remote parent that arrived with the random flag (inherited by child contexts). */
const RANDOM_TRACE = createContextKey('otel-nest W3C random trace id');

const HEX_32 = /^[0-9a-f]{32}$/;
const HEX_16 = /^[0-9a-f]{16}$/;
const HEX_2 = /^[0-9a-f]{2}$/;
const ALL_ZERO = /^0+$/;

export interface ParsedTraceParent {
  readonly traceId: string;
  readonly spanId: string;
  /** Sampled and random bits only. */
  readonly traceFlags: number;
}

/** Parses a traceparent value by the Level 2 grammar; `undefined` when it is invalid. */
export function parseTraceParent(value: unknown): ParsedTraceParent | undefined {
  if (typeof value !== 'string') {
    return undefined;
  }
  const text = value.replace(/^[ \t]+|[ \t]+$/g, '');
  if (text.length < 55) {
    return undefined;
  }
  const version = text.slice(0, 2);
  if (!HEX_2.test(version) || version === 'ff') {
    return undefined;
  }
  if (version === '00' ? text.length !== 55 : text.length > 55 && text[55] !== '-') {
    return undefined;
  }
  if (text[2] !== '-' || text[35] !== '-' || text[52] !== '-') {
    return undefined;
  }
  const traceId = text.slice(3, 35);
  const spanId = text.slice(36, 52);
  const flags = text.slice(53, 55);
  if (!HEX_32.test(traceId) || ALL_ZERO.test(traceId) || !HEX_16.test(spanId) || ALL_ZERO.test(spanId) || !HEX_2.test(flags)) {
    return undefined;
  }
  return { traceId, spanId, traceFlags: Number.parseInt(flags, 16) & KNOWN_FLAGS };
}

// Level 2 key grammar: a simple key, or tenant@system.
const SIMPLE_KEY = /^[a-z][a-z0-9_\-*/]{0,255}$/;
const MULTI_TENANT_KEY = /^[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13}$/;
// value = 0*255(chr) nblk-chr; chr = %x20 / nblk-chr; nblk-chr = %x21-2B / %x2D-3C / %x3E-7E
const VALUE = /^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;
const MAX_MEMBERS = 32;
/** What a vendor should propagate at least; above it, the header is shortened before sending. */
export const TRACE_STATE_SEND_LIMIT = 512;

/**
 * Validates a (combined) tracestate header as a whole. Returns its members in order as
 * `key=value` strings, or `undefined` when the header must be discarded: any invalid member, a
 * duplicated key, more than 32 members, or no member at all. Empty members (`a=1,,b=2`) and
 * spaces or tabs around commas are allowed, as the grammar says.
 */
export function parseTraceState(value: unknown): string[] | undefined {
  if (typeof value !== 'string') {
    return undefined;
  }
  const members: string[] = [];
  const keys = new Set<string>();
  for (const raw of value.split(',')) {
    const member = raw.replace(/^[ \t]+|[ \t]+$/g, '');
    if (member === '') {
      continue;
    }
    const eq = member.indexOf('=');
    if (eq <= 0) {
      return undefined;
    }
    const key = member.slice(0, eq);
    const memberValue = member.slice(eq + 1);
    if (!(SIMPLE_KEY.test(key) || MULTI_TENANT_KEY.test(key)) || !VALUE.test(memberValue) || keys.has(key)) {
      return undefined;
    }
    keys.add(key);
    members.push(member);
    if (members.length > MAX_MEMBERS) {
      return undefined;
    }
  }
  return members.length > 0 ? members : undefined;
}

/**
 * `members` shortened to at most {@link TRACE_STATE_SEND_LIMIT} characters the way the spec
 * suggests: members longer than 128 characters go first, then members from the right. (The
 * OpenTelemetry API's `TraceState` discards a header over 512 characters entirely, so a longer,
 * valid header is shortened before it is built, not lost.)
 */
export function fitTraceState(members: readonly string[]): string[] {
  const length = (list: readonly string[]): number => list.reduce((sum, m) => sum + m.length, 0) + Math.max(0, list.length - 1);
  if (length(members) <= TRACE_STATE_SEND_LIMIT) {
    return [...members];
  }
  const fitted = members.filter((member) => member.length <= 128);
  while (fitted.length > 0 && length(fitted) > TRACE_STATE_SEND_LIMIT) {
    fitted.pop();
  }
  return fitted;
}

/**
 * The tracestate to send: `undefined` when empty, never a member that does not pass
 * {@link parseTraceState}, at most {@link TRACE_STATE_SEND_LIMIT} characters.
 */
export function traceStateToSend(state: TraceState | undefined): string | undefined {
  const serialized = state?.serialize();
  const members = serialized ? parseTraceState(serialized) : undefined;
  const fitted = members ? fitTraceState(members) : [];
  return fitted.length > 0 ? fitted.join(',') : undefined;
}

/**
 * Whether the trace of `spanContext` carries the random flag here: the span context has it, or
 * the trace arrived from a remote parent that had it (kept in `context` by {@link extract}).
 */
export function isRandomTrace(context: Context, spanContext: SpanContext): boolean {
  return (spanContext.traceFlags & TRACE_FLAG_RANDOM) !== 0 || context.getValue(RANDOM_TRACE) === spanContext.traceId;
}

export class W3CTraceContextPropagator implements TextMapPropagator {
  inject(context: Context, carrier: unknown, setter: TextMapSetter): void {
    const spanContext = trace.getSpanContext(context);
    if (!spanContext || isTracingSuppressed(context) || !isSpanContextValid(spanContext)) {
      return;
    }
    const flags = (spanContext.traceFlags & TraceFlags.SAMPLED) | (isRandomTrace(context, spanContext) ? TRACE_FLAG_RANDOM : 0);
    setter.set(carrier, TRACE_PARENT_HEADER, `00-${spanContext.traceId}-${spanContext.spanId}-0${flags.toString(16)}`);
    const traceState = traceStateToSend(spanContext.traceState);
    if (traceState !== undefined) {
      setter.set(carrier, TRACE_STATE_HEADER, traceState);
    }
  }

  extract(context: Context, carrier: unknown, getter: TextMapGetter): Context {
    const parsed = parseTraceParent(single(getter.get(carrier, TRACE_PARENT_HEADER)));
    if (!parsed) {
      return context;
    }
    const members = parseTraceState(combined(getter.get(carrier, TRACE_STATE_HEADER)));
    const fitted = members ? fitTraceState(members) : [];
    const spanContext: SpanContext = {
      traceId: parsed.traceId,
      spanId: parsed.spanId,
      traceFlags: parsed.traceFlags,
      isRemote: true,
      ...(fitted.length > 0 ? { traceState: createTraceState(fitted.join(',')) } : {}),
    };
    const extracted = trace.setSpanContext(context, spanContext);
    return parsed.traceFlags & TRACE_FLAG_RANDOM ? extracted.setValue(RANDOM_TRACE, parsed.traceId) : extracted;
  }

  fields(): string[] {
    return [TRACE_PARENT_HEADER, TRACE_STATE_HEADER];
  }
}

/** A header value that must occur once: an array of several is invalid. */
function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? (value.length === 1 ? value[0] : undefined) : value;
}

/** A list header's values combined, as HTTP combines a repeated field. */
function combined(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(',') : value;
}
