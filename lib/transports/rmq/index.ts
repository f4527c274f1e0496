export { OtelServerRMQ, type OtelServerRmqOptions } from './otel-server-rmq.js';
export { OtelClientRMQ, RMQ_CANCELLED_ERROR_TYPE, type OtelClientRmqOptions } from './otel-client-rmq.js';
export { rmqHeaderGetter, rmqHeaderSetter, type RmqHeaders } from './rmq.carrier.js';
export { otelRmqClient, otelRmqStrategy } from './rmq.factory.js';
