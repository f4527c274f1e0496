import { describe, expect, it } from 'vitest';
import {
  grpcMethodAttributes,
  grpcMethodOf,
  grpcPeerAttributes,
  grpcServerAttributes,
  grpcStatusName,
  isGrpcError,
  legacyRpcAttributesRequested,
} from './grpc.attributes.js';

describe('gRPC attributes', () => {
  it('names status codes as rpc.status_code spells them; an unknown number is UNKNOWN', () => {
    expect([0, 1, 4, 5, 12, 14, 16].map(grpcStatusName)).toEqual([
      'OK',
      'CANCELLED',
      'DEADLINE_EXCEEDED',
      'NOT_FOUND',
      'UNIMPLEMENTED',
      'UNAVAILABLE',
      'UNAUTHENTICATED',
    ]);
    expect([17, -1, 1.5, '0', undefined].map(grpcStatusName)).toEqual(['UNKNOWN', 'UNKNOWN', 'UNKNOWN', 'UNKNOWN', 'UNKNOWN']);
  });

  it('fails a CLIENT span on every non-OK code, a SERVER span only on the server-fault codes', () => {
    const all = Array.from({ length: 17 }, (_, code) => grpcStatusName(code));
    expect(all.filter((name) => isGrpcError(name, 'client'))).toEqual(all.slice(1));
    expect(all.filter((name) => isGrpcError(name, 'server'))).toEqual([
      'UNKNOWN',
      'DEADLINE_EXCEEDED',
      'UNIMPLEMENTED',
      'INTERNAL',
      'UNAVAILABLE',
      'DATA_LOSS',
    ]);
  });

  it('reads package.Service/Method from a path; anything else is no method', () => {
    expect(grpcMethodOf('/orders.v1.OrderService/GetOrder')).toBe('orders.v1.OrderService/GetOrder');
    for (const path of ['orders.v1.OrderService/GetOrder', '/a/b/c', '/a/', '//b', '/a b/c', '', undefined, 42]) {
      expect(grpcMethodOf(path)).toBeUndefined();
    }
  });

  it('names a span after its method, or grpc with rpc.method=_OTHER and the original', () => {
    expect(grpcMethodAttributes('/orders.v1.OrderService/GetOrder', true, false)).toEqual({
      name: 'orders.v1.OrderService/GetOrder',
      attributes: { 'rpc.system.name': 'grpc', 'rpc.method': 'orders.v1.OrderService/GetOrder' },
    });
    expect(grpcMethodAttributes('/orders.v1.OrderService/GetOrder', false, false)).toEqual({
      name: 'grpc',
      attributes: { 'rpc.system.name': 'grpc', 'rpc.method': '_OTHER', 'rpc.method_original': 'orders.v1.OrderService/GetOrder' },
    });
    expect(grpcMethodAttributes('not a path', true, false).attributes).toMatchObject({ 'rpc.method': '_OTHER', 'rpc.method_original': 'not a path' });
    expect(grpcMethodAttributes('/orders.v1.OrderService/GetOrder', true, true).attributes).toEqual({
      'rpc.system.name': 'grpc',
      'rpc.method': 'orders.v1.OrderService/GetOrder',
      'rpc.system': 'grpc',
      'rpc.service': 'orders.v1.OrderService',
    });
  });

  it.each([
    ['localhost:5000', { 'server.address': 'localhost', 'server.port': 5000 }],
    ['127.0.0.1:50051', { 'server.address': '127.0.0.1', 'server.port': 50051 }],
    ['orders.internal', { 'server.address': 'orders.internal', 'server.port': 443 }],
    ['dns:///orders.internal:8443', { 'server.address': 'orders.internal', 'server.port': 8443 }],
    ['dns://8.8.8.8/orders.internal:8443', { 'server.address': 'orders.internal', 'server.port': 8443 }],
    ['ipv4:10.0.0.1:50051,10.0.0.2:50051', { 'server.address': '10.0.0.1', 'server.port': 50051 }],
    ['[::1]:50051', { 'server.address': '::1', 'server.port': 50051 }],
    ['ipv6:[::1]:50051', { 'server.address': '::1', 'server.port': 50051 }],
    ['unix:///run/orders.sock', { 'server.address': '/run/orders.sock' }],
    ['', {}],
  ])('server.address and server.port of the target %j', (target, expected) => {
    expect(grpcServerAttributes(target)).toEqual(expected);
  });

  it('network.peer.* from grpc-js peer strings', () => {
    const attributes = {};
    grpcPeerAttributes('[::ffff:127.0.0.1]:41234', attributes);
    expect(attributes).toEqual({ 'network.peer.address': '::ffff:127.0.0.1', 'network.peer.port': 41234 });
    for (const peer of ['unknown', '', undefined]) {
      const none = {};
      grpcPeerAttributes(peer, none);
      expect(none).toEqual({});
    }
  });

  it('adds the legacy names when OTEL_SEMCONV_STABILITY_OPT_IN lists rpc/dup', () => {
    expect(legacyRpcAttributesRequested({})).toBe(false);
    expect(legacyRpcAttributesRequested({ OTEL_SEMCONV_STABILITY_OPT_IN: 'http' })).toBe(false);
    expect(legacyRpcAttributesRequested({ OTEL_SEMCONV_STABILITY_OPT_IN: 'rpc' })).toBe(false);
    expect(legacyRpcAttributesRequested({ OTEL_SEMCONV_STABILITY_OPT_IN: 'http/dup, RPC/dup' })).toBe(true);
  });
});
