import amqp from 'amqplib';
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';

/**
 * A non-Nest RabbitMQ peer that uses only amqplib: it publishes Nest's JSON envelope itself and
 * reads what arrives, headers included, exactly as it is on the wire.
 */
export class PlainAmqpPeer {
  private constructor(
    private readonly connection: ChannelModel,
    readonly channel: Channel,
    /** A server-named exclusive queue this peer reads replies from. */
    private readonly replyQueue: string,
    private readonly replies: Map<string, (message: ConsumeMessage) => void>,
  ) {}

  static async connect(url: string): Promise<PlainAmqpPeer> {
    const connection = await amqp.connect(url);
    const channel = await connection.createChannel();
    const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
    const replies = new Map<string, (message: ConsumeMessage) => void>();
    await channel.consume(
      queue,
      (message) => {
        const correlationId = message?.properties.correlationId as string | undefined;
        if (message && correlationId) {
          replies.get(correlationId)?.(message);
        }
      },
      { noAck: true },
    );
    return new PlainAmqpPeer(connection, channel, queue, replies);
  }

  /**
   * Sends a Nest request (`{ pattern, data, id }`) to `queue` with the given AMQP headers and
   * resolves with the first reply message (Nest answers in one message unless it streams).
   */
  request(
    queue: string,
    pattern: string,
    data: unknown,
    options: { id: string; headers?: Record<string, unknown>; messageId?: string; timeoutMs?: number },
  ): Promise<ConsumeMessage> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.replies.delete(options.id);
        reject(new Error(`no reply to ${pattern} (${options.id}) within ${options.timeoutMs ?? 5000} ms`));
      }, options.timeoutMs ?? 5000);
      this.replies.set(options.id, (message) => {
        clearTimeout(timer);
        this.replies.delete(options.id);
        resolve(message);
      });
      this.channel.sendToQueue(queue, Buffer.from(JSON.stringify({ pattern, data, id: options.id })), {
        headers: options.headers,
        replyTo: this.replyQueue,
        correlationId: options.id,
        messageId: options.messageId,
      });
    });
  }

  /** Publishes a Nest event (`{ pattern, data }`, no id) to `queue`. */
  publishEvent(queue: string, pattern: string, data: unknown, headers?: Record<string, unknown>): void {
    this.channel.sendToQueue(queue, Buffer.from(JSON.stringify({ pattern, data })), { headers });
  }

  /** Consumes `queue` (asserted with `queueOptions`) and hands over every message. */
  async subscribe(
    queue: string,
    queueOptions: amqp.Options.AssertQueue,
    onMessage: (message: ConsumeMessage) => void,
  ): Promise<void> {
    await this.channel.assertQueue(queue, queueOptions);
    await this.channel.consume(queue, (message) => message && onMessage(message), { noAck: true });
  }

  async close(): Promise<void> {
    await this.connection.close();
  }
}
