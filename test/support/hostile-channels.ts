import amqp from 'amqplib';
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import { headers as natsHeaders, MsgHdrsImpl, type NatsConnection } from '@nats-io/transport-node';
import { Kafka, logLevel, type Consumer, type Producer } from 'kafkajs';
import type { ChannelDriver, SendResult } from './hostile-harness.js';
import { amqpHeaders, driverHeaderPairs, headerLines, headerValueBytes, kafkaHeaders, type HostileInput } from './hostile-inputs.js';
import { natsHeaderBlockPairs, RawNatsClient, rawHttpGet, type RawNatsMessage } from './hostile-wire.js';

/**
 * One driver per channel for the hostile-input tests: how an input goes out on the wire, what
 * counts as "the framework refused it" (never reaching otel-nest), and how its reply comes back.
 */

/** Replies one request waits for: resolvers by id. */
class Replies<T> {
  private readonly waiting = new Map<string, (reply: T) => void>();

  wait(id: string, timeoutMs: number, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`no reply to ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(id, (reply) => {
        clearTimeout(timer);
        this.waiting.delete(id);
        resolve(reply);
      });
    });
  }

  deliver(id: string, reply: T): void {
    this.waiting.get(id)?.(reply);
  }
}

const REPLY_TIMEOUT_MS = 20_000;
// Node's HTTP parser: a control byte (other than HTAB) in a header line, or more than 16 KiB of headers.
const HTTP_REFUSED_BYTES = /[\x00-\x08\x0a-\x1f\x7f]/;
const HTTP_MAX_HEADER_BYTES = 16 * 1024;

/** HTTP (express or fastify): raw requests over TCP, so that any byte can go into a header. */
export function httpDriver(port: number): ChannelDriver {
  return {
    async send(input: HostileInput): Promise<SendResult> {
      const lines = headerLines(input.headers);
      const response = await rawHttpGet(port, `/hostile/${input.id}`, lines);
      if (response.status === 200) {
        return { reply: { body: JSON.parse(response.body.toString('utf8')) }, responseLines: response.headerLines };
      }
      const values = input.headers.flatMap((header) => headerValueBytes(header.value)).map((bytes) => bytes.toString('latin1'));
      if ((response.status === 400 || response.status === 431) && (values.some((value) => HTTP_REFUSED_BYTES.test(value)) || lines.length > HTTP_MAX_HEADER_BYTES - 200)) {
        // A CR/LF inside a value ends the header line (or the whole head): what came before may
        // still be a complete request that Nest handles, before Node refuses the rest.
        return { refused: `Node's HTTP parser answered ${response.status}`, mayStillRun: values.some((value) => /[\r\n]/.test(value)), responseLines: response.headerLines };
      }
      return { error: `status ${response.status}: ${response.body.toString('utf8').slice(0, 300)}`, responseLines: response.headerLines };
    },
  };
}

export interface NatsDriverOptions {
  message: string;
  event: string;
  /** Subject prefix of the reply inboxes (`<prefix>.<id>`), subscribed to on `raw`. */
  inbox: string;
  nc: NatsConnection;
  raw: RawNatsClient;
}

/**
 * NATS: through the driver when it can carry the input (strings without CR/LF), else the raw
 * protocol. Replies come to an inbox the raw client subscribed to, so their header block is read
 * as it is on the wire. An input whose header block the driver cannot decode never reaches a
 * handler (Nest's `handleMessage` fails on `msg.headers`, with or without otel-nest): refused.
 */
export function natsDriver(options: NatsDriverOptions): ChannelDriver & { viaDriver: number; viaRaw: number } {
  const replies = new Replies<RawNatsMessage>();
  options.raw.subscribe(`${options.inbox}.*`, (message) => replies.deliver(message.subject, message));
  const driver = {
    viaDriver: 0,
    viaRaw: 0,
    async send(input: HostileInput): Promise<SendResult> {
      const subject = input.kind === 'message' ? options.message : options.event;
      const reply = input.kind === 'message' ? `${options.inbox}.${input.id}` : undefined;
      const payload = Buffer.from(
        JSON.stringify({ pattern: subject, data: { id: input.id }, ...(input.kind === 'message' ? { id: `r-${input.id}` } : {}) }),
      );
      const pairs = driverHeaderPairs(input.headers);
      let headers: ReturnType<typeof natsHeaders> | undefined;
      if (pairs) {
        try {
          headers = natsHeaders();
          for (const [name, value] of pairs) {
            headers.append(name, value);
          }
        } catch {
          headers = undefined;
        }
      }
      let refused: string | undefined;
      if (headers) {
        driver.viaDriver++;
      } else {
        driver.viaRaw++;
        const block = Buffer.concat([Buffer.from('NATS/1.0\r\n'), headerLines(input.headers), Buffer.from('\r\n')]);
        try {
          MsgHdrsImpl.decode(block);
        } catch (error) {
          refused = `the NATS driver cannot decode the header block (${error instanceof Error ? error.message : String(error)})`;
        }
      }
      const replied = reply && !refused ? replies.wait(reply, REPLY_TIMEOUT_MS, `#${input.id}`) : undefined;
      if (headers) {
        options.nc.publish(subject, payload, { headers: pairs!.length > 0 ? headers : undefined, reply });
      } else {
        options.raw.publishWithHeaders(subject, reply, headerLines(input.headers), payload);
      }
      if (refused) {
        return { refused };
      }
      if (!replied) {
        return {};
      }
      const message = await replied;
      const { pairs: replyHeaders, lines } = natsHeaderBlockPairs(message.headerBlock);
      const result: SendResult = {
        reply: { headers: replyHeaders, body: (JSON.parse(message.payload.toString('utf8')) as { response?: unknown }).response },
        responseLines: lines,
      };
      return result;
    },
  };
  return driver;
}

export interface RmqDriverOptions {
  url: string;
  queue: string;
  message: string;
  event: string;
}

/** RabbitMQ: amqplib with arbitrary header values; requests carry `replyTo` + `correlationId`, as Nest's client does. */
export async function rmqDriver(options: RmqDriverOptions): Promise<ChannelDriver & { close(): Promise<void> }> {
  const connection: ChannelModel = await amqp.connect(options.url);
  const channel: Channel = await connection.createChannel();
  const { queue: replyQueue } = await channel.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
  const replies = new Replies<ConsumeMessage>();
  await channel.consume(
    replyQueue,
    (message) => {
      const id = message?.properties.correlationId as string | undefined;
      if (message && id) {
        replies.deliver(id, message);
      }
    },
    { noAck: true },
  );
  return {
    async send(input: HostileInput): Promise<SendResult> {
      const headers = amqpHeaders(input.headers);
      const id = `r-${input.id}`;
      const content =
        input.kind === 'event'
          ? { pattern: options.event, data: { id: input.id } }
          : { pattern: options.message, data: { id: input.id }, id };
      try {
        channel.sendToQueue(options.queue, Buffer.from(JSON.stringify(content)), {
          headers,
          ...(input.kind === 'message' ? { replyTo: replyQueue, correlationId: id } : {}),
        });
      } catch (error) {
        // amqplib encodes a header table into a 64 KiB buffer: larger ones never leave the peer.
        if (error instanceof Error && /exceeds the 65536 byte/.test(error.message)) {
          return { refused: 'amqplib cannot encode more than 64 KiB of headers' };
        }
        throw error;
      }
      if (input.kind === 'event') {
        return {};
      }
      const message = await replies.wait(id, REPLY_TIMEOUT_MS, `#${input.id}`);
      return {
        reply: {
          headers: Object.entries((message.properties.headers ?? {}) as Record<string, unknown>),
          body: (JSON.parse(message.content.toString('utf8')) as { response?: unknown }).response,
        },
      };
    },
    close: () => connection.close(),
  };
}

export interface KafkaDriverOptions {
  brokers: string[];
  message: string;
  event: string;
  replyTopic: string;
  groupId: string;
}

/** Kafka: a kafkajs producer with string/Buffer headers and repeated keys; replies read by a consumer of the reply topic. */
export async function kafkaDriver(options: KafkaDriverOptions): Promise<ChannelDriver & { close(): Promise<void> }> {
  const kafka = new Kafka({ clientId: `${options.groupId}-peer`, brokers: options.brokers, logLevel: logLevel.NOTHING, retry: { initialRetryTime: 100, retries: 8 } });
  const producer: Producer = kafka.producer();
  const consumer: Consumer = kafka.consumer({ groupId: options.groupId, maxWaitTimeInMs: 50, heartbeatInterval: 500 });
  const replies = new Replies<{ headers: Array<[string, unknown]>; value: Buffer | null }>();
  await Promise.all([producer.connect(), consumer.connect()]);
  await consumer.subscribe({ topics: [options.replyTopic], fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      const id = message.headers?.kafka_correlationId?.toString();
      if (id) {
        replies.deliver(id, { headers: Object.entries(message.headers ?? {}), value: message.value });
      }
    },
  });
  return {
    replyHeaderAllowList: new Set(['kafka_correlationId', 'kafka_nest-is-disposed']),
    // Nest marks the last reply with a one-byte 0x00 value.
    binaryReplyHeaders: new Set(['kafka_nest-is-disposed']),
    async send(input: HostileInput): Promise<SendResult> {
      const headers: Record<string, string | Buffer | Array<string | Buffer>> = kafkaHeaders(input.headers);
      // Kafka carries header bytes as they are: what was sent is what the application receives.
      const delivered = Object.entries(headers);
      const value = JSON.stringify({ id: input.id });
      if (input.kind === 'event') {
        await producer.send({ topic: options.event, messages: [{ key: String(input.id), value, headers }] });
        return { delivered };
      }
      const id = `c-${input.id}`;
      const replied = replies.wait(id, REPLY_TIMEOUT_MS, `#${input.id}`);
      const request = { ...headers, kafka_correlationId: id, kafka_replyTopic: options.replyTopic, kafka_replyPartition: '0' };
      await producer.send({ topic: options.message, messages: [{ key: String(input.id), value, headers: request }] });
      const reply = await replied;
      return { delivered, reply: { headers: reply.headers, body: reply.value ? JSON.parse(reply.value.toString('utf8')) : undefined } };
    },
    close: async () => {
      await consumer.disconnect();
      await producer.disconnect();
    },
  };
}
