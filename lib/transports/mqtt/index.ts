import type { CustomStrategy } from '@nestjs/microservices';
import { OtelServerMqtt, type OtelServerMqttOptions } from './otel-server-mqtt.js';

export { OtelServerMqtt, type OtelServerMqttOptions } from './otel-server-mqtt.js';
export { OtelClientMqtt, type OtelClientMqttOptions } from './otel-client-mqtt.js';
export { mqttUserPropertiesGetter, mqttUserPropertiesSetter, type MqttUserProperties } from './mqtt.carrier.js';

/**
 * Short form of `{ strategy: new OtelServerMqtt(options) }`, for `createMicroservice` and
 * `connectMicroservice`.
 *
 * @publicApi
 */
export function otelMqtt(options: OtelServerMqttOptions = {}): CustomStrategy {
  return { strategy: new OtelServerMqtt(options) };
}
