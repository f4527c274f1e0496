import 'reflect-metadata';
import { ClientKafka, ClientNats, ClientRMQ, ClientRedis, ClientTCP, RedisContext, Server, ServerNats, ServerRMQ, ServerRedis, ServerTCP } from '@nestjs/microservices';
import { describe, expect, it } from 'vitest';
import { NATS_DRIVER } from '../test/support/nats-driver.js';
import { installedVersion, NEST_MAJOR } from '../test/support/nest-version.js';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import {
  closeFailsPendingRequests,
  existingRequestHook,
  natsDriverNames,
  natsServerCatchesMessageErrors,
  nestLoadsNatsIoTransport,
  redisContextHasMetadata,
  redisServerCatchesMessageErrors,
  rmqQueue,
  rmqReplyQueue,
  tcpContextCarriesMetadata,
} from './nest-compat.js';
import { loadedNatsDriver, loadNatsDriver } from './transports/nats/nats.carrier.js';

// Runs against Nest 12 (`npm test`) and Nest 11 (`npm run test:nest11`): each answer is checked
// against what that major is known to do, so a wrong detection fails on the version it affects.
describe(`nest-compat on @nestjs/microservices ${installedVersion('@nestjs/microservices')}`, () => {
  it('knows which NATS driver Nest loads, and loads its headers factory from that one', async () => {
    expect(nestLoadsNatsIoTransport()).toBe(NEST_MAJOR >= 12);
    expect(natsDriverNames()[0]).toBe(NEST_MAJOR >= 12 ? '@nats-io/transport-node' : 'nats');
    expect(NATS_DRIVER).toBe(natsDriverNames()[0]);
    await loadNatsDriver();
    expect(loadedNatsDriver()).toBe(natsDriverNames()[0]);
  });

  it("knows whether Nest's NATS server catches a rejected handleMessage (Nest 12) or leaves it unhandled (Nest 11)", () => {
    expect(natsServerCatchesMessageErrors()).toBe(NEST_MAJOR >= 12);
    // What the answer stands for, read from Nest's own subscription handler.
    const source = String((ServerNats.prototype as unknown as { getMessageHandler: unknown }).getMessageHandler);
    expect(/handleMessage\([^)]*\)\s*\.catch\(/.test(source)).toBe(natsServerCatchesMessageErrors());
  });

  it('knows whether close() fails the requests in flight (Nest 12.1) or leaves them pending (Nest 11)', () => {
    const clients = [
      new ClientNats({ servers: ['nats://127.0.0.1:1'] }),
      new ClientRMQ({ urls: ['amqp://127.0.0.1:1'], queue: 'nest-compat' }),
      new ClientKafka({ client: { brokers: ['127.0.0.1:1'] } }),
    ];
    for (const client of clients) {
      expect(closeFailsPendingRequests(client), client.constructor.name).toBe(NEST_MAJOR >= 12);
    }
  });

  it('the hook difference the consumer tracer absorbs: Nest 12.1 has runWithProcessingHooks, Nest 11 calls the end hook per reply', () => {
    // Not read by lib/ (ConsumerTracer#publishReply works either way); stated so that a Nest 11
    // release that gains it, or a Nest 12 that drops it, shows up here.
    const proto = Server.prototype as unknown as Record<string, unknown>;
    expect(typeof proto['runWithProcessingHooks']).toBe(NEST_MAJOR >= 12 ? 'function' : 'undefined');
  });

  it("knows whether RedisContext holds the packet metadata (Nest 12) or the channel only (Nest 11)", () => {
    expect(redisContextHasMetadata()).toBe(NEST_MAJOR >= 12);
    const ctx = new RedisContext(['orders', { traceparent: 'x' }] as unknown as ConstructorParameters<typeof RedisContext>[0]);
    expect((ctx as { getMetadata?: () => unknown }).getMetadata?.()).toEqual(NEST_MAJOR >= 12 ? { traceparent: 'x' } : undefined);
    // What the answer stands for, read from Nest's own message handler: the context it builds.
    const source = String((ServerRedis.prototype as unknown as { handleMessage: unknown }).handleMessage);
    expect(/RedisContext\(\[pattern, packet\.metadata\]\)/.test(source)).toBe(redisContextHasMetadata());
  });

  it('knows whether the Redis client fails the requests in flight on close() (from Nest 11.2 on) or leaves them pending (11.1)', () => {
    const [major, minor] = installedVersion('@nestjs/microservices').split('.').map(Number) as [number, number];
    expect(closeFailsPendingRequests(new ClientRedis({ port: 1 }))).toBe(major >= 12 || minor >= 2);
  });

  it("knows whether Nest's Redis server catches a rejected handleMessage (Nest 12) or leaves it unhandled (Nest 11)", () => {
    expect(redisServerCatchesMessageErrors()).toBe(NEST_MAJOR >= 12);
    const source = String((ServerRedis.prototype as unknown as { getMessageHandler: unknown }).getMessageHandler);
    expect(/handleMessage\([^)]*\)\s*\.catch\(/.test(source)).toBe(redisServerCatchesMessageErrors());
  });

  it("reads the RabbitMQ queues Nest derives from the options (Nest has no getter), its defaults included", () => {
    // If Nest renames the fields, this fails on the version that did it.
    expect(rmqQueue(new ServerRMQ({ queue: 'orders' }))).toBe('orders');
    expect(rmqQueue(new ClientRMQ({ queue: 'orders' }))).toBe('orders');
    // Nest's default, on 11.1.4 as on 12: the empty name (a queue the broker names).
    expect(rmqQueue(new ServerRMQ({}))).toBe('');
    expect(rmqQueue(new ClientRMQ({}))).toBe('');
    expect(rmqReplyQueue(new ClientRMQ({ queue: 'orders' }))).toBe('amq.rabbitmq.reply-to');
    expect(rmqReplyQueue(new ClientRMQ({ queue: 'orders', replyQueue: 'replies' }))).toBe('replies');
  });

  it.each([
    ['ExpressAdapter', () => new ExpressAdapter()],
    ['FastifyAdapter', () => new FastifyAdapter()],
  ])('finds the request hook already set on %s (Nest has a setter, no getter)', async (_name, create) => {
    const adapter = create();
    expect(existingRequestHook(adapter)).toBeUndefined();
    const hook = (_req: unknown, _res: unknown, done: () => void): void => done();
    adapter.setOnRequestHook(hook);
    // If Nest renames the field, this fails on the version that did it.
    expect(existingRequestHook(adapter)).toBe(hook);
    await (adapter as { close?: () => Promise<unknown> }).close?.();
  });

  it("knows whether Nest's TCP transport carries the packet metadata (Nest 12) or drops it (Nest 11)", () => {
    expect(tcpContextCarriesMetadata()).toBe(NEST_MAJOR >= 12);
    // What the answer stands for, read from Nest's own TCP server and client.
    const handleMessage = String((ServerTCP.prototype as unknown as { handleMessage: unknown }).handleMessage);
    expect(/packet\.metadata/.test(handleMessage)).toBe(tcpContextCarriesMetadata());
    const client = new ClientTCP({}) as unknown as Record<string, unknown>;
    expect(typeof client['setOnDispatchHook']).toBe(tcpContextCarriesMetadata() ? 'function' : 'undefined');
  });
});
