import type { ClientProviderOptions, CustomStrategy } from '@nestjs/microservices';
import { OtelClientRMQ, type OtelClientRmqOptions } from './otel-client-rmq.js';
import { OtelServerRMQ, type OtelServerRmqOptions } from './otel-server-rmq.js';

/**
 * Short form of `{ strategy: new OtelServerRMQ(options) }`, for `NestFactory.createMicroservice`
 * and `app.connectMicroservice`.
 *
 * @publicApi
 */
export function otelRmqStrategy(options: OtelServerRmqOptions = {}): CustomStrategy {
  return { strategy: new OtelServerRMQ(options) };
}

/**
 * Short form of `{ name, customClass: OtelClientRMQ, options }`, one entry of
 * `ClientsModule.register([...])`.
 *
 * @publicApi
 */
export function otelRmqClient(name: string | symbol, options: OtelClientRmqOptions): ClientProviderOptions {
  return { name, customClass: OtelClientRMQ, options };
}
