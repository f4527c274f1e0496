import type { Type } from '@nestjs/common';
import type { ClientProxy, ClientProviderOptions, CustomStrategy } from '@nestjs/microservices';
import { OtelClientRMQ, type OtelClientRmqOptions } from './otel-client-rmq.js';
import { OtelServerRMQ, type OtelServerRmqOptions } from './otel-server-rmq.js';

/**
 * Short form of `{ strategy: new OtelServerRMQ(options) }`, for `NestFactory.createMicroservice`
 * and `app.connectMicroservice`.
 *
 * @publicApi
 */
export function otelRmq(options: OtelServerRmqOptions = {}): CustomStrategy {
  return { strategy: new OtelServerRMQ(options) };
}

/**
 * Short form of `{ name, customClass: OtelClientRMQ, options }`, one entry of
 * `ClientsModule.register([...])`. It also spares the cast that Nest's own typings ask for: with
 * @nestjs/microservices 12.1, `customClass: ClientRMQ` (and so `OtelClientRMQ`) does not type-check
 * against `Type<ClientProxy>`, because `ClientProxy`'s status type parameter is invariant.
 *
 * @publicApi
 */
export function otelRmqClient(name: string | symbol, options: OtelClientRmqOptions): ClientProviderOptions {
  return { name, customClass: OtelClientRMQ as unknown as Type<ClientProxy>, options };
}
