import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { Controller, Get, Injectable, Module, Param, type INestApplication, type INestMicroservice } from '@nestjs/common';
import { EventPattern, MessagePattern, type ServerNats } from '@nestjs/microservices';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { TraceService, Traced } from '../lib/index.js';
import { OtelTestingModule, getSpan, spanRecorder, spanTree, traceOf } from '../lib/testing/index.js';
import { OtelServerNats } from '../lib/transports/nats/index.js';
import { plainRequest } from './support/http-request.js';
import { connect, type NatsConnection } from './support/nats-driver.js';

/**
 * One error thrown deep inside a request or a message bubbles up through every span around it.
 * The semantic conventions ask for it to be recorded once: ONE `exception` event, on the
 * innermost span, while every span it failed gets status ERROR and `error.type`.
 */

const NATS_URL = 'nats://127.0.0.1:4222';
// Unique subjects: other runs on the same broker never see these messages.
const RUN = `otel-nest-e2e.record-once.${randomUUID().slice(0, 8)}`;
const RESERVE = `${RUN}.stock.reserve`;
const RESERVED = `${RUN}.stock.reserved`;

class PaymentDeclinedError extends Error {}
class OutOfStockError extends Error {}

@Injectable()
class PaymentGateway {
  constructor(private readonly traces: TraceService) {}

  @Traced()
  authorize(id: string): never {
    return this.traces.withSpan('gateway call', () => {
      throw new PaymentDeclinedError(`card declined for ${id}`);
    });
  }

  @Traced()
  async authorizeLater(id: string): Promise<never> {
    await new Promise((resolve) => setTimeout(resolve, 2));
    return this.traces.withSpan('gateway call', async () => {
      await new Promise((resolve) => setTimeout(resolve, 2));
      throw new PaymentDeclinedError(`card declined for ${id}`);
    });
  }
}

@Injectable()
class PaymentsService {
  constructor(private readonly gateway: PaymentGateway) {}

  @Traced()
  charge(id: string): never {
    return this.gateway.authorize(id);
  }

  @Traced()
  async chargeLater(id: string): Promise<never> {
    return this.gateway.authorizeLater(id);
  }
}

@Controller('checkout')
class CheckoutController {
  constructor(private readonly payments: PaymentsService) {}

  @Get(':id')
  checkout(@Param('id') id: string): never {
    return this.payments.charge(id);
  }

  @Get(':id/async')
  checkoutLater(@Param('id') id: string): Promise<never> {
    return this.payments.chargeLater(id);
  }
}

@Injectable()
class StockService {
  constructor(private readonly traces: TraceService) {}

  @Traced()
  reserve(sku: string): never {
    return this.traces.withSpan('stock lookup', () => {
      throw new OutOfStockError(`no ${sku} left`);
    });
  }
}

@Controller()
class StockController {
  constructor(private readonly stock: StockService) {}

  @MessagePattern(RESERVE)
  reserve(data: { sku: string }): never {
    return this.stock.reserve(data.sku);
  }

  @EventPattern(RESERVED)
  onReserved(data: unknown): void {
    this.stock.reserve((data as { sku: string }).sku);
  }
}

/** Every `exception` event of the given spans, with the span it is on. */
function exceptionEvents(spans: readonly ReadableSpan[]): Array<{ span: string; type: unknown }> {
  return spans.flatMap((span) =>
    span.events.filter((event) => event.name === 'exception').map((event) => ({ span: span.name, type: event.attributes?.['exception.type'] })),
  );
}

function expectFailed(span: ReadableSpan, errorType: string, tree: string): void {
  expect(span.status.code, `${span.name}\n${tree}`).toBe(SpanStatusCode.ERROR);
  expect(span.attributes['error.type'], `${span.name}\n${tree}`).toBe(errorType);
}

@Module({
  imports: [OtelTestingModule.forRoot({ serviceName: 'record-once-http' })],
  controllers: [CheckoutController],
  providers: [PaymentsService, PaymentGateway],
})
class CheckoutModule {}

describe.each(['express', 'fastify'] as const)('an error recorded once across nested spans: HTTP (%s)', (platform) => {
  let app: INestApplication;
  let base: string;

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({ imports: [CheckoutModule] }).compile();
    app = platform === 'fastify' ? moduleRef.createNestApplication(new FastifyAdapter()) : moduleRef.createNestApplication();
    app.useLogger(false);
    await app.listen(0, '127.0.0.1');
    base = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  });
  afterAll(async () => {
    await app?.close();
  });
  beforeEach(() => spanRecorder.reset());

  it.each([
    ['sync', '/checkout/7'],
    ['async', '/checkout/7/async'],
  ])('%s: SERVER > @Traced > @Traced > withSpan: one exception event, on withSpan; all four ERROR', async (_label, path) => {
    const response = await plainRequest(`${base}${path}`);
    expect(response.status).toBe(500);
    const spans = await spanRecorder.waitForSpans((s) => s.some((span) => span.kind === SpanKind.SERVER));
    const server = getSpan(spans, { kind: SpanKind.SERVER });
    const trace = traceOf(spans, server);
    const tree = spanTree(trace);
    const charge = getSpan(trace, /^PaymentsService\.charge/);
    const authorize = getSpan(trace, /^PaymentGateway\.authorize/);
    const call = getSpan(trace, 'gateway call');
    // The nesting the error bubbles through.
    expect(call.parentSpanContext?.spanId, tree).toBe(authorize.spanContext().spanId);
    expect(authorize.parentSpanContext?.spanId, tree).toBe(charge.spanContext().spanId);
    expect(charge.parentSpanContext?.spanId, tree).toBe(server.spanContext().spanId);

    expect(exceptionEvents(trace), tree).toEqual([{ span: 'gateway call', type: 'PaymentDeclinedError' }]);
    for (const span of [call, authorize, charge]) {
      expectFailed(span, 'PaymentDeclinedError', tree);
    }
    expectFailed(server, '500', tree);
    expect(server.status.message, tree).toBe('card declined for 7');
  });
});

describe('an error recorded once across nested spans: NATS consumer', () => {
  let service: INestMicroservice;
  let server: OtelServerNats;
  let raw: NatsConnection;

  beforeAll(async () => {
    @Module({
      imports: [OtelTestingModule.forRoot({ serviceName: 'record-once-nats' })],
      controllers: [StockController],
      providers: [StockService],
    })
    class StockModule {}
    server = new OtelServerNats({ servers: [NATS_URL] });
    service = (await Test.createTestingModule({ imports: [StockModule] }).compile()).createNestMicroservice({ strategy: server });
    service.useLogger(false);
    await service.listen();
    // The server's SUBs must reach the broker before another connection publishes.
    await (server as ServerNats).unwrap<NatsConnection>().flush();
    raw = await connect({ servers: [NATS_URL] });
  });
  afterAll(async () => {
    await raw?.close();
    await service?.close();
  });
  beforeEach(() => spanRecorder.reset());

  async function consumerTrace(subject: string): Promise<{ trace: ReadableSpan[]; consumer: ReadableSpan; tree: string }> {
    const spans = await spanRecorder.waitForSpans((s) =>
      s.some((span) => span.kind === SpanKind.CONSUMER && span.name === `process ${subject}`),
    );
    const consumer = getSpan(spans, { kind: SpanKind.CONSUMER, name: `process ${subject}` });
    const trace = traceOf(spans, consumer);
    return { trace, consumer, tree: spanTree(trace) };
  }

  function expectRecordedOnce(trace: ReadableSpan[], consumer: ReadableSpan, tree: string): void {
    const reserve = getSpan(trace, /^StockService\.reserve/);
    const lookup = getSpan(trace, 'stock lookup');
    expect(lookup.parentSpanContext?.spanId, tree).toBe(reserve.spanContext().spanId);
    expect(reserve.parentSpanContext?.spanId, tree).toBe(consumer.spanContext().spanId);

    expect(exceptionEvents(trace), tree).toEqual([{ span: 'stock lookup', type: 'OutOfStockError' }]);
    for (const span of [lookup, reserve, consumer]) {
      expectFailed(span, 'OutOfStockError', tree);
    }
  }

  it('request-reply: CONSUMER > @Traced > withSpan: one exception event, on withSpan; all three ERROR', async () => {
    const reply = await raw.request(RESERVE, JSON.stringify({ pattern: RESERVE, data: { sku: 'sku-1' }, id: 'r-1' }), { timeout: 5000 });
    // Nest answers with its error reply; the handler's error did not leak out as ours.
    expect(reply.json<{ err?: unknown; id: string }>()).toMatchObject({ id: 'r-1', err: expect.anything() });
    const { trace, consumer, tree } = await consumerTrace(RESERVE);
    expectRecordedOnce(trace, consumer, tree);
  });

  it('event: CONSUMER > @Traced > withSpan: one exception event, on withSpan; all three ERROR', async () => {
    raw.publish(RESERVED, JSON.stringify({ pattern: RESERVED, data: { sku: 'sku-2' } }));
    const { trace, consumer, tree } = await consumerTrace(RESERVED);
    expectRecordedOnce(trace, consumer, tree);
  });
});
