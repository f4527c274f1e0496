export { OtelServerKafka, type OtelServerKafkaOptions } from './otel-server-kafka.js';
export { OtelClientKafka, KAFKA_SEND_CANCELLED, type OtelClientKafkaOptions } from './otel-client-kafka.js';
export { kafkaHeaderGetter, kafkaHeaderSetter, type KafkaHeaderCarrier } from './kafka.carrier.js';
