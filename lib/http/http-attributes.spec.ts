import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import type { Attributes } from '@opentelemetry/api';
import {
  capturedRequestHeaders,
  hasBody,
  httpSpanName,
  normalizeMethod,
  parseHost,
  redactQuery,
  redactUrl,
  requestDetailAttributes,
  samplingAttributes,
} from './http-attributes.js';

/** The parts of an IncomingMessage the attribute functions read, and nothing else. */
function request(
  options: {
    method?: string;
    url?: string;
    headers?: IncomingHttpHeaders;
    httpVersion?: string;
    socket?: { remoteAddress?: string; remotePort?: number; localPort?: number; encrypted?: boolean };
  } = {},
): IncomingMessage {
  return {
    method: options.method ?? 'GET',
    url: options.url ?? '/',
    headers: options.headers ?? {},
    httpVersion: options.httpVersion ?? '1.1',
    socket: options.socket ?? { remoteAddress: '10.0.0.9', remotePort: 51234, localPort: 3000 },
  } as unknown as IncomingMessage;
}

describe('normalizeMethod', () => {
  it.each(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS', 'TRACE', 'CONNECT', 'QUERY'])(
    'keeps the known method %s without an original',
    (method) => {
      expect(normalizeMethod(method)).toEqual({ method });
    },
  );

  it('upper-cases a known method sent in another case and keeps what was sent as the original', () => {
    expect(normalizeMethod('get')).toEqual({ method: 'GET', original: 'get' });
    expect(normalizeMethod('Patch')).toEqual({ method: 'PATCH', original: 'Patch' });
  });

  it('reports an unknown method as _OTHER with the method as sent', () => {
    expect(normalizeMethod('PURGE')).toEqual({ method: '_OTHER', original: 'PURGE' });
    expect(normalizeMethod('propfind')).toEqual({ method: '_OTHER', original: 'propfind' });
  });

  it('reports a missing method as _OTHER with an empty original', () => {
    expect(normalizeMethod(undefined)).toEqual({ method: '_OTHER', original: '' });
    expect(normalizeMethod('')).toEqual({ method: '_OTHER', original: '' });
  });
});

describe('httpSpanName', () => {
  it('is "{method} {route}" with a route, the method alone without', () => {
    expect(httpSpanName('GET', '/orders/:id')).toBe('GET /orders/:id');
    expect(httpSpanName('POST')).toBe('POST');
    expect(httpSpanName('DELETE', '')).toBe('DELETE');
  });

  it('says HTTP for _OTHER, never the raw method', () => {
    expect(httpSpanName('_OTHER')).toBe('HTTP');
    expect(httpSpanName('_OTHER', '/orders/:id')).toBe('HTTP /orders/:id');
  });
});

describe('redactQuery', () => {
  it.each(['AWSAccessKeyId', 'Signature', 'sig', 'X-Amz-Credential', 'X-Amz-Security-Token', 'X-Amz-Signature', 'X-Goog-Signature'])(
    'replaces the value of the sensitive key %s with REDACTED and keeps the other pairs as sent',
    (key) => {
      expect(redactQuery(`a=1&${key}=secret%2Fvalue&b=two%20words`)).toBe(`a=1&${key}=REDACTED&b=two%20words`);
    },
  );

  it('matches keys exactly (case-sensitive, as the conventions list them)', () => {
    expect(redactQuery('signature=x&SIG=y&x-amz-signature=z')).toBe('signature=x&SIG=y&x-amz-signature=z');
  });

  it('recognises a percent-encoded sensitive key and keeps its spelling', () => {
    expect(redactQuery('X%2DAmz%2DSignature=abc')).toBe('X%2DAmz%2DSignature=REDACTED');
  });

  it('redacts every occurrence of a repeated sensitive key', () => {
    expect(redactQuery('sig=1&sig=2')).toBe('sig=REDACTED&sig=REDACTED');
  });

  it('keeps pairs without "=", empty values and malformed escapes as sent', () => {
    expect(redactQuery('')).toBe('');
    expect(redactQuery('flag&sig=&x=%E0%A4%A')).toBe('flag&sig=REDACTED&x=%E0%A4%A');
    expect(redactQuery('%E0%A4%A=1')).toBe('%E0%A4%A=1');
  });
});

describe('redactUrl', () => {
  it('replaces user and password with REDACTED', () => {
    expect(redactUrl(new URL('https://alice:s3cret@example.com/orders'))).toBe('https://REDACTED:REDACTED@example.com/orders');
  });

  it('replaces a user without password too', () => {
    expect(redactUrl(new URL('https://alice@example.com/'))).toBe('https://REDACTED:REDACTED@example.com/');
  });

  it('redacts the sensitive query values and keeps the rest of the URL', () => {
    expect(redactUrl(new URL('http://example.com:8080/p/a?X-Amz-Signature=abc&page=2#frag'))).toBe(
      'http://example.com:8080/p/a?X-Amz-Signature=REDACTED&page=2#frag',
    );
  });

  it('leaves a URL without credentials or sensitive keys unchanged and does not modify its argument', () => {
    const url = new URL('https://bob:pw@example.com/x?sig=1');
    expect(redactUrl(new URL('https://example.com/x?y=1'))).toBe('https://example.com/x?y=1');
    redactUrl(url);
    expect(url.href).toBe('https://bob:pw@example.com/x?sig=1');
  });
});

describe('parseHost', () => {
  it('splits a name and port', () => {
    expect(parseHost('example.com:8080')).toEqual({ address: 'example.com', port: 8080 });
    expect(parseHost('  example.com:8080  ')).toEqual({ address: 'example.com', port: 8080 });
  });

  it('gives a name without port an undefined port', () => {
    expect(parseHost('example.com')).toEqual({ address: 'example.com', port: undefined });
  });

  it('unwraps an IPv6 literal, with and without port', () => {
    expect(parseHost('[::1]:3000')).toEqual({ address: '::1', port: 3000 });
    expect(parseHost('[2001:db8::7]')).toEqual({ address: '2001:db8::7', port: undefined });
  });

  it.each(['example.com:0', 'example.com:65536', 'example.com:99999'])('drops the out-of-range port of %s', (host) => {
    expect(parseHost(host)).toEqual({ address: 'example.com', port: undefined });
  });

  it.each(['example.com:http', 'example.com:-1', 'example.com:80:81', '::1', '[::1]x', '[::1]:abc'])(
    'gives nothing for the malformed host %s',
    (host) => {
      expect(parseHost(host)).toEqual({});
    },
  );

  it('gives nothing without a host', () => {
    expect(parseHost(undefined)).toEqual({});
    expect(parseHost('')).toEqual({});
  });
});

describe('hasBody', () => {
  it('is true with a non-zero content-length or a transfer-encoding', () => {
    expect(hasBody(request({ headers: { 'content-length': '12' } }))).toBe(true);
    expect(hasBody(request({ headers: { 'transfer-encoding': 'chunked' } }))).toBe(true);
  });

  it('is false without either, or with content-length 0', () => {
    expect(hasBody(request())).toBe(false);
    expect(hasBody(request({ headers: { 'content-length': '0' } }))).toBe(false);
  });
});

describe('samplingAttributes', () => {
  it('has the method, path without query and scheme, and nothing else', () => {
    expect(samplingAttributes(request({ method: 'PURGE', url: '/cache/1?sig=x' }))).toEqual({
      'http.request.method': '_OTHER',
      'url.path': '/cache/1',
      'url.scheme': 'http',
    });
    expect(samplingAttributes(request({ url: '?only=query', socket: { encrypted: true } }))).toEqual({
      'http.request.method': 'GET',
      'url.path': '/',
      'url.scheme': 'https',
    });
  });
});

/** What a recording SERVER span carries once the request arrived: the start attributes, then the rest. */
function requestAttributes(req: IncomingMessage, captureHeaders: readonly string[]): Attributes {
  return { ...samplingAttributes(req), ...requestDetailAttributes(req, captureHeaders) };
}

describe('requestAttributes', () => {
  it('has the stable HTTP server attributes of a request', () => {
    const attributes = requestAttributes(
      request({
        method: 'get',
        url: '/orders/7?page=2&Signature=abc',
        headers: { host: 'shop.example:8443', 'user-agent': 'curl/8.5' },
        httpVersion: '2.0',
        socket: { remoteAddress: '10.0.0.9', remotePort: 51234, localPort: 3000, encrypted: true },
      }),
      [],
    );
    expect(attributes).toEqual({
      'http.request.method': 'GET',
      'http.request.method_original': 'get',
      'url.path': '/orders/7',
      'url.query': 'page=2&Signature=REDACTED',
      'url.scheme': 'https',
      'server.address': 'shop.example',
      'server.port': 8443,
      'client.address': '10.0.0.9',
      'network.peer.address': '10.0.0.9',
      'network.peer.port': 51234,
      'network.protocol.version': '2.0',
      'user_agent.original': 'curl/8.5',
    });
  });

  it('takes server.port from the socket when the Host header has none, and omits what is unknown', () => {
    const attributes = requestAttributes(request({ headers: { host: 'shop.example' }, socket: { localPort: 3000 } }), []);
    expect(attributes).toEqual({
      'http.request.method': 'GET',
      'url.path': '/',
      'url.scheme': 'http',
      'server.address': 'shop.example',
      'server.port': 3000,
      'network.protocol.version': '1.1',
    });
  });

  it('takes client.address from Forwarded: for= (quoted IPv6 too), the peer stays network.peer.address', () => {
    const forwarded = (value: string) =>
      requestAttributes(request({ headers: { forwarded: value } }), [])['client.address'];
    expect(forwarded('for=192.0.2.60;proto=http;by=203.0.113.43')).toBe('192.0.2.60');
    expect(forwarded('For="[2001:db8:cafe::17]:4711"')).toBe('2001:db8:cafe::17');
    expect(forwarded('for=198.51.100.17, for=10.0.0.1')).toBe('198.51.100.17');
    expect(requestAttributes(request({ headers: { forwarded: 'for=192.0.2.60' } }), [])['network.peer.address']).toBe('10.0.0.9');
  });

  it('takes client.address from the first X-Forwarded-For entry when there is no usable Forwarded', () => {
    const client = (headers: IncomingHttpHeaders) => requestAttributes(request({ headers }), [])['client.address'];
    expect(client({ 'x-forwarded-for': ' 203.0.113.195 , 70.41.3.18, 150.172.238.178' })).toBe('203.0.113.195');
    expect(client({ forwarded: 'proto=https', 'x-forwarded-for': '203.0.113.7' })).toBe('203.0.113.7');
    // Forwarded wins over X-Forwarded-For.
    expect(client({ forwarded: 'for=192.0.2.60', 'x-forwarded-for': '203.0.113.7' })).toBe('192.0.2.60');
    // An empty first entry falls back to the peer.
    expect(client({ 'x-forwarded-for': ', 203.0.113.7' })).toBe('10.0.0.9');
  });

  it('adds the captured request headers', () => {
    const attributes = requestAttributes(request({ headers: { 'x-tenant': 'acme', 'x-other': 'no' } }), ['x-tenant']);
    expect(attributes['http.request.header.x-tenant']).toEqual(['acme']);
    expect(attributes).not.toHaveProperty('http.request.header.x-other');
  });
});

describe('capturedRequestHeaders', () => {
  it('records each asked-for header present as a string array, and nothing else', () => {
    const req = request({
      headers: { 'x-request-id': 'r-1', 'x-tenant': 'acme', authorization: 'Bearer secret', 'set-cookie': ['a=1', 'b=2'] },
    });
    expect(capturedRequestHeaders(req, ['x-request-id', 'set-cookie', 'x-missing'])).toEqual({
      'http.request.header.x-request-id': ['r-1'],
      'http.request.header.set-cookie': ['a=1', 'b=2'],
    });
  });

  it('records nothing when no header is asked for', () => {
    expect(capturedRequestHeaders(request({ headers: { 'x-tenant': 'acme' } }), [])).toEqual({});
  });
});
