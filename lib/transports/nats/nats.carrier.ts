import { diag, type TextMapGetter, type TextMapSetter } from '@opentelemetry/api';
import { natsDriverNames } from '../../nest-compat.js';
import { validatingGetter } from '../../propagation/carrier.js';
import { maxFieldLength } from '../../propagation/header-values.js';
import { natsDriverMissing, natsHeaderNotWritten, natsHeadersNotCreated } from '../../otel.messages.js';

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
 * Reads trace context from NATS message headers. Names match case-insensitively (peers that
 * canonicalize MIME header names send `Traceparent`); every value of a repeated header is handed
 * over (as an array), and the validating layer in propagation/carrier.ts decides what a propagator
 * may see (a repeated `traceparent` is invalid; control characters and oversized values are
 * absent). Collecting stops early once the values are longer than that layer accepts. Headers
 * objects that throw read as "absent": extraction never throws.
 */
const rawNatsHeaderGetter: TextMapGetter<NatsHeaders | null | undefined> = {
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
      const limit = maxFieldLength(wanted);
      const found: string[] = [];
      let length = 0;
      for (const name of carrier.keys()) {
        if (typeof name !== 'string' || name.toLowerCase() !== wanted) {
          continue;
        }
        for (const value of carrier.values(name)) {
          length += typeof value === 'string' ? value.length : Infinity;
          if (length > limit) {
            return undefined;
          }
          found.push(value);
        }
      }
      return found.length === 0 ? undefined : found.length === 1 ? found[0] : found;
    } catch {
      return undefined;
    }
  },
};

/** {@link rawNatsHeaderGetter} behind the validating layer: what a propagator may read (text, or absent). */
export const natsHeaderGetter = validatingGetter(rawNatsHeaderGetter);

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
      diag.warn(natsHeaderNotWritten(key), err);
    }
  },
};

type HeadersFactory = () => NatsHeaders;

// `undefined`: not loaded yet; `null`: no driver found.
let headersFactory: HeadersFactory | null | undefined;
let loadedDriver: string | undefined;
let loading: Promise<void> | undefined;

/**
 * Loads the NATS driver's `headers()` factory: the driver the running Nest loads first
 * (`@nats-io/transport-node` for Nest 12, `nats` for Nest 11, see `natsDriverNames`), else the
 * other one. Called by the traced NATS client and server before they connect, so that
 * {@link createNatsHeaders} can stay synchronous on the message path. A dynamic `import()`, never a
 * static one, so the driver stays optional; the same statement works in the ESM and CommonJS builds.
 * Never rejects.
 */
export function loadNatsDriver(): Promise<void> {
  loading ??= (async () => {
    for (const name of natsDriverNames()) {
      try {
        const driver = (await import(name)) as { headers?: () => NatsHeaders; default?: { headers?: () => NatsHeaders } };
        const create = driver.headers ?? driver.default?.headers;
        if (typeof create === 'function') {
          headersFactory = () => create();
          loadedDriver = name;
          return;
        }
      } catch {
        // Try the next driver.
      }
    }
    headersFactory = null;
    diag.error(natsDriverMissing());
  })();
  return loading;
}

/** The package the headers factory came from, once {@link loadNatsDriver} found one. */
export function loadedNatsDriver(): string | undefined {
  return loadedDriver;
}

/**
 * A new, empty NATS headers object from the installed driver. `undefined` when the driver is not
 * loaded yet (see {@link loadNatsDriver}) or cannot be loaded (Nest could not talk NATS either).
 */
export function createNatsHeaders(): NatsHeaders | undefined {
  if (headersFactory === undefined) {
    void loadNatsDriver();
    return undefined;
  }
  try {
    return headersFactory?.() ?? undefined;
  } catch (err) {
    diag.error(natsHeadersNotCreated(), err);
    return undefined;
  }
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
