import type { CustomStrategy } from '@nestjs/microservices';
import { OtelServerRedis, type OtelServerRedisOptions } from './otel-server-redis.js';

export { OtelServerRedis, type OtelServerRedisOptions } from './otel-server-redis.js';
export { OtelClientRedis, type OtelClientRedisOptions } from './otel-client-redis.js';
export { REPLY_CONTEXT_KEY, redisMetadataGetter, redisMetadataSetter, type RedisPacketMetadata } from './redis.carrier.js';

/**
 * Short form of `{ strategy: new OtelServerRedis(options) }`, for `createMicroservice` and
 * `connectMicroservice`.
 *
 * @publicApi
 */
export function otelRedis(options: OtelServerRedisOptions = {}): CustomStrategy {
  return { strategy: new OtelServerRedis(options) };
}
