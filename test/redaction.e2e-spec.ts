import 'reflect-metadata';
import { Controller, Get, Module, Query, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { trace } from '@opentelemetry/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OtelModule, type OtelModuleOptions } from '../lib/index.js';
import { plainRequest } from './support/http-request.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './support/otlp-receiver.js';

/**
 * Redaction is on by default and happens before export: what a real OTLP receiver gets from a real
 * Nest HTTP app. The handler sets sensitive attributes, calls a URL with a token in its query
 * (fetch CLIENT span, and the SERVER span of the called route), records an exception whose message
 * holds a JWT, and the `authorization` request header is captured.
 */

const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZGEifQ.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg';
const AUTHORIZATION = 'Bearer s3cr3t-access-token';

@Controller()
class AccountController {
  @Get('account')
  async account(): Promise<{ ok: true }> {
    const span = trace.getActiveSpan()!;
    span.setAttributes({ 'app.password': 'hunter2', 'user.token': 'tok-123', 'app.user.name': 'ada', iban: 'DE89370400440532013000' });
    span.recordException(new Error(`token rejected: ${JWT}`));
    const port = (globalThis as { redactionPort?: number }).redactionPort;
    await fetch(`http://127.0.0.1:${port}/target?token=abc&page=2`);
    return { ok: true };
  }

  @Get('target')
  target(@Query('page') page: string): { page: string } {
    return { page };
  }
}

async function startApp(receiver: OtlpReceiver, options: Partial<OtelModuleOptions>): Promise<INestApplication> {
  @Module({
    imports: [
      OtelModule.forRoot({
        serviceName: 'redaction-e2e',
        exporter: { url: receiver.url },
        batch: false,
        logSummary: false,
        http: { requestHeaders: ['authorization'] },
        ...options,
      }),
    ],
    controllers: [AccountController],
  })
  class AppModule {}
  const app = (await Test.createTestingModule({ imports: [AppModule] }).compile()).createNestApplication();
  await app.listen(0, '127.0.0.1');
  (globalThis as { redactionPort?: number }).redactionPort = Number(new URL((await app.getUrl()).replace('[::1]', '127.0.0.1')).port);
  return app;
}

/** The three spans of one `/account` request: its SERVER span, the fetch CLIENT span and the called route's SERVER span. */
async function callAccount(receiver: OtlpReceiver): Promise<{ account: ReceivedSpan; client: ReceivedSpan; target: ReceivedSpan }> {
  receiver.reset();
  const port = (globalThis as { redactionPort?: number }).redactionPort;
  const response = await plainRequest(`http://127.0.0.1:${port}/account`, { headers: { authorization: AUTHORIZATION } });
  expect(response.status).toBe(200);
  const spans = await receiver.waitForSpans((span) => span.name === 'GET /account');
  const all = await receiver.waitForSpans((span) => span.name === 'GET /target' && span.kind === 2);
  const every = [...receiver.spans];
  const client = every.find((span) => span.kind === 3);
  expect(client, 'fetch CLIENT span').toBeDefined();
  return { account: spans[0]!, client: client!, target: all[0]! };
}

describe('redaction before export (OTLP receiver)', () => {
  let receiver: OtlpReceiver;
  beforeAll(async () => {
    receiver = await startOtlpReceiver();
  });
  afterAll(async () => {
    await receiver?.close();
  });

  describe('default (on)', () => {
    let app: INestApplication;
    beforeAll(async () => {
      app = await startApp(receiver, {});
    });
    afterAll(async () => {
      await app?.close();
    });

    it('masks sensitive attributes, header values, query parameters and the JWT in the exception, and leaves the rest', async () => {
      const { account, client, target } = await callAccount(receiver);
      expect(account.attributes['app.password']).toBe('[REDACTED]');
      expect(account.attributes['user.token']).toBe('[REDACTED]');
      expect(account.attributes['app.user.name']).toBe('ada');
      expect(account.attributes['iban']).toBe('DE89370400440532013000');
      expect(account.attributes['http.request.header.authorization']).toEqual(['[REDACTED]']);
      const exception = account.events.find((event) => event.name === 'exception')!;
      expect(exception.attributes['exception.message']).toBe('token rejected: [REDACTED]');
      expect(String(exception.attributes['exception.stacktrace'])).not.toContain(JWT);
      expect(String(client.attributes['url.full'])).toMatch(/\/target\?token=\[REDACTED\]&page=2$/);
      expect(target.attributes['url.query']).toBe('token=[REDACTED]&page=2');
      expect(JSON.stringify(receiver.spans)).not.toContain('hunter2');
      expect(JSON.stringify(receiver.spans)).not.toContain('s3cr3t-access-token');
    });
  });

  describe('redact: false', () => {
    let app: INestApplication;
    beforeAll(async () => {
      app = await startApp(receiver, { redact: false });
    });
    afterAll(async () => {
      await app?.close();
    });

    it('exports the values as they were set', async () => {
      const { account, client, target } = await callAccount(receiver);
      expect(account.attributes['app.password']).toBe('hunter2');
      expect(account.attributes['user.token']).toBe('tok-123');
      expect(account.attributes['http.request.header.authorization']).toEqual([AUTHORIZATION]);
      expect(account.events.find((event) => event.name === 'exception')!.attributes['exception.message']).toBe(`token rejected: ${JWT}`);
      expect(String(client.attributes['url.full'])).toMatch(/\/target\?token=abc&page=2$/);
      expect(target.attributes['url.query']).toBe('token=abc&page=2');
    });
  });

  describe('custom rules', () => {
    let app: INestApplication;
    beforeAll(async () => {
      app = await startApp(receiver, { redact: { extraKeys: ['iban'], queryParams: ['page'], patterns: [], replacement: '***' } });
    });
    afterAll(async () => {
      await app?.close();
    });

    it('masks the extra keys and the listed parameters with the replacement given; no value patterns', async () => {
      const { account, client, target } = await callAccount(receiver);
      expect(account.attributes['iban']).toBe('***');
      expect(account.attributes['app.password']).toBe('***');
      expect(account.attributes['app.user.name']).toBe('ada');
      // patterns: [] -> the JWT in the message stays; queryParams replaces the default list.
      expect(account.events.find((event) => event.name === 'exception')!.attributes['exception.message']).toBe(`token rejected: ${JWT}`);
      expect(String(client.attributes['url.full'])).toMatch(/\/target\?token=abc&page=\*\*\*$/);
      expect(target.attributes['url.query']).toBe('token=abc&page=***');
    });
  });
});
