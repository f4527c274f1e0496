/**
 * Connection settings of the five services: environment variables, with defaults for the brokers
 * and databases of a local machine. `.env.example` lists them all. Tracing is configured by the
 * standard `OTEL_*` variables (`OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_ENDPOINT`, ...).
 */
const env = process.env;

export const config = {
  /** Interface the gateway (HTTP) and orders (gRPC) listen on; `0.0.0.0` in containers. */
  host: env.HOST ?? '127.0.0.1',
  gateway: {
    port: Number(env.GATEWAY_PORT ?? 3000),
    /** `key:tenant` pairs: the API key a caller sends in `x-api-key`, and the tenant it belongs to. */
    apiKeys: new Map((env.API_KEYS ?? 'demo-key:acme').split(',').map((pair) => pair.split(':') as [string, string])),
  },
  orders: {
    /** Port of the orders service's gRPC server. */
    port: Number(env.ORDERS_PORT ?? 3001),
    /** Where the gateway calls it: a gRPC target, `host:port` (no scheme). */
    url: env.ORDERS_URL ?? `127.0.0.1:${env.ORDERS_PORT ?? 3001}`,
    /** The gateway's deadline for each call. */
    timeoutMs: 10_000,
  },
  postgres: { connectionString: env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test' },
  redis: { url: env.REDIS_URL ?? 'redis://127.0.0.1:6379' },
  rabbitmq: { urls: [env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672'], queue: env.INVENTORY_QUEUE ?? 'inventory' },
  nats: { servers: [env.NATS_URL ?? 'nats://127.0.0.1:4222'] },
  kafka: {
    brokers: (env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(','),
    /** How long a fetch waits for data. The local Kafka-protocol test broker needs 50 (see README). */
    maxWaitTimeInMs: Number(env.KAFKA_MAX_WAIT_MS ?? 5000),
  },
};
