import { randomUUID } from 'node:crypto';
import { context, type Context, type TextMapGetter, type TextMapPropagator, type TextMapSetter } from '@opentelemetry/api';

/**
 * The `x-request-id` bridge, for systems that already correlate by a request id: an incoming id
 * (or a generated one) travels in the context next to the trace, is recorded on the span that
 * receives the request (see `RequestIdSpanProcessor`), shows in the log lines (`request_id`), and
 * goes out on every outgoing call and message, through the registered propagator.
 */
export interface RequestIdOptions {
  /** Header read first, and the one written on outgoing calls and messages. Default `'x-request-id'`. */
  header?: string;
  /** Headers read, in order, when `header` has no valid value. Default `['x-correlation-id']`. */
  alternatives?: string[];
  /** Generate an id (`crypto.randomUUID()`) for a request or message that comes without a valid one. Default `false`. */
  generate?: boolean;
  /**
   * Span attribute the id is recorded as, on SERVER and CONSUMER spans. The semantic conventions
   * register none; default `'nestjs.request_id'` (this package's namespace, like `nestjs.pattern`).
   */
  attribute?: string;
  /** Write the id on outgoing HTTP calls, gRPC calls and messages. Default `true`. */
  propagate?: boolean;
}

/** {@link RequestIdOptions} with every default applied. */
export interface ResolvedRequestIdOptions {
  readonly header: string;
  readonly alternatives: readonly string[];
  readonly generate: boolean;
  readonly attribute: string;
  readonly propagate: boolean;
}

export const REQUEST_ID_DEFAULTS: ResolvedRequestIdOptions = {
  header: 'x-request-id',
  alternatives: ['x-correlation-id'],
  generate: false,
  attribute: 'nestjs.request_id',
  propagate: true,
};

/** Longest request id accepted (Heroku's router, one of the common sources, sends 20 to 200 characters). */
export const MAX_REQUEST_ID_LENGTH = 200;

/**
 * The context key of the request id. A global symbol, so that a CJS and an ESM copy of this
 * package in one process read the same value (context keys are symbols).
 */
const REQUEST_ID_KEY = Symbol.for('otel-nest.request-id');

/** Characters of a request id: letters, digits, the other HTTP token characters but `'` and `` ` ``, and `/ : = @ ;`. */
const REQUEST_ID_CHARS = /^[A-Za-z0-9!#$%&*+\-.^_|~/:=@;]+$/;

/**
 * Whether `value` is accepted as a request id: 1 to {@link MAX_REQUEST_ID_LENGTH} characters out
 * of letters, digits and `! # $ % & * + - . ^ _ | ~ / : = @ ;` (UUIDs, ULIDs, base64, AWS's
 * `Root=1-...;Parent=...`). Anything else (empty, spaces, quotes, markup, commas (how a repeated
 * header looks once combined), control characters, CR/LF, non-ASCII, overlong) is ignored as a
 * whole: never recorded, logged or sent on.
 */
export function isValidRequestId(value: unknown): value is string {
  return typeof value === 'string' && value.length <= MAX_REQUEST_ID_LENGTH && REQUEST_ID_CHARS.test(value);
}

/** The request id carried by `ctx` (default: the active context), if the bridge put one there. */
export function getRequestId(ctx: Context = context.active()): string | undefined {
  const value = ctx.getValue(REQUEST_ID_KEY);
  return typeof value === 'string' ? value : undefined;
}

/** `ctx` with `id` as its request id; an invalid id leaves `ctx` unchanged. */
export function setRequestId(ctx: Context, id: string): Context {
  return isValidRequestId(id) ? ctx.setValue(REQUEST_ID_KEY, id) : ctx;
}

export function resolveRequestIdOptions(option: boolean | RequestIdOptions | undefined): ResolvedRequestIdOptions | undefined {
  if (option === undefined || option === false) {
    return undefined;
  }
  const given: RequestIdOptions = option === true ? {} : option;
  return {
    header: (given.header ?? REQUEST_ID_DEFAULTS.header).toLowerCase(),
    alternatives: [...new Set((given.alternatives ?? REQUEST_ID_DEFAULTS.alternatives).map((name) => name.toLowerCase()))],
    generate: given.generate ?? REQUEST_ID_DEFAULTS.generate,
    attribute: given.attribute ?? REQUEST_ID_DEFAULTS.attribute,
    propagate: given.propagate ?? REQUEST_ID_DEFAULTS.propagate,
  };
}

/**
 * Reads the request id header on every extract (the HTTP server, the gRPC server, every traced
 * transport server, other instrumentations' extracts) and writes it on every inject. Placed last
 * in the composite propagator, so it adds to the context the trace propagators extracted.
 *
 * OtelModule adds it for `requestId`; with your own SDK, add it to your composite propagator
 * (and `RequestIdSpanProcessor` to your span processors).
 */
export class RequestIdPropagator implements TextMapPropagator {
  readonly options: ResolvedRequestIdOptions;
  private readonly reads: readonly string[];

  constructor(options: RequestIdOptions | ResolvedRequestIdOptions = {}) {
    this.options = resolveRequestIdOptions(options as RequestIdOptions)!;
    this.reads = [this.options.header, ...this.options.alternatives.filter((name) => name !== this.options.header)];
  }

  inject(ctx: Context, carrier: unknown, setter: TextMapSetter): void {
    if (!this.options.propagate) {
      return;
    }
    const id = getRequestId(ctx);
    if (id !== undefined) {
      setter.set(carrier, this.options.header, id);
    }
  }

  extract(ctx: Context, carrier: unknown, getter: TextMapGetter): Context {
    for (const name of this.reads) {
      const raw = getter.get(carrier, name);
      // A repeated header is no id (which one would it be?); the next name is tried.
      const value = Array.isArray(raw) ? (raw.length === 1 ? raw[0] : undefined) : raw;
      if (isValidRequestId(value)) {
        return ctx.setValue(REQUEST_ID_KEY, value);
      }
    }
    // An id the base context already has (extracting on top of a request's context) is kept.
    return this.options.generate && getRequestId(ctx) === undefined ? ctx.setValue(REQUEST_ID_KEY, randomUUID()) : ctx;
  }

  fields(): string[] {
    return [...this.reads];
  }
}
