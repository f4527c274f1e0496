import { describe, expect, it } from 'vitest';
import { TCP_SYSTEM, tcpPeerAttributes, tcpRpcAttributes, tcpServerAttributes } from './tcp.attributes.js';

describe('TCP attributes', () => {
  it('names the RPC method after the Nest pattern, with the custom system name', () => {
    expect(TCP_SYSTEM).toBe('nestjs_tcp');
    expect(tcpRpcAttributes('{"cmd":"sum"}')).toEqual({
      'rpc.system.name': 'nestjs_tcp',
      'rpc.method': '{"cmd":"sum"}',
      'nestjs.pattern': '{"cmd":"sum"}',
      'nestjs.handler.type': 'message',
    });
  });

  it("reads server.address / server.port from the options, Nest's defaults for what is missing or unusable", () => {
    expect(tcpServerAttributes('10.0.0.5', 3001)).toEqual({ 'server.address': '10.0.0.5', 'server.port': 3001 });
    expect(tcpServerAttributes(undefined, undefined)).toEqual({ 'server.address': 'localhost', 'server.port': 3000 });
    expect(tcpServerAttributes('', '4000')).toEqual({ 'server.address': 'localhost', 'server.port': 4000 });
    expect(tcpServerAttributes('h', 70000)).toEqual({ 'server.address': 'h', 'server.port': 3000 });
    expect(tcpServerAttributes('h', 1.5)).toEqual({ 'server.address': 'h', 'server.port': 3000 });
  });

  it('reads network.peer.* from a socket, nothing from a missing or odd one', () => {
    expect(tcpPeerAttributes({ remoteAddress: '127.0.0.1', remotePort: 5000 })).toEqual({
      'network.peer.address': '127.0.0.1',
      'network.peer.port': 5000,
    });
    expect(tcpPeerAttributes({ remoteAddress: '::1' })).toEqual({ 'network.peer.address': '::1' });
    expect(tcpPeerAttributes(undefined)).toEqual({});
    expect(tcpPeerAttributes({ remoteAddress: 7 })).toEqual({});
    const throwing = { get remoteAddress(): string { throw new Error('destroyed'); } };
    expect(tcpPeerAttributes(throwing)).toEqual({});
  });
});
