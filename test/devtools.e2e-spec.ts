import 'reflect-metadata';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Body, Controller, HttpException, Module, Post, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { SpanKind } from '@opentelemetry/api';
import type { Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTraceViewer, type TraceSummary, type TraceViewer } from '../lib/devtools/index.js';
import { OtelModule, TraceService } from '../lib/index.js';
import { browserUnavailableReason, launchBrowser, type Browser } from './support/browser.js';
import { ROOT } from './support/child-app.js';
import { plainRequest } from './support/http-request.js';

/**
 * The trace viewer in a real browser, fed by real services: "gateway" (a Nest app in this process,
 * traced by otel-nest from lib/) calls "payments" (a Nest app in a child process, otel-nest loaded
 * by package name from dist/) with fetch. Each service has its own SDK, so its own `service.name`:
 * the OpenTelemetry SDK is one per process. Both export OTLP/HTTP JSON to the viewer.
 */

const SCREENSHOT_DIR = join(ROOT, '.build');
const DECLINED_AMOUNT = 5000;

/** The payments service: `POST /payments/charges` declines amounts over 1000 with a 500. */
const PAYMENTS_APP = `
import 'reflect-metadata';
import { Body, Controller, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { OtelModule, TraceService } from 'otel-nest';

class PaymentsController {
  constructor(traces) {
    this.traces = traces;
  }
  charge(body) {
    return this.traces.withSpan('authorize card', { attributes: { 'payment.amount': body.amount } }, async (span) => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      span.addEvent('card checked', { 'card.last4': '4242' });
      if (body.amount > 1000) {
        throw new Error('card declined: amount over limit');
      }
      return { status: 'charged', amount: body.amount };
    });
  }
}
Reflect.defineMetadata('design:paramtypes', [TraceService], PaymentsController);
Controller('payments')(PaymentsController);
Body()(PaymentsController.prototype, 'charge', 0);
Post('charges')(PaymentsController.prototype, 'charge', Object.getOwnPropertyDescriptor(PaymentsController.prototype, 'charge'));

class PaymentsModule {}
Module({ imports: [OtelModule.forRoot(JSON.parse(process.env.PAYMENTS_OTEL_OPTIONS))], controllers: [PaymentsController] })(PaymentsModule);

const app = await NestFactory.create(PaymentsModule, { logger: ['error', 'warn'] });
app.enableShutdownHooks();
await app.listen(0, '127.0.0.1');
console.log('LISTENING ' + new URL(await app.getUrl()).port);
`;

async function startPayments(otlpUrl: string): Promise<{ url: string; child: ChildProcess; output: () => string }> {
  if (!existsSync(join(ROOT, 'dist/esm/index.js'))) {
    throw new Error('dist/ is missing: the payments service loads otel-nest from it. Run `npm run build` (npm test does).');
  }
  const child = spawn(process.execPath, ['--input-type=module', '-e', PAYMENTS_APP], {
    cwd: ROOT,
    env: {
      ...process.env,
      PAYMENTS_OTEL_OPTIONS: JSON.stringify({
        serviceName: 'payments',
        exporter: { url: otlpUrl },
        batch: { scheduledDelayMillis: 50 },
        logSummary: false,
      }),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`payments did not start in 20 s:\n${output}`)), 20_000);
    child.stdout!.on('data', () => {
      const match = /LISTENING (\d+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`payments exited with ${code} before listening:\n${output}`));
    });
  });
  return { url: `http://127.0.0.1:${port}`, child, output: () => output };
}

const paymentsRef = { url: '' };

@Controller('checkout')
class CheckoutController {
  constructor(private readonly traces: TraceService) {}

  @Post()
  async checkout(@Body() body: { amount: number }): Promise<unknown> {
    const response = await fetch(`${paymentsRef.url}/payments/charges`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      // The retry runs later, in a trace of its own that links back to this request.
      const failed = this.traces.getActiveSpan()!.spanContext();
      const retry = this.traces.startSpan('schedule payment retry', {
        root: true,
        kind: SpanKind.PRODUCER,
        links: [{ context: failed, attributes: { 'link.reason': 'payment declined' } }],
      });
      retry.end();
      throw new HttpException({ status: 'declined' }, 402);
    }
    return response.json();
  }
}

/** Polls the viewer until `find` returns something, or fails with what the viewer holds. */
async function waitFor<T>(viewer: TraceViewer, what: string, find: (traces: TraceSummary[]) => T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = find(viewer.store.list());
    if (found !== undefined) {
      return found;
    }
    if (Date.now() > deadline) {
      const held = viewer.store
        .list()
        .map((t) => `trace ${t.traceId}:\n${viewer.store.spans(t.traceId).map((s) => `  ${s.service} ${s.name} kind=${s.kind} parent=${s.parentSpanId ?? '-'} status=${s.status.code}`).join('\n')}`);
      throw new Error(`Timed out waiting for ${what}; the viewer holds:\n${held.join('\n')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** What page functions use of the browser (this Node project compiles without the DOM lib). */
interface BrowserGlobals {
  getComputedStyle(element: unknown): { backgroundColor: string };
  location: { hash: string };
  __xss?: number;
}

interface RowInfo {
  spanId: string;
  service: string;
  name: string;
  depth: number;
  tag: string;
  tagColor: string;
  barColor: string;
  error: string | null;
  markers: string[];
}

function waterfallRows(page: Page): Promise<RowInfo[]> {
  return page.$$eval('.span-row', (rows) =>
    rows.map((row) => {
      const element = row;
      const tag = element.querySelector('.service-tag')!;
      return {
        spanId: element.dataset.spanId!,
        service: element.dataset.service!,
        name: element.querySelector('.span-name')!.textContent!,
        depth: Number(element.dataset.depth),
        tag: tag.textContent!,
        tagColor: (globalThis as unknown as BrowserGlobals).getComputedStyle(tag).backgroundColor,
        barColor: (globalThis as unknown as BrowserGlobals).getComputedStyle(element.querySelector('.span-bar')!).backgroundColor,
        error: element.querySelector('.error-badge')?.textContent ?? null,
        markers: [...element.querySelectorAll('.link-marker')].map((marker) => marker.textContent!),
      };
    }),
  );
}

const unavailable = browserUnavailableReason();
if (unavailable) {
  console.warn(`devtools browser test skipped: ${unavailable}`);
}

describe.skipIf(unavailable !== undefined)('trace viewer in headless Chromium, fed by two traced Nest services', () => {
  let viewer: TraceViewer;
  let payments: Awaited<ReturnType<typeof startPayments>> | undefined;
  let gateway: INestApplication | undefined;
  let gatewayUrl: string;
  let browser: Browser | undefined;
  let page: Page;
  let declined: TraceSummary;
  let retryTraceId: string;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    viewer = await startTraceViewer({ port: 0 });
    // Independent startups run side by side: they are most of this file's time.
    const [started, app, launched] = await Promise.all([
      startPayments(viewer.otlpUrl),
      (async () => {
        @Module({
          imports: [OtelModule.forRoot({ serviceName: 'gateway', exporter: { url: viewer.otlpUrl }, batch: { scheduledDelayMillis: 50 }, logSummary: false })],
          controllers: [CheckoutController],
        })
        class GatewayModule {}
        const nest = await NestFactory.create(GatewayModule, { logger: ['error', 'warn'] });
        await nest.listen(0, '127.0.0.1');
        return nest;
      })(),
      launchBrowser(),
    ]);
    payments = started;
    gateway = app;
    browser = launched;
    paymentsRef.url = payments.url;
    gatewayUrl = `http://127.0.0.1:${new URL(await gateway.getUrl()).port}`;
    page = await browser.context.newPage();
    page.on('pageerror', (error) => pageErrors.push(error.message));

    // node:http, which otel-nest does not trace: the gateway's SERVER span is each trace's root.
    const ok = await plainRequest(`${gatewayUrl}/checkout`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"amount":20}' });
    expect(ok.status).toBe(201);
    const refused = await plainRequest(`${gatewayUrl}/checkout`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ amount: DECLINED_AMOUNT }),
    });
    expect(refused.status).toBe(402);

    // The gateway's SERVER span ends last, after the response: wait for it and for the retry trace.
    const complete = (t: TraceSummary): boolean => {
      const names = viewer.store.spans(t.traceId).map((span) => `${span.service} ${span.name}`);
      return ['gateway POST /checkout', 'gateway POST', 'payments POST /payments/charges', 'payments authorize card'].every((name) => names.includes(name));
    };
    declined = await waitFor(viewer, 'the declined checkout trace with spans of both services', (traces) =>
      traces.find((t) => t.error && complete(t) && t.relatedTraceIds.length === 1),
    );
    retryTraceId = declined.relatedTraceIds[0]!;
    await waitFor(viewer, 'the successful checkout trace', (traces) =>
      traces.find((t) => !t.error && complete(t)),
    );
    await mkdir(SCREENSHOT_DIR, { recursive: true });
  }, 40_000);

  afterEach(() => {
    // The page's script must never throw, whatever it is shown.
    expect(pageErrors).toEqual([]);
  });

  afterAll(async () => {
    await browser?.close();
    await gateway?.close();
    if (payments && payments.child.exitCode === null) {
      const exited = once(payments.child, 'exit');
      payments.child.kill('SIGTERM');
      await exited;
    }
    await viewer?.close();
  });

  it('lists the traces, newest first, with services, span count, error flag and the related trace', async () => {
    await page.goto(viewer.url);
    const row = page.locator(`tr.trace-row[data-trace-id="${declined.traceId}"]`);
    await row.waitFor();
    // Newest first: the retry (started last), then the declined checkout, then the successful one.
    const order = await page.$$eval('tr.trace-row', (rows) => rows.map((r) => r.getAttribute('data-trace-id')));
    expect(order.indexOf(declined.traceId)).toBeLessThan(order.findIndex((id) => id !== declined.traceId && id !== retryTraceId));
    expect(await row.locator('.root-name').textContent()).toBe('POST /checkout');
    expect(await row.locator('.service-tag').allTextContents()).toEqual(['gateway', 'payments']);
    expect(await row.locator('.span-count').textContent()).toBe(String(declined.spanCount));
    expect(await row.locator('.status .error-badge').textContent()).toMatch(/^ERROR/);
    expect(await row.locator('a.related-trace').textContent()).toBe('↔ schedule payment retry');
    await page.screenshot({ path: join(SCREENSHOT_DIR, 'devtools-trace-list.png') });
  });

  it('opens the declined trace as a waterfall: both services, nesting, colours, ERROR, links, details', async () => {
    await page.locator(`tr.trace-row[data-trace-id="${declined.traceId}"] a.root-name`).click();
    await page.waitForSelector('.span-row');
    expect(page.url()).toContain(`#/trace/${declined.traceId}`);
    const rows = await waterfallRows(page);
    expect(rows).toHaveLength(declined.spanCount);

    const byName = (service: string, name: string): RowInfo => {
      const found = rows.find((row) => row.service === service && row.name === name);
      expect(found, `${service} ${name} in ${JSON.stringify(rows.map((r) => [r.service, r.name]))}`).toBeDefined();
      return found!;
    };
    const gatewayServer = byName('gateway', 'POST /checkout');
    const paymentsServer = byName('payments', 'POST /payments/charges');
    const authorize = byName('payments', 'authorize card');
    // Indented by parent: the payments server span sits below the gateway's fetch, the card check below it.
    expect(rows[0]).toEqual(gatewayServer);
    expect(gatewayServer.depth).toBe(0);
    expect(paymentsServer.depth).toBeGreaterThan(gatewayServer.depth + 1);
    expect(authorize.depth).toBeGreaterThan(paymentsServer.depth);

    // Coloured and labelled by service: one colour per service, the same on the label and the bar.
    for (const row of rows) {
      expect(row.tag).toBe(row.service);
      expect(row.barColor).toBe(row.tagColor);
    }
    expect(gatewayServer.barColor).not.toBe(paymentsServer.barColor);
    expect(new Set(rows.filter((r) => r.service === 'payments').map((r) => r.barColor)).size).toBe(1);

    // ERROR marked on the failing spans, and only there.
    expect(paymentsServer.error).toBe('⚠ ERROR');
    expect(authorize.error).toBe('⚠ ERROR');
    expect(gatewayServer.error).toBeNull();
    expect(await page.locator('.span-row.error').count()).toBe(declined.errorCount);

    // The retry trace links to the gateway's span: shown as "linked from", the way back to it.
    expect(gatewayServer.markers).toEqual(['↩ linked from 1']);

    // Bars sit on one time axis: the root starts it, every bar stays on it, and the gateway's fetch
    // (same process, same clock) lies within the gateway's request. Spans of the other process are
    // not compared with these: two processes' clocks may differ by a few ms.
    const boxes = await page.$$eval('.span-row', (elements) =>
      elements.map((element) => {
        const column = element.querySelector('.timeline-col')!.getBoundingClientRect();
        const bar = element.querySelector('.span-bar')!.getBoundingClientRect();
        return { column: [column.left, column.right], bar: [bar.left, bar.right] };
      }),
    );
    expect(boxes[0]!.bar[0]).toBeCloseTo(boxes[0]!.column[0]!, 0);
    for (const { column, bar } of boxes) {
      expect(bar[0]).toBeGreaterThanOrEqual(column[0]! - 1);
      expect(bar[1]).toBeLessThanOrEqual(column[1]! + 1);
      expect(bar[1]! - bar[0]!).toBeGreaterThanOrEqual(2);
    }
    const fetchBar = boxes[rows.findIndex((row) => row.service === 'gateway' && row.depth === 1)]!.bar;
    expect(fetchBar[0]).toBeGreaterThanOrEqual(boxes[0]!.bar[0]!);
    expect(fetchBar[1]).toBeLessThanOrEqual(boxes[0]!.bar[1]! + 1);

    // Details after a click: attributes, status, events, resource.
    await page.locator(`.span-row[data-span-id="${authorize.spanId}"]`).click();
    const details = page.locator('#details');
    await expect.poll(() => details.locator('.details-name').textContent()).toBe('authorize card');
    const text = (await details.textContent())!;
    expect(text).toContain('ERROR: card declined: amount over limit');
    expect(text).toContain('INTERNAL');
    const attributes = await details.locator('table.kv tr').evaluateAll((trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
    expect(attributes).toContainEqual(['payment.amount', String(DECLINED_AMOUNT)]);
    expect(attributes).toContainEqual(['service.name', 'payments']);
    expect(attributes).toContainEqual(['card.last4', '4242']);
    expect(await details.locator('.event').allTextContents()).toEqual([
      expect.stringContaining('card checked'),
      expect.stringContaining('exception'),
    ]);
    expect(await page.locator('.span-row.selected').getAttribute('data-span-id')).toBe(authorize.spanId);
    await page.screenshot({ path: join(SCREENSHOT_DIR, 'devtools-trace-viewer.png'), fullPage: true });
  });

  it('follows the link marker into the related trace, and back', async () => {
    await page.locator('.span-row').first().locator('.link-marker.link-in').click();
    await page.waitForFunction((id) => (globalThis as unknown as BrowserGlobals).location.hash.startsWith(`#/trace/${id}/span/`), retryTraceId);
    await expect.poll(() => page.locator('.trace-title').textContent()).toBe('schedule payment retry');
    const rows = await waterfallRows(page);
    expect(rows.map((row) => [row.service, row.name, row.markers])).toEqual([['gateway', 'schedule payment retry', ['↪ linked to 1']]]);
    expect(await page.locator('.related a.related-trace').textContent()).toBe('↔ POST /checkout');
    const link = page.locator('#details .link-to');
    expect(await link.locator('.jump').textContent()).toBe('↪ to POST /checkout · gateway');
    expect(await link.textContent()).toContain('payment declined');
    await page.screenshot({ path: join(SCREENSHOT_DIR, 'devtools-linked-trace.png') });

    await link.locator('.jump').click();
    await expect.poll(() => page.locator('.trace-title').textContent()).toBe('POST /checkout');
    await expect.poll(() => page.locator('.span-row.selected .span-name').textContent()).toBe('POST /checkout');
  });

  it('serves a trace at /trace/<id> too', async () => {
    await page.goto(`${viewer.url}trace/${declined.traceId}`);
    await page.waitForSelector('.span-row');
    expect(await page.locator('.trace-title').textContent()).toBe('POST /checkout');
  });

  it('shows names and attributes from the network as text, never as markup', async () => {
    const traceId = 'deadbeefdeadbeefdeadbeefdeadbeef';
    const evil = '<img src=x onerror="window.__xss=1">';
    const response = await plainRequest(viewer.otlpUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        resourceSpans: [
          {
            resource: { attributes: [{ key: 'service.name', value: { stringValue: '<svg onload="window.__xss=2">' } }] },
            scopeSpans: [
              {
                spans: [
                  {
                    traceId,
                    spanId: '00000000000000e1',
                    name: evil,
                    kind: 2,
                    startTimeUnixNano: String(BigInt(Date.now()) * 1_000_000n),
                    endTimeUnixNano: String(BigInt(Date.now() + 5) * 1_000_000n),
                    attributes: [{ key: '<script>window.__xss=3</script>', value: { stringValue: '<b>bold</b>' } }],
                    status: { code: 2, message: '<i>why</i>' },
                  },
                ],
              },
            ],
          },
        ],
      }),
    });
    expect(response.status).toBe(200);
    await page.goto(viewer.url);
    await page.locator(`tr.trace-row[data-trace-id="${traceId}"]`).waitFor();
    await page.goto(`${viewer.url}#/trace/${traceId}/span/00000000000000e1`);
    await expect.poll(() => page.locator('#details .details-name').textContent()).toBe(evil);
    expect(await page.locator('.span-row .span-name').textContent()).toBe(evil);
    expect(await page.locator('#app img, #app svg, #app b, #app i, #app script').count()).toBe(0);
    expect(await page.evaluate(() => (globalThis as unknown as BrowserGlobals).__xss)).toBeUndefined();
    expect(await page.locator('#details').textContent()).toContain('<b>bold</b>');
  });
});
