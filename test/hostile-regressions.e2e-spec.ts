import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FetchRecorder, HostileApp, type ChildStats, type HostileChannel } from './support/hostile-harness.js';
import { rawHttpGet } from './support/hostile-wire.js';
import { isSafeText } from './support/hostile-oracle.js';
import { PlainAmqpPeer } from './support/rmq-plain.js';
import { startOtlpReceiver, type OtlpReceiver } from './support/otlp-receiver.js';

/**
 * Regression tests for hostile-header defects, each named for its defect, on real servers and
 * brokers with the application in a child process (test/fixtures/hostile-app.mjs), so that a
 * crash is a dead process, as it was for users:
 * - crash: a baggage property with a control byte reached a handler's `fetch`, undici refused the
 *   header from a diagnostics-channel hook and Node made it an uncaught exception (NATS, RabbitMQ);
 * - echo: RabbitMQ replies carried CR/LF and control characters copied from the inbound baggage;
 * - case: the RabbitMQ getter matched names case-sensitively (`Traceparent` was lost);
 * - forwarding: baggage properties that are not W3C (`a=b;;;;`) went out unchanged;
 * - HTTP: two `traceparent` lines, combined by Node into one value, were read as the first one
 *   when it was a later version (`cc-...-01-x, 00-...`);
 * - AMQP: an array nested in an array was read as a repeated header;
 * - baggage: a member named `__proto__` (a valid key) was lost, set as the prototype of the parsed entries.
 */

const RUN = randomUUID().slice(0, 8);
const NATS_URL = 'nats://127.0.0.1:4222';
const AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672';
const traceId = (): string => randomBytes(16).toString('hex');
const spanId = (): string => randomBytes(8).toString('hex');

const headerOf = (pairs: ReadonlyArray<readonly [string, unknown]> | undefined, name: string): unknown[] =>
  (pairs ?? []).filter(([key]) => key.toLowerCase() === name).map(([, value]) => value);
const asText = (value: unknown): string => (value instanceof Uint8Array ? Buffer.from(value).toString('latin1') : String(value));

describe('hostile-header regressions (application in a child process, real brokers)', () => {
  let receiver: OtlpReceiver;
  let recorder: FetchRecorder;
  const apps: HostileApp[] = [];
  let nextId = 1;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    recorder = await FetchRecorder.start();
  });

  afterEach(async () => {
    for (const app of apps.splice(0)) {
      await app.stop().catch(() => app.kill());
    }
  });

  afterAll(async () => {
    await recorder?.close();
    await receiver?.close();
  });

  async function start(channel: HostileChannel, names: Record<string, unknown> = {}): Promise<HostileApp> {
    const app = await HostileApp.start(channel, {
      HOSTILE_OTLP_URL: receiver.url,
      HOSTILE_FETCH_URL: recorder.url,
      HOSTILE_NAMES: JSON.stringify(names),
    });
    apps.push(app);
    return app;
  }

  /** Gives an uncaught exception time to end the process, then checks it is alive and every span ended. */
  async function expectAliveWithNoOpenSpan(app: HostileApp): Promise<void> {
    await sleep(300);
    expect(app.alive, `the application died (${JSON.stringify(app.exit)}):\n${app.output().slice(-3000)}`).toBe(true);
    let stats = await app.command<ChildStats>('stats');
    for (let waited = 0; stats.open > 0 && waited < 3000; waited += 100) {
      await sleep(100);
      stats = await app.command<ChildStats>('stats');
    }
    expect(stats.open, `spans that never ended: ${stats.openNames.join(', ')}`).toBe(0);
  }

  /** The outgoing fetch of input `id` reached the server with no control or non-ASCII byte in any header. */
  async function expectCleanFetch(app: HostileApp, id: number): Promise<Array<[string, string]>> {
    const handled = await app.waitHandled(id, 5000);
    expect(handled, `the handler did not run:\n${app.output().slice(-3000)}`).toBeDefined();
    expect(handled!.fetchError).toBeUndefined();
    expect(handled!.fetchStatus).toBe(200);
    const fetched = await recorder.wait(id, 5000);
    expect(fetched).toBeDefined();
    for (const [name, value] of fetched!.rawHeaders) {
      expect(isSafeText(value), `${name}: ${JSON.stringify(value)}`).toBe(true);
    }
    return fetched!.rawHeaders;
  }

  describe('crash: a baggage property with a control byte (k=v;p\\x01) reaches a handler that calls fetch', () => {
    let nc: NatsConnection | undefined;

    afterAll(async () => {
      await nc?.close();
    });

    it('NATS: the request is answered, its fetch goes out without the byte, the process lives, no span is left open', async () => {
      const subjects = { message: `hostile-regression.${RUN}.crash.msg`, event: `hostile-regression.${RUN}.crash.evt` };
      const app = await start('nats', subjects);
      nc = await connect({ servers: [NATS_URL] });
      const id = nextId++;
      const headers = natsHeaders();
      headers.set('traceparent', `00-${traceId()}-${spanId()}-01`);
      headers.set('baggage', 'k=v;p\u0001');
      const reply = await nc
        .request(subjects.message, JSON.stringify({ pattern: subjects.message, data: { id }, id: `r-${id}` }), { headers, timeout: 5000 })
        .catch((error: unknown) => error);
      await expectAliveWithNoOpenSpan(app);
      expect(reply).not.toBeInstanceOf(Error);
      await expectCleanFetch(app, id);
    });

    it('RabbitMQ: the request is answered, its fetch goes out without the byte, the process lives, no span is left open', async () => {
      const names = { queue: `hostile-regression-crash-${RUN}`, message: 'crash.msg', event: 'crash.evt' };
      const app = await start('rmq', names);
      const peer = await PlainAmqpPeer.connect(AMQP_URL);
      try {
        const id = nextId++;
        const reply = await peer
          .request(names.queue, names.message, { id }, { id: `r-${id}`, headers: { traceparent: `00-${traceId()}-${spanId()}-01`, baggage: 'k=v;p\u0001' } })
          .catch((error: unknown) => error);
        await expectAliveWithNoOpenSpan(app);
        expect(reply).not.toBeInstanceOf(Error);
        await expectCleanFetch(app, id);
      } finally {
        await peer.close();
      }
    });
  });

  it('echo: RabbitMQ reply headers never carry CR/LF or control characters from the inbound baggage', async () => {
    const names = { queue: `hostile-regression-echo-${RUN}`, message: 'echo.msg', event: 'echo.evt', quiet: 'echo.quiet', noFetch: ['echo.quiet'] };
    const app = await start('rmq', names);
    const peer = await PlainAmqpPeer.connect(AMQP_URL);
    try {
      for (const baggage of ['k=v;p=\r\nInjected: yes', 'k=v;p\u0007', 'k=v;p\u0000q', 'k=v;p\r', 'k=v,l=w;\nInjected: yes']) {
        const id = nextId++;
        const reply = await peer.request(names.queue, names.quiet, { id }, {
          id: `r-${id}`,
          headers: { traceparent: `00-${traceId()}-${spanId()}-01`, baggage },
        });
        const headers = Object.entries((reply.properties.headers ?? {}) as Record<string, unknown>);
        // The reply carries the consumer's context (so the check below looks at real headers).
        expect(headerOf(headers, 'traceparent')).toHaveLength(1);
        for (const [name, value] of headers) {
          expect(isSafeText(asText(value)), `reply header ${name}: ${JSON.stringify(asText(value))} (inbound baggage ${JSON.stringify(baggage)})`).toBe(true);
          expect(name.toLowerCase()).not.toBe('injected');
        }
      }
      await expectAliveWithNoOpenSpan(app);
    } finally {
      await peer.close();
    }
  });

  it('case: a RabbitMQ message with a "Traceparent" header (a non-Nest peer) continues that trace', async () => {
    const names = { queue: `hostile-regression-case-${RUN}`, message: 'case.msg', event: 'case.evt' };
    const app = await start('rmq', names);
    const peer = await PlainAmqpPeer.connect(AMQP_URL);
    try {
      for (const name of ['Traceparent', 'TRACEPARENT']) {
        const id = nextId++;
        const parent = { traceId: traceId(), spanId: spanId() };
        await peer.request(names.queue, names.message, { id }, { id: `r-${id}`, headers: { [name]: `00-${parent.traceId}-${parent.spanId}-01` } });
        const handled = await app.waitHandled(id, 5000);
        expect(handled?.traceId, `${name}: the handler's trace`).toBe(parent.traceId);
        await app.command('flush');
        const consumer = receiver.spans.find((span) => span.spanId === handled!.spanId);
        expect(consumer?.kind).toBe(5);
        expect(consumer?.parentSpanId).toBe(parent.spanId);
        const fetched = await expectCleanFetch(app, id);
        expect(headerOf(fetched, 'traceparent').map(String)[0]).toMatch(new RegExp(`^00-${parent.traceId}-[0-9a-f]{16}-0[13]$`));
      }
    } finally {
      await peer.close();
    }
  });

  it('forwarding: baggage properties that are not W3C (a=b;;;;, a=b;p=v v) go out without them', async () => {
    const subjects = { message: `hostile-regression.${RUN}.fwd.msg`, event: `hostile-regression.${RUN}.fwd.evt` };
    const app = await start('nats', subjects);
    const nc = await connect({ servers: [NATS_URL] });
    try {
      for (const [inbound, outbound] of [
        ['a=b;;;;', 'a=b'],
        ['a=b;p=v v;q', 'a=b;q'],
        ['a=b;=v,c=d;bad key', 'a=b,c=d'],
      ] as const) {
        const id = nextId++;
        const headers = natsHeaders();
        headers.set('traceparent', `00-${traceId()}-${spanId()}-01`);
        headers.set('baggage', inbound);
        await nc.request(subjects.message, JSON.stringify({ pattern: subjects.message, data: { id }, id: `r-${id}` }), { headers, timeout: 5000 });
        const fetched = await expectCleanFetch(app, id);
        expect(headerOf(fetched, 'baggage'), `inbound ${JSON.stringify(inbound)}`).toEqual([outbound]);
      }
    } finally {
      await nc.close();
    }
  });

  it('baggage: a member whose key is __proto__ (a valid token) is forwarded like any other', async () => {
    const subjects = { message: `hostile-regression.${RUN}.proto.msg`, event: `hostile-regression.${RUN}.proto.evt` };
    const app = await start('nats', subjects);
    const nc = await connect({ servers: [NATS_URL] });
    try {
      const id = nextId++;
      const headers = natsHeaders();
      headers.set('traceparent', `00-${traceId()}-${spanId()}-01`);
      headers.set('baggage', '__proto__=a;p,constructor=b,k=v');
      await nc.request(subjects.message, JSON.stringify({ pattern: subjects.message, data: { id }, id: `r-${id}` }), { headers, timeout: 5000 });
      const fetched = await expectCleanFetch(app, id);
      expect(headerOf(fetched, 'baggage')).toEqual(['__proto__=a;p,constructor=b,k=v']);
    } finally {
      await nc.close();
    }
  });

  it('HTTP: two traceparent lines, combined by Node into one value, start a new trace even when the first is a later version', async () => {
    const app = await start('express');
    const first = { traceId: traceId(), spanId: spanId() };
    const second = { traceId: traceId(), spanId: spanId() };
    for (const lines of [
      [`traceparent: cc-${first.traceId}-${first.spanId}-01-what-follows`, `traceparent: 00-${second.traceId}-${second.spanId}-01`],
      [`traceparent: 00-${first.traceId}-${first.spanId}-01`, `Traceparent: 00-${second.traceId}-${second.spanId}-01`],
    ]) {
      const id = nextId++;
      const response = await rawHttpGet(app.port, `/hostile/${id}`, Buffer.from(lines.map((line) => `${line}\r\n`).join(''), 'latin1'));
      expect(response.status).toBe(200);
      const handled = await app.waitHandled(id, 5000);
      expect(handled?.traceId, lines.join(' | ')).toBeDefined();
      expect([first.traceId, second.traceId], lines.join(' | ')).not.toContain(handled!.traceId);
    }
  });

  it('AMQP: an array nested in an array is no header value (not read as a repeated header)', async () => {
    const names = { queue: `hostile-regression-nested-${RUN}`, message: 'nested.msg', event: 'nested.evt' };
    const app = await start('rmq', names);
    const peer = await PlainAmqpPeer.connect(AMQP_URL);
    try {
      const parent = { traceId: traceId(), spanId: spanId() };
      const id = nextId++;
      await peer.request(names.queue, names.message, { id }, { id: `r-${id}`, headers: { traceparent: [[`00-${parent.traceId}-${parent.spanId}-01`]], baggage: [['k=v']] } });
      const handled = await app.waitHandled(id, 5000);
      expect(handled?.traceId).not.toBe(parent.traceId);
      const fetched = await expectCleanFetch(app, id);
      expect(headerOf(fetched, 'baggage')).toEqual([]);
    } finally {
      await peer.close();
    }
  });
});
