import { describe, expect, it } from 'vitest';
import { isRedisGlob, redisDestination, redisServerAttributes } from './redis.attributes.js';

describe('Redis destinations', () => {
  it('knows glob patterns by their unescaped *, ? and [', () => {
    expect(['orders.*', 'orders.?.get', 'orders.[ab].get', '*', 'a\\\\*'].map(isRedisGlob)).toEqual([true, true, true, true, true]);
    expect(['orders.get', 'orders\\*', 'orders\\?x', 'a\\[b', ''].map(isRedisGlob)).toEqual([false, false, false, false, false]);
  });

  it('uses a glob subscription as the template, and the channel as the name', () => {
    expect(redisDestination('orders.7.get', 'orders.*.get')).toEqual({ destination: 'orders.7.get', template: 'orders.*.get' });
    // A plain subscription (also one made with PSUBSCRIBE), or none known: just the channel.
    expect(redisDestination('orders.get', 'orders.get')).toEqual({ destination: 'orders.get' });
    expect(redisDestination('orders.get')).toEqual({ destination: 'orders.get' });
    expect(redisDestination('orders*', 'orders\\*')).toEqual({ destination: 'orders*' });
  });

  it("reads server.address / server.port from the options, with Nest's defaults", () => {
    expect(redisServerAttributes({ host: '10.0.0.5', port: 6380 })).toEqual({ 'server.address': '10.0.0.5', 'server.port': 6380 });
    expect(redisServerAttributes({ host: 'cache', port: '6390' })).toEqual({ 'server.address': 'cache', 'server.port': 6390 });
    expect(redisServerAttributes({})).toEqual({ 'server.address': 'localhost', 'server.port': 6379 });
    expect(redisServerAttributes(undefined)).toEqual({ 'server.address': 'localhost', 'server.port': 6379 });
    expect(redisServerAttributes({ path: '/run/redis.sock', host: 'ignored' })).toEqual({ 'server.address': '/run/redis.sock' });
  });
});
