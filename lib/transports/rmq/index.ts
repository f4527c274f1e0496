export { OtelServerRMQ, type OtelServerRmqOptions } from './otel-server-rmq.js';
export { OtelClientRMQ, type OtelClientRmqOptions } from './otel-client-rmq.js';
export { rmqHeaderGetter, rmqHeaderSetter, type RmqHeaders } from './rmq.carrier.js';
export { otelRmqClient, otelRmq } from './rmq.factory.js';
