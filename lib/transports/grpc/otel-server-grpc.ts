import { ServerGrpc, type GrpcOptions } from '@nestjs/microservices';
import { noteTracedTransport } from '../../utils/traced-transport.js';
import {
  createGrpcServerInterceptor,
  resolveGrpcTracing,
  type GrpcCallSpan,
  type GrpcServerInterceptor,
  type GrpcTracingOptions,
} from './grpc-tracing.js';
import { GRPC_SERVER_SHUTDOWN, GRPC_STATUS_CANCELLED } from './grpc.attributes.js';
import { loadGrpcDriver } from './grpc.carrier.js';

/** Options of {@link OtelServerGrpc}: Nest's gRPC options, plus `otel`. */
export type OtelServerGrpcOptions = GrpcOptions['options'] & {
  /** Message events, legacy attribute names, response context: see {@link GrpcTracingOptions}. */
  otel?: GrpcTracingOptions;
};

/**
 * Nest's `ServerGrpc` with a SERVER span `package.Service/Method` around every call, of the four
 * kinds (unary, server streaming, client streaming, bidirectional; `@GrpcMethod`,
 * `@GrpcStreamMethod`, `@GrpcStreamCall`), continuing the caller's context read from the call's
 * metadata. The span is active in the handler and in the Observable pipeline it returns, so user
 * spans and outgoing calls nest under it, and ends with the status the server sends (or when
 * the call is cancelled, by the client, its deadline or a shutdown).
 *
 * ```ts
 * app.connectMicroservice({ strategy: new OtelServerGrpc({ package: 'orders.v1', protoPath, url: '0.0.0.0:5000' }) });
 * ```
 *
 * Built on grpc-js's own server interceptors (1.10 and later), passed to the grpc-js server
 * through Nest's `channelOptions`, first in the list, before any given there.
 *
 * @publicApi
 */
export class OtelServerGrpc extends ServerGrpc {
  /** The paths (`/package.Service/Method`) a Nest handler serves. */
  private readonly handledPaths = new Set<string>();
  private readonly tracing: ReturnType<typeof resolveGrpcTracing>;
  private interceptor?: GrpcServerInterceptor;
  /** The SERVER spans of the calls in flight. */
  private readonly openCalls = new Set<GrpcCallSpan>();

  constructor(options: OtelServerGrpcOptions) {
    const { otel, ...grpcOptions } = options;
    const tracing = resolveGrpcTracing(otel);
    // The interceptor is built in listen(), once grpc-js is loaded; grpc-js copies the list when
    // Nest creates its server (in listen() too), so this one delegating function goes in now.
    let self: OtelServerGrpc | undefined;
    const delegate: GrpcServerInterceptor = (methodDescriptor, call) =>
      self?.interceptor ? self.interceptor(methodDescriptor, call) : call;
    super(withServerInterceptor(grpcOptions, delegate));
    self = this;
    noteTracedTransport(this, 'gRPC server');
    this.tracing = tracing;
  }

  override async listen(callback: Parameters<ServerGrpc['listen']>[0]): Promise<void> {
    const driver = await loadGrpcDriver();
    if (driver) {
      this.interceptor = createGrpcServerInterceptor(driver, this.tracing, (path) => this.handledPaths.has(path), this.openCalls);
    }
    return super.listen(callback);
  }

  /**
   * Nest's close. Calls still in flight afterwards (Nest's default, `forceShutdown()`, drops them;
   * `gracefulShutdown: true` lets them finish) end their SERVER spans now, before the application
   * shuts the SDK down: grpc-js would report their cancellation a few ticks later, when nothing
   * exports spans any more. `rpc.status_code` is `CANCELLED` (what their callers get), and the span
   * is an ERROR with `error.type` {@link GRPC_SERVER_SHUTDOWN}: the server dropped the call.
   */
  override async close(): Promise<void> {
    try {
      await super.close();
    } finally {
      for (const call of [...this.openCalls]) {
        call.end(GRPC_STATUS_CANCELLED, 'server shut down', undefined, GRPC_SERVER_SHUTDOWN);
      }
    }
  }

  /** Nest's service mapping; remembers which methods have a handler (see `rpc.method=_OTHER`). */
  override async createService(grpcService: any, name: string): Promise<{}> {
    const service = await super.createService(grpcService, name);
    for (const method of Object.keys(service ?? {})) {
      const path: unknown = grpcService?.prototype?.[method]?.path;
      if (typeof path === 'string') {
        this.handledPaths.add(path);
      }
    }
    return service;
  }
}

/** `options` with `interceptor` first in `channelOptions.interceptors`; the application's objects are not changed. */
function withServerInterceptor<T extends { channelOptions?: Record<string, any> }>(options: T, interceptor: GrpcServerInterceptor): T {
  const channelOptions = { ...(options.channelOptions ?? {}) };
  const given: unknown = channelOptions['interceptors'];
  channelOptions['interceptors'] = [interceptor, ...(Array.isArray(given) ? given : [])];
  return { ...options, channelOptions };
}
