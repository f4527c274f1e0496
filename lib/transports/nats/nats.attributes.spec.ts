import { describe, expect, it } from 'vitest';
import { isNatsWildcard, natsDestination, natsServerAttributes } from './nats.attributes.js';

describe('NATS destinations', () => {
  it('knows wildcard subjects by their tokens', () => {
    expect(['probe.*.get', 'probe.>', '*', '>', 'a.*'].map(isNatsWildcard)).toEqual([true, true, true, true, true]);
    expect(['probe.1.get', 'probe*.get', 'a.b>', 'a.>b', ''].map(isNatsWildcard)).toEqual([false, false, false, false, false]);
  });

  it('uses a wildcard subscription as the template, and the subject as the name', () => {
    expect(natsDestination('probe.7.get', 'probe.*.get')).toEqual({ destination: 'probe.7.get', template: 'probe.*.get' });
    expect(natsDestination('probe.7.get', 'probe.>')).toEqual({ destination: 'probe.7.get', template: 'probe.>' });
    // A plain subscription, or none known: just the subject.
    expect(natsDestination('probe.7.get', 'probe.7.get')).toEqual({ destination: 'probe.7.get' });
    expect(natsDestination('probe.7.get')).toEqual({ destination: 'probe.7.get' });
  });

  it('flags reply inboxes temporary and anonymous, with the default or the configured prefix', () => {
    const inbox = { temporary: true, anonymous: true };
    expect(natsDestination('_INBOX.Vx9k2a.7')).toEqual({ destination: '_INBOX.Vx9k2a.7', ...inbox });
    expect(natsDestination('_INBOX.Vx9k2a.7', undefined, '')).toEqual({ destination: '_INBOX.Vx9k2a.7', ...inbox });
    expect(natsDestination('replies.x1', undefined, 'replies')).toEqual({ destination: 'replies.x1', ...inbox });
    expect(natsDestination('_INBOX.x1', undefined, 'replies')).toEqual({ destination: '_INBOX.x1' });
    expect(natsDestination('_INBOXES.x1')).toEqual({ destination: '_INBOXES.x1' });
    expect(natsDestination('orders._INBOX.x1')).toEqual({ destination: 'orders._INBOX.x1' });
  });

  it('reads server.address / server.port from the connection, the option, or Nest\'s default', () => {
    expect(natsServerAttributes(['nats://10.0.0.5:4333'])).toEqual({ 'server.address': '10.0.0.5', 'server.port': 4333 });
    expect(natsServerAttributes(undefined, '127.0.0.1:4222')).toEqual({ 'server.address': '127.0.0.1', 'server.port': 4222 });
    expect(natsServerAttributes(undefined)).toEqual({ 'server.address': 'localhost', 'server.port': 4222 });
  });
});
