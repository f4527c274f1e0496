// Transport options shared by the messaging server and client processes.
//   BENCH_TRANSPORT  nats | rmq | kafka | tcp | redis | mqtt
//   BENCH_PREFIX     subject / queue / topic / channel prefix of this config
//   BENCH_SERVER_URL TCP: host:port the server listens on (it picks a free port and reports it)
export const transport = process.env.BENCH_TRANSPORT ?? 'nats';
export const prefix = process.env.BENCH_PREFIX ?? 'bench';
export const traced = process.env.BENCH_TRACING === 'otel-nest';
/** The floor configuration: Nest's transport with bare spans around it (apps/floor.mjs). */
export const floor = process.env.BENCH_TRACING === 'floor';

export const NATS_SERVERS = [process.env.BENCH_NATS_URL ?? 'nats://127.0.0.1:4222'];
export const RMQ_URL = process.env.BENCH_RMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
export const KAFKA_BROKERS = (process.env.BENCH_KAFKA_BROKERS ?? '').split(',').filter(Boolean);
export const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
export const MQTT_URL = process.env.BENCH_MQTT_URL ?? 'mqtt://127.0.0.1:1883';
/** TCP: the server's address (set in the server by msg-server.mjs, in the client by the run). */
export const tcpTarget = () => new URL(`tcp://${process.env.BENCH_SERVER_URL ?? '127.0.0.1:3000'}`);

/**
 * Transports without message headers, whose context travels in Nest 12's packet envelope
 * `metadata`: written by the client's dispatch hook, read with `ctx.getMetadata()`.
 */
export const metadataTransport = transport === 'tcp' || transport === 'redis';

/** Request-reply pattern and event pattern (Kafka: topic names). */
export const RR_PATTERN = `${prefix}.rr`;
export const EVENT_PATTERN = `${prefix}.ev`;

export function transportOptions(role) {
  switch (transport) {
    case 'nats':
      return { servers: NATS_SERVERS };
    case 'rmq':
      return { urls: [RMQ_URL], queue: prefix, queueOptions: { durable: false, autoDelete: true } };
    case 'kafka':
      return {
        client: { clientId: `${prefix}-${role}`, brokers: KAFKA_BROKERS, logLevel: 0 },
        // The test broker answers a fetch only when its wait is over: keep the wait short.
        consumer: { groupId: `${prefix}-${role}`, maxWaitTimeInMs: 50, heartbeatInterval: 500 },
        ...(role === 'client' ? { producerOnlyMode: true } : {}),
      };
    case 'tcp': {
      const url = tcpTarget();
      return { host: url.hostname, port: Number(url.port) };
    }
    case 'redis': {
      const url = new URL(REDIS_URL);
      return { host: url.hostname, port: Number(url.port || 6379) };
    }
    case 'mqtt':
      // MQTT 5 for every configuration: the context travels in user properties.
      return { url: MQTT_URL, protocolVersion: 5 };
    default:
      throw new Error(`unknown transport ${transport}`);
  }
}

export async function otelImports(service) {
  if (!traced) return [];
  const { OtelModule } = await import('otel-nest');
  return [
    OtelModule.forRoot({
      serviceName: service,
      exporter: { url: process.env.BENCH_OTLP_URL },
      logSummary: false,
      http: false,
      ...(process.env.BENCH_NO_INTERCEPTOR ? { globalInterceptor: false } : {}),
      // otel-nest-metrics: a real OTLP push during the run, as production would.
      ...(process.env.BENCH_METRICS === '1' ? { metrics: { exporter: { url: process.env.BENCH_OTLP_METRICS_URL }, interval: 10_000 } } : {}),
    }),
  ];
}

export const nowUs = () => Number(process.hrtime.bigint() / 1000n);

/** Where the floor's spans say the broker is (server.address / server.port), as otel-nest's do. */
export function brokerAddress() {
  const url = {
    nats: () => new URL(NATS_SERVERS[0]),
    rmq: () => new URL(RMQ_URL),
    kafka: () => new URL(`kafka://${KAFKA_BROKERS[0]}`),
    tcp: tcpTarget,
    redis: () => new URL(REDIS_URL),
    mqtt: () => new URL(MQTT_URL),
  }[transport]();
  const port = Number(url.port || { nats: 4222, rmq: 5672, kafka: 9092, tcp: 3000, redis: 6379, mqtt: 1883 }[transport]);
  return { server: url.hostname, port };
}

/** The floor's destination of a pattern: the NATS subject, the RabbitMQ queue, the Kafka topic, the Redis channel, the MQTT topic. */
export const destinationOf = (pattern) => (transport === 'rmq' ? prefix : pattern);
