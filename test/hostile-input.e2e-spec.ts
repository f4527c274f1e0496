import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostileInputs } from './support/hostile-inputs.js';
import { FetchRecorder, formatSummary, HostileApp, runHostile, type ChannelDriver, type HostileChannel, type HostileSummary } from './support/hostile-harness.js';
import { httpDriver, kafkaDriver, natsDriver, rmqDriver } from './support/hostile-channels.js';
import { RawNatsClient } from './support/hostile-wire.js';
import { startKafkaBroker, type KafkaBroker } from './support/kafka-broker.js';
import { startOtlpReceiver, type OtlpReceiver } from './support/otlp-receiver.js';

/**
 * Property-based hostile-input tests, end to end on every channel: seeded fast-check inputs
 * (test/support/hostile-inputs.ts) sent to a real Nest application in a child process
 * (test/fixtures/hostile-app.mjs) over real servers and brokers. Every handler makes an outgoing
 * `fetch` and replies. Per input: the application stays alive, the handler ran (unless Node's
 * HTTP parser or the NATS driver refused the input before any Nest code saw it), its span is a
 * fresh root or the continuation of the valid parent that came in, every span ended and was
 * exported, the fetch and the reply carry only well-formed trace context within the limits; and
 * the heap after GC is flat over the run (test/support/hostile-oracle.ts, hostile-harness.ts).
 *
 * HOSTILE_COUNT (inputs per channel), HOSTILE_SEED, HOSTILE_CHANNELS (comma list of express,
 * fastify, nats, rmq, kafka), HOSTILE_SUMMARY_DIR (JSON summaries), HOSTILE_TIMEOUT_MS and
 * HOSTILE_PROGRESS are how `npm run fuzz` (scripts/fuzz.mjs) drives the same tests at larger counts.
 * HOSTILE_OTEL_NEST makes the application load otel-nest from another build than dist/.
 */

const SEED = Number(process.env.HOSTILE_SEED ?? 20_261_201);
const CHANNELS = new Set((process.env.HOSTILE_CHANNELS ?? 'express,fastify,nats,rmq,kafka').split(',').map((c) => c.trim()));
const DEFAULT_COUNTS: Record<HostileChannel, number> = { express: 300, fastify: 300, nats: 300, rmq: 300, kafka: 300 };
const countFor = (channel: HostileChannel): number => Number(process.env.HOSTILE_COUNT ?? DEFAULT_COUNTS[channel]);
/** Each channel its own stream of inputs from the one seed. */
const SEED_OFFSET: Record<HostileChannel, number> = { express: 0, fastify: 1, nats: 2, rmq: 3, kafka: 4 };
const RUN = randomUUID().slice(0, 8);
const timeoutFor = (channel: HostileChannel): number =>
  Number(process.env.HOSTILE_TIMEOUT_MS) || 90_000 + countFor(channel) * (channel === 'kafka' ? 60 : 25);

function report(summary: HostileSummary): void {
  const dir = process.env.HOSTILE_SUMMARY_DIR;
  if (dir) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `${summary.channel}.json`), `${JSON.stringify(summary, null, 2)}\n`);
  }
}

/** What every channel asserts about its run. */
function expectClean(summary: HostileSummary): void {
  const text = formatSummary(summary);
  expect(summary.violations, text).toEqual([]);
  expect(summary.alive, text).toBe(true);
  expect(summary.spansOpenAtEnd, text).toBe(0);
  expect(summary.spansEnded, text).toBe(summary.spansStarted);
  expect(summary.spansExported, text).toBe(summary.spansEnded);
  // The inputs exercise both sides: valid parents continued, hostile ones fresh roots.
  expect(summary.outcomes.continued + summary.outcomes['continued-unsampled'], text).toBeGreaterThan(0);
  expect(summary.outcomes['fresh-root'], text).toBeGreaterThan(0);
}

describe('hostile trace-context headers, end to end on every channel', () => {
  let receiver: OtlpReceiver;
  let recorder: FetchRecorder;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    recorder = await FetchRecorder.start();
  });

  afterAll(async () => {
    await recorder?.close();
    await receiver?.close();
  });

  const baseEnv = (): Record<string, string> => ({ HOSTILE_OTLP_URL: receiver.url, HOSTILE_FETCH_URL: recorder.url });

  async function run(channel: HostileChannel, app: HostileApp, driver: ChannelDriver, entryKind: number, eventShare: number): Promise<HostileSummary> {
    receiver.reset();
    const inputs = hostileInputs(countFor(channel), SEED + SEED_OFFSET[channel], eventShare);
    const summary = await runHostile({
      channel,
      seed: SEED + SEED_OFFSET[channel],
      app,
      driver,
      receiver,
      recorder,
      inputs,
      entryKind,
      concurrency: channel === 'kafka' ? 24 : 16,
      onProgress: process.env.HOSTILE_PROGRESS ? (done, s) => console.log(`${channel}: ${done}/${inputs.length}, ${s.violationCount} violation(s)`) : undefined,
    });
    report(summary);
    return summary;
  }

  /** A broker channel: request-reply and events (30 %), some of them linked, then a clean stop. */
  async function runBroker(channel: HostileChannel, app: HostileApp, driver: ChannelDriver): Promise<void> {
    const summary = await run(channel, app, driver, 5, 0.3);
    expectClean(summary);
    expect(summary.outcomes.linked, formatSummary(summary)).toBeGreaterThan(0);
  }

  describe.each(['express', 'fastify'] as const)('HTTP (%s): raw requests over TCP', (platform) => {
    it.runIf(CHANNELS.has(platform))(
      'per input: alive, handled (or refused by Node\'s parser), root or valid continuation, spans ended, well-formed fetch headers, flat heap',
      async () => {
        const app = await HostileApp.start(platform, baseEnv());
        try {
          const summary = await run(platform, app, httpDriver(app.port), 2, 0);
          expectClean(summary);
          // Control bytes in a header line are answered 400 by Node before Nest runs.
          expect(summary.outcomes.refused, formatSummary(summary)).toBeGreaterThan(0);
          expect(await app.stop()).toEqual({ code: 0, signal: null });
        } finally {
          app.kill();
        }
      },
      timeoutFor(platform),
    );
  });

  describe('NATS: driver and raw protocol, request-reply and events', () => {
    it.runIf(CHANNELS.has('nats'))(
      'per input: alive, handled (or refused by the driver\'s header decoding), root, continuation or link, spans ended, well-formed fetch and reply headers, flat heap',
      async () => {
        const prefix = `hostile.${RUN}`;
        const names = { message: `${prefix}.msg`, event: `${prefix}.evt` };
        const app = await HostileApp.start('nats', { ...baseEnv(), HOSTILE_NAMES: JSON.stringify(names) });
        let nc: NatsConnection | undefined;
        let raw: RawNatsClient | undefined;
        try {
          nc = await connect({ servers: ['nats://127.0.0.1:4222'] });
          raw = await RawNatsClient.connect();
          const driver = natsDriver({ ...names, inbox: `${prefix}.inbox`, nc, raw });
          await raw.ping();
          await runBroker('nats', app, driver);
          // Both ways onto the wire were used.
          expect(driver.viaDriver).toBeGreaterThan(0);
          expect(driver.viaRaw).toBeGreaterThan(0);
          expect(raw.protocolErrors).toEqual([]);
          expect(await app.stop()).toEqual({ code: 0, signal: null });
        } finally {
          raw?.close();
          await nc?.close();
          app.kill();
        }
      },
      timeoutFor('nats'),
    );
  });

  describe('RabbitMQ: amqplib with arbitrary header values, request-reply and events', () => {
    it.runIf(CHANNELS.has('rmq'))(
      'per input: alive, handled, root, continuation or link, spans ended, well-formed fetch and reply headers, flat heap',
      async () => {
        const names = { queue: `hostile-${RUN}`, message: 'hostile.msg', event: 'hostile.evt' };
        const app = await HostileApp.start('rmq', { ...baseEnv(), HOSTILE_NAMES: JSON.stringify(names) });
        const driver = await rmqDriver({ url: 'amqp://guest:guest@127.0.0.1:5672', ...names });
        try {
          await runBroker('rmq', app, driver);
          expect(await app.stop()).toEqual({ code: 0, signal: null });
        } finally {
          await driver.close();
          app.kill();
        }
      },
      timeoutFor('rmq'),
    );
  });

  describe('Kafka: kafkajs with Buffer/string headers and repeated keys, request-reply and events', () => {
    let broker: KafkaBroker | undefined;

    afterAll(async () => {
      await broker?.stop();
    });

    it.runIf(CHANNELS.has('kafka'))(
      'per input: alive, handled, root, continuation or link, spans ended, well-formed fetch and reply headers, flat heap',
      async () => {
        const names = { message: `hostile.msg.${RUN}`, event: `hostile.evt.${RUN}`, clientId: `hostile-${RUN}`, groupId: `hostile-${RUN}` };
        const replyTopic = `${names.message}.reply`;
        broker = await startKafkaBroker({ topics: [`${names.message}:3`, replyTopic, `${names.event}:3`] });
        const app = await HostileApp.start('kafka', {
          ...baseEnv(),
          HOSTILE_NAMES: JSON.stringify(names),
          HOSTILE_KAFKA_BROKERS: JSON.stringify(broker.brokers),
        });
        const driver = await kafkaDriver({ brokers: broker.brokers, ...names, replyTopic, groupId: `hostile-peer-${RUN}` });
        try {
          await runBroker('kafka', app, driver);
          expect(await app.stop()).toEqual({ code: 0, signal: null });
        } finally {
          await driver.close();
          app.kill();
        }
      },
      timeoutFor('kafka'),
    );
  });
});
