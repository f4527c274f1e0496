import { createRequire } from 'node:module';
import { diag, type TextMapGetter, type TextMapSetter } from '@opentelemetry/api';

/**
 * The part of a NATS `MsgHdrs` the carrier uses. Both drivers Nest loads (`@nats-io/transport-node`
 * 3.x for Nest 12, `nats` 2.x for Nest 11) satisfy it; a structural type keeps the published
 * declarations free of either driver, which stays an optional peer.
 */
export interface NatsHeaders {
  keys(): string[];
  values(key: string): string[];
  set(key: string, value: string): void;
  append(key: string, value: string): void;
  delete(key: string): void;
}

/**
 * A header whose values add up to more than this many characters is ignored on extraction. W3C
 * trace context fields are far shorter, and 8192 bytes is the W3C baggage limit.
 */
const MAX_HEADER_LENGTH = 8192;

/** Header fields that must appear once (W3C Trace Context): a duplicated one is invalid. */
const SINGLE_VALUED = new Set(['traceparent']);

/**
 * Reads trace context from NATS message headers. Names match case-insensitively (peers that
 * canonicalize MIME header names send `Traceparent`). Missing headers, a duplicated `traceparent`
 * (invalid per W3C, so the message starts a new trace), oversized values and headers objects that
 * throw all read as "absent": extraction never throws.
 */
export const natsHeaderGetter: TextMapGetter<NatsHeaders | null | undefined> = {
  keys(carrier) {
    try {
      const keys = carrier?.keys();
      return Array.isArray(keys) ? keys.filter((key) => typeof key === 'string') : [];
    } catch {
      return [];
    }
  },
  get(carrier, key) {
    if (!carrier) {
      return undefined;
    }
    try {
      const wanted = key.toLowerCase();
      const found: string[] = [];
      let length = 0;
      for (const name of carrier.keys()) {
        if (typeof name !== 'string' || name.toLowerCase() !== wanted) {
          continue;
        }
        for (const value of carrier.values(name)) {
          length += typeof value === 'string' ? value.length : Infinity;
          if (length > MAX_HEADER_LENGTH) {
            return undefined;
          }
          found.push(value);
        }
      }
      if (found.length === 0 || (found.length > 1 && SINGLE_VALUED.has(wanted))) {
        return undefined;
      }
      return found.length === 1 ? found[0] : found;
    } catch {
      return undefined;
    }
  },
};

/**
 * Writes trace context into NATS message headers, replacing any value of the same name. A value
 * the driver rejects (NATS headers cannot hold CR or LF) is skipped and logged: the message still
 * goes out.
 */
export const natsHeaderSetter: TextMapSetter<NatsHeaders | null | undefined> = {
  set(carrier, key, value) {
    if (!carrier) {
      return;
    }
    try {
      // A differently-cased copy (e.g. `Traceparent` from a forwarded headers object) would make
      // the field look duplicated to the receiver.
      const wanted = key.toLowerCase();
      for (const name of carrier.keys()) {
        if (name !== key && name.toLowerCase() === wanted) {
          carrier.delete(name);
        }
      }
      carrier.set(key, value);
    } catch (err) {
      diag.warn(`otel-nest: could not write the NATS header "${key}"; the message goes out without it.`, err);
    }
  },
};

type HeadersFactory = () => NatsHeaders;

// `undefined`: not looked up yet; `null`: no driver found.
let headersFactory: HeadersFactory | null | undefined;

/**
 * A new, empty NATS headers object from the installed driver: `@nats-io/transport-node` (what
 * Nest 12 loads), else `nats` (Nest 11). Loaded on first use, never imported statically, so the
 * driver stays optional. `undefined` when neither can be loaded (Nest could not talk NATS either).
 */
export function createNatsHeaders(): NatsHeaders | undefined {
  if (headersFactory === undefined) {
    headersFactory = loadHeadersFactory();
  }
  try {
    return headersFactory?.();
  } catch (err) {
    diag.error('otel-nest: could not create NATS headers; the message goes out without trace context.', err);
    return undefined;
  }
}

function loadHeadersFactory(): HeadersFactory | null {
  const require = createRequire(import.meta.url);
  for (const name of ['@nats-io/transport-node', 'nats']) {
    try {
      const driver = require(name) as { headers?: () => NatsHeaders };
      if (typeof driver.headers === 'function') {
        const create = driver.headers;
        return () => create();
      }
    } catch {
      // Try the next driver.
    }
  }
  diag.error(
    'otel-nest: neither @nats-io/transport-node nor nats could be loaded; NATS messages go out without trace context.',
  );
  return null;
}

/**
 * A copy of `source` (when given) in a new headers object, so that writing trace context never
 * changes a headers object the application owns (a `NatsRecord` it may send again).
 */
export function copyNatsHeaders(source: NatsHeaders | null | undefined): NatsHeaders | undefined {
  const copy = createNatsHeaders();
  if (!copy || !source) {
    return copy ?? source ?? undefined;
  }
  for (const key of source.keys()) {
    for (const value of source.values(key)) {
      copy.append(key, value);
    }
  }
  return copy;
}
