import type { CustomStrategy } from '@nestjs/microservices';
import { OtelServerTCP, type OtelServerTcpOptions } from './otel-server-tcp.js';

export { OtelServerTCP, type OtelServerTcpOptions } from './otel-server-tcp.js';
export { OtelClientTCP, type OtelClientTcpOptions } from './otel-client-tcp.js';
export { tcpMetadataGetter, tcpMetadataSetter, TCP_REPLY_CONTEXT_KEY, type TcpMetadata } from './tcp.carrier.js';

/**
 * Short form of `{ strategy: new OtelServerTCP(options) }`, for `createMicroservice` and
 * `connectMicroservice`.
 *
 * @publicApi
 */
export function otelTcp(options: OtelServerTcpOptions = {}): CustomStrategy {
  return { strategy: new OtelServerTCP(options) };
}
