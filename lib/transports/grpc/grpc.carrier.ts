import { diag, type TextMapGetter, type TextMapSetter } from '@opentelemetry/api';
import { validatingGetter } from '../../propagation/carrier.js';
import { maxFieldLength } from '../../propagation/header-values.js';
import { grpcDriverMissing, grpcMetadataNotWritten } from '../../otel.messages.js';

/**
 * The part of grpc-js's `Metadata` the carrier uses. A structural type keeps the published
 * declarations free of `@grpc/grpc-js`, which stays an optional peer.
 */
export interface GrpcMetadata {
  get(key: string): unknown[];
  set(key: string, value: string): void;
  getMap(): Record<string, unknown>;
  clone(): GrpcMetadata;
}

/**
 * Reads trace context from gRPC metadata. Keys are lower case on the wire (grpc-js normalizes
 * them); every value of a repeated key is handed over (as an array) and the validating layer in
 * propagation/carrier.ts decides what a propagator may see (a repeated `traceparent` is invalid;
 * control characters and oversized values are absent). Binary values (`-bin` keys, Buffers) are
 * never text: a key whose values are not all strings reads as absent. Never throws.
 */
const rawGrpcMetadataGetter: TextMapGetter<GrpcMetadata | null | undefined> = {
  keys(carrier) {
    try {
      const map = carrier?.getMap();
      return map ? Object.keys(map).filter((key) => !key.endsWith('-bin')) : [];
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
      if (wanted.endsWith('-bin')) {
        return undefined;
      }
      const values = carrier.get(wanted);
      if (!Array.isArray(values) || values.length === 0) {
        return undefined;
      }
      const limit = maxFieldLength(wanted);
      let length = 0;
      for (const value of values) {
        if (typeof value !== 'string') {
          return undefined;
        }
        length += value.length;
        if (length > limit) {
          return undefined;
        }
      }
      return values.length === 1 ? (values[0] as string) : (values as string[]);
    } catch {
      return undefined;
    }
  },
};

/** {@link rawGrpcMetadataGetter} behind the validating layer: what a propagator may read (text, or absent). */
export const grpcMetadataGetter = validatingGetter(rawGrpcMetadataGetter);

/**
 * Writes trace context into gRPC metadata, replacing any value of the same key. A value grpc-js
 * rejects is skipped and logged: the call still goes out.
 */
export const grpcMetadataSetter: TextMapSetter<GrpcMetadata | null | undefined> = {
  set(carrier, key, value) {
    if (!carrier) {
      return;
    }
    try {
      carrier.set(key.toLowerCase(), value);
    } catch (err) {
      diag.warn(grpcMetadataNotWritten(key), err);
    }
  },
};

/** The grpc-js classes the interceptors are built from (structural: see {@link GrpcMetadata}). */
export interface GrpcDriver {
  InterceptingCall: new (nextCall: any, requester?: any) => any;
  ServerInterceptingCall?: new (nextCall: any, responder?: any) => any;
  Metadata: new () => GrpcMetadata;
}

// `undefined`: not loaded yet; `null`: not found.
let driver: GrpcDriver | null | undefined;
let loading: Promise<GrpcDriver | undefined> | undefined;

/**
 * Loads `@grpc/grpc-js` with a dynamic `import()`, never a static one, so that it stays an
 * optional peer; the same statement works in the ESM and CommonJS builds. Nest has loaded it
 * already (its gRPC transport requires it in its constructor), so this settles within a few
 * ticks. Never rejects; undefined (and one diag error) when it cannot be loaded.
 */
export function loadGrpcDriver(): Promise<GrpcDriver | undefined> {
  loading ??= (async () => {
    try {
      const loaded = (await import('@grpc/grpc-js')) as unknown as Partial<GrpcDriver> & { default?: Partial<GrpcDriver> };
      const candidate = typeof loaded.InterceptingCall === 'function' ? loaded : loaded.default;
      if (candidate && typeof candidate.InterceptingCall === 'function' && typeof candidate.Metadata === 'function') {
        driver = candidate as GrpcDriver;
        return driver;
      }
    } catch {
      // Reported below.
    }
    driver = null;
    diag.error(grpcDriverMissing());
    return undefined;
  })();
  return loading;
}

/** The loaded driver, or undefined before {@link loadGrpcDriver} settled (or when it found none). */
export function loadedGrpcDriver(): GrpcDriver | undefined {
  if (driver === undefined) {
    void loadGrpcDriver();
  }
  return driver ?? undefined;
}
