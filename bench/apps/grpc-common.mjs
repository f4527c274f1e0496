// What the gRPC server and client processes of the grpc-unary scenario share: the proto, Nest's
// gRPC options, the floor's carrier and span attributes.
//   BENCH_GRPC_URL  host:port the server listens on / the client calls (the server picks a free
//                   port and reports it; the orchestrator passes it to the client)
import { fileURLToPath } from 'node:url';

export const GRPC_PACKAGE = 'bench.v1';
export const GRPC_SERVICE = 'OrderService';
export const GRPC_METHOD = 'GetOrder';
/** The fully-qualified method: the span name and `rpc.method` of both sides. */
export const GRPC_FULL_METHOD = `${GRPC_PACKAGE}.${GRPC_SERVICE}/${GRPC_METHOD}`;
export const PROTO_PATH = fileURLToPath(new URL('bench.proto', import.meta.url));

export function grpcOptions(url) {
  return { package: GRPC_PACKAGE, protoPath: PROTO_PATH, url };
}

/** The floor's carrier over grpc-js `Metadata` (header names come from the global propagator only). */
export const metadataSetter = { set: (m, k, v) => m.set(k, v) };
export const metadataGetter = {
  get: (m, k) => {
    const values = m?.get(k);
    return values?.length ? String(values[0]) : undefined;
  },
  keys: (m) => (m ? Object.keys(m.getMap()) : []),
};

/** `host:port` (IPv4 or a name; IPv6 in brackets) split, as otel-nest reads `url` and `getPeer()`. */
export function hostPort(value) {
  const colon = value.lastIndexOf(':');
  const host = value.slice(0, colon).replace(/^\[|\]$/g, '');
  return { host, port: Number(value.slice(colon + 1)) };
}
