import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { Controller, Get, Inject, Logger, Module, Param, type INestApplication, type LoggerService } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ClientsModule, EventPattern, Payload, type ClientProxy } from '@nestjs/microservices';
import { WinstonModule } from 'nest-winston';
import { LoggerModule, Logger as PinoNestLogger } from 'nestjs-pino';
import { firstValueFrom } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import winston from 'winston';
import {
  OtelClientNats,
  OtelConsoleLogger,
  OtelModule,
  OtelServerNats,
  Traced,
  otelPinoMixin,
  otelWinstonFormat,
  type OtelModuleOptions,
} from '../lib/index.js';
import { plainRequest } from './support/http-request.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './support/otlp-receiver.js';

/**
 * Log correlation on a real Nest app (express) exporting to a real OTLP receiver: the lines that
 * ConsoleLogger (text and JSON), nestjs-pino and nest-winston write inside a request carry the
 * trace id, span id and flags of the span that was active (the SERVER span, a @Traced child, the
 * NATS CONSUMER span), as the receiver got them; the lines of bootstrap and of code outside any
 * request carry none.
 */

const NATS_SERVERS = ['nats://127.0.0.1:4222'];
const RUN = `otel-nest-logs.${randomUUID().slice(0, 8)}`;
const SUBJECT = `${RUN}.order.shipped`;
const NATS_CLIENT = 'NATS_CLIENT';
const SERVER = 2;
const INTERNAL = 1;
const CONSUMER = 5;

let receiver: OtlpReceiver;
let options: OtelModuleOptions;

/** What a log line says about its trace, in any of the three formats. */
interface Correlation {
  traceId?: string;
  spanId?: string;
  traceFlags?: string;
  message: string;
}

@Controller('orders')
class OrdersController {
  private readonly logger = new Logger('OrdersController');

  constructor(@Inject(NATS_CLIENT) private readonly nats: ClientProxy) {}

  @Get(':id')
  find(@Param('id') id: string): { id: string; stock: number } {
    this.logger.log(`find order ${id}`);
    return { id, stock: this.lookup(id) };
  }

  @Get(':id/ship')
  async ship(@Param('id') id: string): Promise<{ id: string }> {
    this.logger.log(`ship order ${id}`);
    await firstValueFrom(this.nats.emit(SUBJECT, { id }));
    return { id };
  }

  @Traced('stock.lookup')
  lookup(id: string): number {
    this.logger.warn(`look up stock of ${id}`);
    return 7;
  }
}

const shipped: string[] = [];

@Controller()
class ShippingController {
  private readonly logger = new Logger('ShippingController');

  @EventPattern<string>(SUBJECT)
  onShipped(@Payload() data: { id: string }): void {
    this.logger.log(`order ${data.id} shipped`);
    shipped.push(data.id);
  }
}

function imports(): NonNullable<Parameters<typeof Module>[0]>['imports'] {
  return [
    OtelModule.forRoot(options),
    ClientsModule.register([{ name: NATS_CLIENT, customClass: OtelClientNats, options: { servers: NATS_SERVERS } }]),
  ];
}

/** Captures what is written to process.stdout (where ConsoleLogger writes its non-error levels) until restored. */
function captureStdout(): { text(): string; restore(): void } {
  const original = process.stdout.write;
  let text = '';
  process.stdout.write = ((chunk: string | Uint8Array) => {
    text += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    return true;
  }) as typeof process.stdout.write;
  return { text: () => text, restore: () => (process.stdout.write = original) };
}

/** A stream destination that keeps every line written to it. */
function lineSink(): { stream: Writable; lines: string[] } {
  const lines: string[] = [];
  let pending = '';
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      pending += chunk.toString();
      const parts = pending.split('\n');
      pending = parts.pop()!;
      lines.push(...parts.filter((line) => line.trim() !== ''));
      callback();
    },
  });
  return { stream, lines };
}

const TEXT_IDS = /trace_id=(?<traceId>[0-9a-f]{32}) span_id=(?<spanId>[0-9a-f]{16}) trace_flags=(?<traceFlags>[0-9a-f]{2})/;

function fromText(line: string): Correlation {
  const ids = TEXT_IDS.exec(line)?.groups ?? {};
  return { ...ids, message: line };
}

/** `message` is the record's message, and for pino-http's own lines the request URL after it. */
function fromJson(line: string, messageKey: string): Correlation {
  const object = JSON.parse(line) as Record<string, unknown>;
  const url = (object.req as { url?: string } | undefined)?.url;
  return {
    traceId: object.trace_id as string | undefined,
    spanId: object.span_id as string | undefined,
    traceFlags: object.trace_flags as string | undefined,
    message: `${String(object[messageKey] ?? '')}${url && object[messageKey] === 'request completed' ? ` ${url}` : ''}`,
  };
}

/** The one line whose message contains `text`. */
function lineWith(lines: readonly Correlation[], text: string): Correlation {
  const found = lines.filter((line) => line.message.includes(text));
  expect(found, `lines with "${text}" in:\n${lines.map((line) => line.message).join('\n')}`).toHaveLength(1);
  return found[0]!;
}

/** The SERVER span of `GET path` and, when asked, a span of its trace by name. */
async function requestSpans(path: string): Promise<{ server: ReceivedSpan; spans: ReceivedSpan[] }> {
  const [server] = await receiver.waitForSpans((span) => span.kind === SERVER && span.attributes['url.path'] === path);
  return { server: server!, spans: receiver.spans.filter((span) => span.traceId === server!.traceId) };
}

/** The ids of `span`, and flags with the sampled bit (`03`: sampled and random, Trace Context Level 2). */
function expectIdsOf(line: Correlation, span: ReceivedSpan): void {
  expect({ traceId: line.traceId, spanId: line.spanId }).toEqual({ traceId: span.traceId, spanId: span.spanId });
  expect(line.traceFlags).toBe('03');
}

function expectNoIds(lines: readonly Correlation[]): void {
  expect(lines.length).toBeGreaterThan(0);
  expect(lines.filter((line) => line.traceId !== undefined || line.spanId !== undefined).map((line) => line.message)).toEqual([]);
}

/**
 * Starts `module` with `logger`, logs outside any request, requests /orders/:id (a SERVER span
 * and a @Traced child) and returns the request's spans.
 */
async function exercise(app: INestApplication, id: string): Promise<{ server: ReceivedSpan; lookup: ReceivedSpan }> {
  await app.listen(0, '127.0.0.1');
  new Logger('Outside').log(`outside any request ${id}`);
  const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  const response = await plainRequest(`${url}/orders/${id}`);
  expect(response.status).toBe(200);
  const { server, spans } = await requestSpans(`/orders/${id}`);
  const lookup = spans.find((span) => span.name === 'stock.lookup');
  expect(lookup?.kind).toBe(INTERNAL);
  expect(lookup?.parentSpanId).toBe(server.spanId);
  return { server, lookup: lookup! };
}

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  options = { serviceName: 'log-correlation', exporter: { url: receiver.url }, batch: false, logSummary: false };
});

afterAll(async () => {
  await receiver?.close();
});

describe("Nest's ConsoleLogger: OtelConsoleLogger", () => {
  it('text mode: trace_id, span_id and trace_flags at the end of every line inside the request, none outside', async () => {
    @Module({ imports: imports(), controllers: [OrdersController] })
    class TextModule {}

    const capture = captureStdout();
    let app: INestApplication | undefined;
    try {
      app = await NestFactory.create(TextModule, { logger: new OtelConsoleLogger({ colors: false }) });
      const { server, lookup } = await exercise(app, 'text-1');
      await app.close();
      app = undefined;
      capture.restore();

      const lines = capture.text().split('\n').filter(Boolean).map(fromText);
      const find = lineWith(lines, 'find order text-1');
      expectIdsOf(find, server);
      expect(find.message).toMatch(/\[OrdersController\] find order text-1 trace_id=[0-9a-f]{32} span_id=[0-9a-f]{16} trace_flags=03$/);
      expectIdsOf(lineWith(lines, 'look up stock of text-1'), lookup);
      // Bootstrap (InstanceLoader, RoutesResolver, NestApplication), the line outside, shutdown.
      expectNoIds(lines.filter((line) => !line.message.includes('text-1') || line.message.includes('outside')));
      expect(lines.some((line) => line.message.includes('[RoutesResolver]'))).toBe(true);
    } finally {
      capture.restore();
      await app?.close();
    }
  });

  it('JSON mode: the fields next to level, message and context; a NATS handler logs the CONSUMER span', async () => {
    @Module({ imports: imports(), controllers: [OrdersController, ShippingController] })
    class JsonModule {}

    const capture = captureStdout();
    let app: INestApplication | undefined;
    try {
      app = await NestFactory.create(JsonModule, { logger: new OtelConsoleLogger({ json: true }) });
      app.connectMicroservice({ strategy: new OtelServerNats({ servers: NATS_SERVERS }) });
      await app.startAllMicroservices();
      const { server, lookup } = await exercise(app, 'json-1');

      const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
      expect((await plainRequest(`${url}/orders/json-2/ship`)).status).toBe(200);
      const [consumer] = await receiver.waitForSpans((span) => span.kind === CONSUMER && span.name === `process ${SUBJECT}`);
      await expect.poll(() => shipped).toContain('json-2');
      await app.close();
      app = undefined;
      capture.restore();

      const records = capture.text().split('\n').filter(Boolean);
      const lines = records.map((line) => fromJson(line, 'message'));
      const find = lineWith(lines, 'find order json-1');
      expectIdsOf(find, server);
      expect(JSON.parse(records.find((line) => line.includes('find order json-1'))!)).toMatchObject({
        level: 'log',
        context: 'OrdersController',
        message: 'find order json-1',
      });
      expectIdsOf(lineWith(lines, 'look up stock of json-1'), lookup);

      const ship = lineWith(lines, 'ship order json-2');
      const handled = lineWith(lines, 'order json-2 shipped');
      expectIdsOf(handled, consumer!);
      // An event starts its own trace, linked to the producer's (the default eventConsume: 'link').
      expect(consumer!.links.map((link) => link.traceId)).toEqual([ship.traceId]);

      expectNoIds(lines.filter((line) => !/json-\d/.test(line.message) || line.message.includes('outside')));
    } finally {
      capture.restore();
      await app?.close();
    }
  });
});

describe('nestjs-pino: otelPinoMixin()', () => {
  it('every line of the request, its own and pino-http\'s, carries the ids; bootstrap lines carry none', async () => {
    const sink = lineSink();
    @Module({
      imports: [
        ...imports()!,
        LoggerModule.forRoot({ pinoHttp: [{ mixin: otelPinoMixin(), level: 'info' }, sink.stream] }),
      ],
      controllers: [OrdersController],
    })
    class PinoModule {}

    const app = await NestFactory.create(PinoModule, { bufferLogs: true });
    try {
      app.useLogger(app.get(PinoNestLogger));
      const { server, lookup } = await exercise(app, 'pino-1');
      await app.close();

      const lines = sink.lines.map((line) => fromJson(line, 'msg'));
      expectIdsOf(lineWith(lines, 'find order pino-1'), server);
      expectIdsOf(lineWith(lines, 'look up stock of pino-1'), lookup);
      // pino-http's own line, written when the response finishes, still in the request's context.
      expectIdsOf(lineWith(lines, 'request completed /orders/pino-1'), server);
      expect(JSON.parse(sink.lines.find((line) => line.includes('find order pino-1'))!)).toMatchObject({
        level: 30,
        context: 'OrdersController',
        req: { url: '/orders/pino-1' },
      });
      expectNoIds(lines.filter((line) => !line.message.includes('pino-1') || line.message.includes('outside')));
    } finally {
      await app.close();
    }
  });
});

describe('nest-winston: otelWinstonFormat()', () => {
  it('every entry written inside the request carries the ids; bootstrap entries carry none', async () => {
    const sink = lineSink();
    const logger: LoggerService = WinstonModule.createLogger({
      format: winston.format.combine(otelWinstonFormat(), winston.format.json()),
      transports: [new winston.transports.Stream({ stream: sink.stream })],
    });
    @Module({ imports: imports(), controllers: [OrdersController] })
    class WinstonAppModule {}

    const app = await NestFactory.create(WinstonAppModule, { logger });
    try {
      const { server, lookup } = await exercise(app, 'winston-1');
      await app.close();

      const lines = sink.lines.map((line) => fromJson(line, 'message'));
      expectIdsOf(lineWith(lines, 'find order winston-1'), server);
      expectIdsOf(lineWith(lines, 'look up stock of winston-1'), lookup);
      expect(JSON.parse(sink.lines.find((line) => line.includes('find order winston-1'))!)).toMatchObject({
        level: 'info',
        context: 'OrdersController',
      });
      expectNoIds(lines.filter((line) => !line.message.includes('winston-1') || line.message.includes('outside')));
    } finally {
      await app.close();
    }
  });
});
