import 'reflect-metadata';
import { Controller, Get, Header, Module, Param, Res, type INestApplication } from '@nestjs/common';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { SpanKind } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { OtelTestingModule, getSpan, spanRecorder } from '../lib/testing/index.js';
import { plainRequest } from './support/http-request.js';

/**
 * Opt-in header capture (`http: { requestHeaders, responseHeaders }`), through a real server on
 * each adapter: `http.request.header.<name>` / `http.response.header.<name>`, string arrays, lower-case
 * names whatever the case of the configuration, and nothing of the headers not listed.
 */

/** express' `res.header(name, value)` and fastify's `reply.header(name, value)` both set a response header. */
interface AnyResponse {
  header(name: string, value: string | string[]): unknown;
}

@Controller('profile')
class ProfileController {
  @Get(':id')
  @Header('X-Custom', 'custom-1')
  @Header('x-secret', 'not listed')
  find(@Param('id') id: string): { id: string } {
    return { id };
  }

  @Get(':id/multi')
  multi(@Param('id') id: string, @Res({ passthrough: true }) res: AnyResponse): { id: string } {
    res.header('x-custom', ['first', 'second']);
    return { id };
  }

  @Get(':id/fail')
  fail(): never {
    throw new Error('profile store down');
  }
}

@Module({
  imports: [
    OtelTestingModule.forRoot({
      serviceName: 'http-header-capture-e2e',
      // Mixed case on purpose: names are matched case-insensitively and recorded lower-case.
      http: { requestHeaders: ['X-Request-Id', 'x-tenant'], responseHeaders: ['Content-Type', 'x-custom'] },
    }),
  ],
  controllers: [ProfileController],
})
class HeaderCaptureModule {}

function attributesStartingWith(span: ReadableSpan, prefix: string): Record<string, unknown> {
  return Object.fromEntries(Object.entries(span.attributes).filter(([key]) => key.startsWith(prefix)));
}
const requestHeaderAttributes = (span: ReadableSpan) => attributesStartingWith(span, 'http.request.header.');
const responseHeaderAttributes = (span: ReadableSpan) => attributesStartingWith(span, 'http.response.header.');

describe.each(['express', 'fastify'] as const)('HTTP header capture (%s)', (platform) => {
  let app: INestApplication;
  let base: string;

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({ imports: [HeaderCaptureModule] }).compile();
    app = platform === 'fastify' ? moduleRef.createNestApplication(new FastifyAdapter()) : moduleRef.createNestApplication();
    await app.listen(0, '127.0.0.1');
    base = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  });
  afterAll(async () => {
    await app?.close();
  });
  beforeEach(() => spanRecorder.reset());

  async function serverSpan(path: string, headers: Record<string, string | string[]>): Promise<ReadableSpan> {
    await plainRequest(`${base}${path}`, { headers });
    const spans = await spanRecorder.waitForSpans((s) => s.some((span) => span.kind === SpanKind.SERVER));
    return getSpan(spans, { kind: SpanKind.SERVER });
  }

  /**
   * fastify passes its reply headers to `writeHead()` when it sends, so the raw response's
   * `getHeader()` never sees them: on fastify the reply's own `getHeader()` is read.
   */
  const responseIt = it;

  it('records the listed request headers, lower-case whatever the case on the wire or in the options, and only those', async () => {
    const response = await plainRequest(`${base}/profile/7`, {
      headers: { 'X-REQUEST-ID': 'req-7', 'x-tenant': 'acme', authorization: 'Bearer secret', 'x-other': 'not listed' },
    });
    expect(response.status).toBe(200);
    const spans = await spanRecorder.waitForSpans((s) => s.some((span) => span.kind === SpanKind.SERVER));
    const server = getSpan(spans, { kind: SpanKind.SERVER });
    expect(server.name).toBe('GET /profile/:id');
    expect(requestHeaderAttributes(server)).toEqual({
      'http.request.header.x-request-id': ['req-7'],
      'http.request.header.x-tenant': ['acme'],
    });
  });

  it('records a repeated request header as Node gives it: one comma-joined value', async () => {
    const server = await serverSpan('/profile/8/multi', { 'x-request-id': 'req-8', 'x-tenant': ['acme', 'beta'] });
    expect(server.name).toBe('GET /profile/:id/multi');
    expect(requestHeaderAttributes(server)).toEqual({
      'http.request.header.x-request-id': ['req-8'],
      'http.request.header.x-tenant': ['acme, beta'],
    });
  });

  it('leaves out listed request headers that were not sent', async () => {
    const server = await serverSpan('/profile/9', { 'x-other': 'not listed' });
    expect(requestHeaderAttributes(server)).toEqual({});
  });

  it('records the request headers of a failed request (500) too', async () => {
    const server = await serverSpan('/profile/1/fail', { 'x-request-id': 'req-1' });
    expect(server.attributes['http.response.status_code']).toBe(500);
    expect(requestHeaderAttributes(server)).toEqual({ 'http.request.header.x-request-id': ['req-1'] });
  });

  responseIt('records the listed response headers (lower-case names), and only those', async () => {
    const response = await plainRequest(`${base}/profile/7`);
    expect(response.headers['x-secret']).toBe('not listed');
    expect(response.headers['content-type']).toMatch(/^application\/json/);
    const spans = await spanRecorder.waitForSpans((s) => s.some((span) => span.kind === SpanKind.SERVER));
    expect(responseHeaderAttributes(getSpan(spans, { kind: SpanKind.SERVER }))).toEqual({
      'http.response.header.content-type': [response.headers['content-type']],
      'http.response.header.x-custom': ['custom-1'],
    });
  });

  responseIt('records every value of a repeated response header', async () => {
    const server = await serverSpan('/profile/8/multi', {});
    expect(responseHeaderAttributes(server)).toEqual({
      'http.response.header.content-type': [expect.stringMatching(/^application\/json/)],
      'http.response.header.x-custom': ['first', 'second'],
    });
  });

  responseIt('records the response headers of a failed request (500), without the ones it did not send', async () => {
    const server = await serverSpan('/profile/1/fail', {});
    expect(server.attributes['http.response.status_code']).toBe(500);
    expect(responseHeaderAttributes(server)).toEqual({
      'http.response.header.content-type': [expect.stringMatching(/^application\/json/)],
    });
  });
});
