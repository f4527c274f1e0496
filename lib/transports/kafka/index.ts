import type { CustomStrategy } from '@nestjs/microservices';
import { OtelServerKafka, type OtelServerKafkaOptions } from './otel-server-kafka.js';

export { OtelServerKafka, type OtelServerKafkaOptions };
export { OtelClientKafka, type OtelClientKafkaOptions } from './otel-client-kafka.js';
export { kafkaHeaderGetter, kafkaHeaderSetter, type KafkaHeaderCarrier } from './kafka.carrier.js';

/**
 * Short form of `{ strategy: new OtelServerKafka(options) }`, for `NestFactory.createMicroservice`
 * and `app.connectMicroservice`.
 *
 * @publicApi
 */
export function otelKafka(options: OtelServerKafkaOptions): CustomStrategy {
  return { strategy: new OtelServerKafka(options) };
}
