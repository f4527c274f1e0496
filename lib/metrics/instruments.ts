import { ValueType, type Counter, type Histogram, type Meter, type UpDownCounter } from '@opentelemetry/api';

/** Instrumentation scope of the metrics otel-nest records (the same name as its tracer). */
export const METER_NAME = 'otel-nest';

// Metric names of the semantic conventions (HTTP and RPC durations are stable; the rest is still
// incubating in @opentelemetry/semantic-conventions, so spelled out here as lib/semconv.ts does).
export const METRIC_HTTP_SERVER_REQUEST_DURATION = 'http.server.request.duration';
export const METRIC_HTTP_SERVER_ACTIVE_REQUESTS = 'http.server.active_requests';
export const METRIC_HTTP_CLIENT_REQUEST_DURATION = 'http.client.request.duration';
export const METRIC_RPC_SERVER_CALL_DURATION = 'rpc.server.call.duration';
export const METRIC_RPC_CLIENT_CALL_DURATION = 'rpc.client.call.duration';
export const METRIC_MESSAGING_PROCESS_DURATION = 'messaging.process.duration';
export const METRIC_MESSAGING_CLIENT_OPERATION_DURATION = 'messaging.client.operation.duration';
export const METRIC_MESSAGING_CLIENT_SENT_MESSAGES = 'messaging.client.sent.messages';
export const METRIC_MESSAGING_CLIENT_CONSUMED_MESSAGES = 'messaging.client.consumed.messages';

/** The bucket boundaries (seconds) every duration metric of the conventions advises. */
export const DURATION_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];

function duration(meter: Meter, name: string, description: string): Histogram {
  return meter.createHistogram(name, {
    description,
    unit: 's',
    valueType: ValueType.DOUBLE,
    advice: { explicitBucketBoundaries: [...DURATION_BUCKETS] },
  });
}

/**
 * The instruments behind otel-nest's RED metrics, made once per meter provider. Recorded by the
 * hooks that make the spans (HTTP server and axios client, gRPC, the shared messaging tracers);
 * `fetch` durations come from the undici instrumentation, given the same provider.
 */
export class OtelNestInstruments {
  readonly httpServerDuration: Histogram;
  readonly httpServerActiveRequests: UpDownCounter;
  readonly httpClientDuration: Histogram;
  readonly rpcServerDuration: Histogram;
  readonly rpcClientDuration: Histogram;
  readonly messagingProcessDuration: Histogram;
  readonly messagingOperationDuration: Histogram;
  readonly messagingSentMessages: Counter;
  readonly messagingConsumedMessages: Counter;

  constructor(meter: Meter) {
    this.httpServerDuration = duration(meter, METRIC_HTTP_SERVER_REQUEST_DURATION, 'Duration of HTTP server requests.');
    this.httpServerActiveRequests = meter.createUpDownCounter(METRIC_HTTP_SERVER_ACTIVE_REQUESTS, {
      description: 'Number of active HTTP server requests.',
      unit: '{request}',
      valueType: ValueType.INT,
    });
    this.httpClientDuration = duration(meter, METRIC_HTTP_CLIENT_REQUEST_DURATION, 'Duration of HTTP client requests.');
    this.rpcServerDuration = duration(meter, METRIC_RPC_SERVER_CALL_DURATION, 'Measures the duration of an incoming Remote Procedure Call (RPC).');
    this.rpcClientDuration = duration(meter, METRIC_RPC_CLIENT_CALL_DURATION, 'Measures the duration of an outgoing Remote Procedure Call (RPC).');
    this.messagingProcessDuration = duration(meter, METRIC_MESSAGING_PROCESS_DURATION, 'Duration of processing operation.');
    this.messagingOperationDuration = duration(
      meter,
      METRIC_MESSAGING_CLIENT_OPERATION_DURATION,
      'Duration of messaging operation initiated by a producer or consumer client.',
    );
    this.messagingSentMessages = meter.createCounter(METRIC_MESSAGING_CLIENT_SENT_MESSAGES, {
      description: 'Number of messages producer attempted to send to the broker.',
      unit: '{message}',
      valueType: ValueType.INT,
    });
    this.messagingConsumedMessages = meter.createCounter(METRIC_MESSAGING_CLIENT_CONSUMED_MESSAGES, {
      description: 'Number of messages that were delivered to the application.',
      unit: '{message}',
      valueType: ValueType.INT,
    });
  }
}
