import type * as NatsV3 from '@nats-io/transport-node';
import { NEST_MAJOR } from './nest-version.js';

/**
 * The NATS driver that the Nest under test loads, for the tests' plain NATS peer:
 * `@nats-io/transport-node` 3 for Nest 12, `nats` 2 for Nest 11. What the tests use of it is the
 * same in both (`connect`, `headers`, `subscribe` with a callback, `request`, `publish` of a
 * string, `flush`, `Msg#json` / `#string` / `headers`), so it is typed as v3's.
 */
export const NATS_DRIVER = NEST_MAJOR >= 12 ? '@nats-io/transport-node' : 'nats';

const driver = (await import(NATS_DRIVER)) as Pick<typeof NatsV3, 'connect' | 'headers'>;

export const connect: typeof NatsV3.connect = (options) => driver.connect(options);
export const natsHeaders: typeof NatsV3.headers = (...args) => driver.headers(...args);
export type { Msg, MsgHdrs, NatsConnection, Subscription } from '@nats-io/transport-node';
