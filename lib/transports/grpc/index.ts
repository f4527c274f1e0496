import type { CustomStrategy } from '@nestjs/microservices';
import { OtelServerGrpc, type OtelServerGrpcOptions } from './otel-server-grpc.js';

export { OtelServerGrpc, type OtelServerGrpcOptions } from './otel-server-grpc.js';
export { OtelClientGrpc, type OtelClientGrpcOptions } from './otel-client-grpc.js';
export type { GrpcCallInfo, GrpcCallResultInfo, GrpcTracingOptions } from './grpc-tracing.js';
export { grpcMetadataGetter, grpcMetadataSetter, type GrpcMetadata } from './grpc.carrier.js';

/**
 * Short form of `{ strategy: new OtelServerGrpc(options) }`, for `createMicroservice` and
 * `connectMicroservice`.
 *
 * @publicApi
 */
export function otelGrpc(options: OtelServerGrpcOptions): CustomStrategy {
  return { strategy: new OtelServerGrpc(options) };
}
