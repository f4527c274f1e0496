import { RedisContext, Server, TcpContext } from '@nestjs/microservices';

/**
 * What otel-nest needs to know about the Nest it runs in, where Nest 11 and 12 differ
 * and behaviour alone cannot tell. Detected from Nest's classes (members its typings declare),
 * never from version strings. The only place that reads such members; lib/nest-compat.spec.ts
 * asserts every answer per Nest major (`npm test`: Nest 12, `npm run test:nest11`: Nest 11).
 *
 * Where the two majors differ in when they call a hook, the transports do not ask: they are written
 * so that either order gives the same spans (see `ConsumerTracer#publishReply`).
 *
 * Not counted as internals: the members Nest's `Server` and `ClientProxy` declare for transports
 * built on them (custom transporters extend these classes): `serializer`, `initializeSerializer`,
 * `normalizePattern`, `getHandlerByPattern`, `getHandlers`, `handleEvent`, `send`, `unwrap`,
 * and the transports' own overridable methods (`handleMessage`, `sendMessage`, `setupChannel`,
 * `registerDisconnectListener`). The traced transports override those with the signatures of
 * Nest 11 and 12's typings, so a change fails to compile.
 */

/**
 * Nest 12 loads its drivers with `import()` (`Server#loadPackage` became async, with
 * `loadPackageSynchronously` beside it), and in the same major moved NATS from `nats` 2 to
 * `@nats-io/transport-node` 3. Nest 11 has no `loadPackageSynchronously`.
 */
export function nestLoadsNatsIoTransport(): boolean {
  return typeof (Server.prototype as unknown as Record<string, unknown>)['loadPackageSynchronously'] === 'function';
}

/**
 * Whether Nest's NATS server catches what `handleMessage` rejects with (Nest 12 logs it; Nest 11
 * calls it from the subscription callback without a catch, so a rejection is unhandled). The same
 * Nest 12 change set as {@link nestLoadsNatsIoTransport}; lib/nest-compat.spec.ts checks both per major.
 */
export function natsServerCatchesMessageErrors(): boolean {
  return nestLoadsNatsIoTransport();
}

/**
 * The NATS drivers to try for headers objects, the one the running Nest loads first: its messages
 * and ours must use the same driver's headers.
 */
export function natsDriverNames(): readonly string[] {
  return nestLoadsNatsIoTransport() ? ['@nats-io/transport-node', 'nats'] : ['nats', '@nats-io/transport-node'];
}

/**
 * Whether `client.close()` fails the requests still waiting for a reply ('Connection closed'):
 * Nest 12.1's NATS, RabbitMQ and Kafka clients do, through `handleClose()`. Nest 11's (and 12.0's)
 * leave them pending, so the traced clients end those PRODUCER spans themselves.
 */
export function closeFailsPendingRequests(client: object): boolean {
  return typeof (client as { handleClose?: unknown }).handleClose === 'function';
}

/** A request hook as Nest's HTTP adapters call it (`setOnRequestHook`). */
export type AdapterRequestHook = (req: unknown, res: unknown, done: (err?: unknown) => void) => unknown;

/**
 * The request hook another module already set on a Nest HTTP adapter, so that ours can run it
 * instead of replacing it. Nest's `ExpressAdapter` and `FastifyAdapter` offer `setOnRequestHook`
 * but no getter, and keep the hook in the field `onRequestHook` (verified on 11.1.4, 11.2.x and
 * 12.x; lib/nest-compat.spec.ts fails if it moves). `undefined` when none is set.
 */
export function existingRequestHook(adapter: object): AdapterRequestHook | undefined {
  const hook = (adapter as { onRequestHook?: unknown }).onRequestHook;
  return typeof hook === 'function' ? (hook as AdapterRequestHook) : undefined;
}

/**
 * The queue Nest's RabbitMQ client or server uses: the `queue` option, or Nest's default when none
 * is given (`''`, a queue the broker names, on 11.1.4 as on 12). No public getter;
 * Nest keeps it in the protected field `queue` of `ClientRMQ` and `ServerRMQ` (verified on 11.1.4,
 * 11.2.x and 12.x; lib/nest-compat.spec.ts fails if it moves). `''` when absent.
 */
export function rmqQueue(transport: object): string {
  const queue = (transport as { queue?: unknown }).queue;
  return typeof queue === 'string' ? queue : '';
}

/**
 * Where Nest's RabbitMQ client expects replies: the `replyQueue` option, else direct reply-to.
 * Kept by Nest in the protected field `replyQueue` of `ClientRMQ` (same versions as above).
 * `undefined` when absent.
 */
export function rmqReplyQueue(client: object): string | undefined {
  const queue = (client as { replyQueue?: unknown }).replyQueue;
  return typeof queue === 'string' ? queue : undefined;
}

/**
 * Whether `RedisContext#getMetadata()` returns the packet's `metadata` (Nest 12). Nest 11's
 * `RedisContext` holds the channel only (its server drops the metadata after deserializing), so the
 * traced Redis server reads it from the deserialized packet itself.
 */
export function redisContextHasMetadata(): boolean {
  return typeof (RedisContext.prototype as unknown as Record<string, unknown>)['getMetadata'] === 'function';
}

/**
 * Whether Nest's Redis server catches what `handleMessage` rejects with (Nest 12 logs it through
 * `handleError`; Nest 11 calls it from the subscriber's message listener without a catch, so a
 * rejection is unhandled). The same Nest 12 change set as {@link nestLoadsNatsIoTransport};
 * lib/nest-compat.spec.ts checks it per major from Nest's own message handler.
 */
export function redisServerCatchesMessageErrors(): boolean {
  return nestLoadsNatsIoTransport();
}

/**
 * Whether Nest's TCP transport carries the packet envelope's `metadata`: Nest 12 hands it to the
 * server's `TcpContext` (`getMetadata()`, from `ReadPacket.metadata`). Nest 11's `TcpContext` has
 * only the socket and the pattern; its server parses the field with the rest of the JSON packet
 * and drops it, so the traced TCP server reads it from the deserialized packet instead.
 */
export function tcpContextCarriesMetadata(): boolean {
  return typeof (TcpContext.prototype as unknown as Record<string, unknown>)['getMetadata'] === 'function';
}
