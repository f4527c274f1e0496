/**
 * The mark a traced transport (`OtelServerNats`, `OtelClientKafka`, ...) carries, with its label
 * for the startup summary (`NATS server`, `Kafka client`, ...). On the instance itself, not in a
 * registry: each application's summary lists the instances found in its own container, and a
 * registry would outlive them and mix applications. A `Symbol.for` key, so that a CommonJS and an
 * ESM copy of otel-nest in one process read each other's marks.
 */
const TRACED_TRANSPORT = Symbol.for('otel-nest.traced-transport');

export function noteTracedTransport(transport: object, what: string): void {
  // Not enumerable: it must not show up in spreads, JSON or Nest's inspection of the instance.
  Object.defineProperty(transport, TRACED_TRANSPORT, { value: what, configurable: true });
}

/** The summary label of a traced transport instance, or undefined for anything else. */
export function tracedTransportLabel(candidate: unknown): string | undefined {
  if (typeof candidate !== 'object' || candidate === null) {
    return undefined;
  }
  const label = (candidate as Record<symbol, unknown>)[TRACED_TRANSPORT];
  return typeof label === 'string' ? label : undefined;
}
