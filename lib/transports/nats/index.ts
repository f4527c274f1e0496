import type { CustomStrategy } from '@nestjs/microservices';
import { OtelServerNats, type OtelServerNatsOptions } from './otel-server-nats.js';

export { OtelServerNats, type OtelServerNatsOptions } from './otel-server-nats.js';
export { OtelClientNats, type OtelClientNatsOptions } from './otel-client-nats.js';
export { natsHeaderGetter, natsHeaderSetter, type NatsHeaders } from './nats.carrier.js';

/**
 * Short form of `{ strategy: new OtelServerNats(options) }`, for `createMicroservice` and
 * `connectMicroservice`.
 *
 * @publicApi
 */
export function otelNats(options: OtelServerNatsOptions = {}): CustomStrategy {
  return { strategy: new OtelServerNats(options) };
}
