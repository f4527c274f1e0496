import { ClientGrpcProxy, type GrpcOptions } from '@nestjs/microservices';
import type { ReplaySubject } from 'rxjs';
import type { ClientStatusSubject } from '../shared/client-status.js';
import { noteTracedTransport } from '../../utils/traced-transport.js';
import { createGrpcClientInterceptor, resolveGrpcTracing, type GrpcClientInterceptor, type GrpcTracingOptions } from './grpc-tracing.js';
import { grpcServerAttributes } from './grpc.attributes.js';
import { loadGrpcDriver } from './grpc.carrier.js';

/** Options of {@link OtelClientGrpc}: Nest's gRPC options, plus `otel`. */
export type OtelClientGrpcOptions = GrpcOptions['options'] & {
  /** Message events and legacy attribute names: see {@link GrpcTracingOptions} (`responseContext` is the server's). */
  otel?: GrpcTracingOptions;
};

/** Nest's default gRPC target (`GRPC_DEFAULT_URL`). */
const NEST_DEFAULT_URL = 'localhost:5000';

/**
 * Nest's `ClientGrpcProxy` with a CLIENT span `package.Service/Method` for every call made through
 * its services (`getService()`), of the four kinds, whose context (and the caller's baggage) goes
 * out in the call's metadata, written by the global propagator. The span starts when the call is
 * made (Nest makes it when the returned Observable is subscribed), as a child of the context it is
 * made in, and ends with the call's status: OK, an error status (ERROR with `error.type` the code),
 * `DEADLINE_EXCEEDED`, or `CANCELLED` when the subscriber unsubscribes first. Responses are
 * delivered in the caller's context.
 *
 * ```ts
 * ClientsModule.register([{ name: 'ORDERS', customClass: OtelClientGrpc, options: { package: 'orders.v1', protoPath, url } }]);
 * ```
 *
 * Built on a grpc-js client interceptor, passed to each grpc-js client through Nest's
 * `channelOptions`, first in `interceptors` (or in `interceptor_providers`, when those are given).
 *
 * @publicApi
 */
export class OtelClientGrpc extends ClientGrpcProxy {
  /**
   * Type-only, for `customClass` (see {@link ClientStatusSubject}): Nest types this client's
   * `_status$` as a subject of `never`, which `Type<ClientProxy>` does not accept; the intersection
   * is both. Nothing is emitted and Nest's field is untouched.
   */
  protected declare _status$: ReplaySubject<never> & ClientStatusSubject;

  constructor(options: OtelClientGrpcOptions) {
    const { otel, ...grpcOptions } = options;
    const interceptor = createGrpcClientInterceptor(
      resolveGrpcTracing(otel),
      grpcServerAttributes(typeof grpcOptions.url === 'string' && grpcOptions.url ? grpcOptions.url : NEST_DEFAULT_URL),
    );
    super(withClientInterceptor(grpcOptions, interceptor));
    // Nest has just loaded grpc-js itself: this settles long before the first call.
    void loadGrpcDriver();
    noteTracedTransport(this, 'gRPC client');
  }
}

/**
 * `options` with `interceptor` first among the client interceptors. grpc-js refuses
 * `interceptors` and `interceptor_providers` together, so it joins whichever the application used.
 */
function withClientInterceptor<T extends { channelOptions?: Record<string, any> }>(options: T, interceptor: GrpcClientInterceptor): T {
  const channelOptions = { ...(options.channelOptions ?? {}) };
  const providers: unknown = channelOptions['interceptor_providers'];
  if (Array.isArray(providers) && providers.length > 0) {
    channelOptions['interceptor_providers'] = [() => interceptor, ...providers];
  } else {
    const given: unknown = channelOptions['interceptors'];
    channelOptions['interceptors'] = [interceptor, ...(Array.isArray(given) ? given : [])];
  }
  return { ...options, channelOptions };
}
