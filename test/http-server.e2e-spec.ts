import 'reflect-metadata';
import {
  BadRequestException,
  Controller,
  Get,
  Injectable,
  Param,
  Post,
  UseGuards,
  type CanActivate,
  type INestApplication,
  type PipeTransform,
  UsePipes,
  Body,
  Module,
} from '@nestjs/common';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { timer, map, type Observable } from 'rxjs';
import { TraceService, Traced } from '../lib/index.js';
import { plainRequest } from './support/http-request.js';
import { OtelTestingModule, expectSpan, getSpan, spanRecorder, findSpans } from '../lib/testing/index.js';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_ID = '00f067aa0ba902b7';

@Injectable()
class DenyGuard implements CanActivate {
  canActivate(): boolean {
    return false;
  }
}

@Injectable()
class PositivePipe implements PipeTransform {
  transform(value: { quantity?: number }): unknown {
    if (typeof value?.quantity !== 'number' || value.quantity <= 0) {
      throw new BadRequestException('quantity must be a positive number');
    }
    return value;
  }
}

class PaymentDeclinedError extends Error {}

@Injectable()
class OrdersService {
  @Traced()
  lookup(id: string): { id: string; traceId?: string } {
    return { id, traceId: trace.getActiveSpan()?.spanContext().traceId };
  }
}

@Controller('orders')
class OrdersController {
  constructor(
    private readonly orders: OrdersService,
    private readonly traces: TraceService,
  ) {}

  @Get(':id')
  findOne(@Param('id') id: string): { id: string; traceId?: string } {
    return this.orders.lookup(id);
  }

  @Get(':id/fail')
  fail(): never {
    throw new PaymentDeclinedError('card declined');
  }

  @Get(':id/stream')
  stream(@Param('id') id: string): Observable<{ id: string; traceId?: string }> {
    // The value is produced after the handler returned, on a timer: it must still see the span.
    return timer(5).pipe(map(() => ({ id, traceId: this.traces.getTraceId() })));
  }

  @Get(':id/secret')
  @UseGuards(DenyGuard)
  secret(): string {
    return 'never';
  }

  @Post(':id/notes')
  async addNote(@Body() body: { note: string }): Promise<{ note: string; traceId?: string }> {
    // The body was read from the request stream's events; the handler still runs in the span.
    await new Promise((resolve) => setTimeout(resolve, 2));
    return { note: body.note, traceId: this.traces.getTraceId() };
  }

  @Post()
  @UsePipes(PositivePipe)
  create(@Body() body: { quantity: number }): { created: number } {
    return { created: body.quantity };
  }
}

@Module({
  imports: [OtelTestingModule.forRoot({ serviceName: 'http-e2e' })],
  controllers: [OrdersController],
  providers: [OrdersService],
})
class AppModule {}

describe.each(['express', 'fastify'] as const)('HTTP server spans (%s)', (platform) => {
  let app: INestApplication;
  let base: string;

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
    app = platform === 'fastify' ? moduleRef.createNestApplication(new FastifyAdapter()) : moduleRef.createNestApplication();
    await app.listen(0, '127.0.0.1');
    base = await app.getUrl();
    base = base.replace('[::1]', '127.0.0.1');
  });

  afterAll(async () => {
    await app?.close();
  });

  beforeEach(() => spanRecorder.reset());

  it('continues the caller trace from traceparent with the route name and stable attributes', async () => {
    const response = await plainRequest(`${base}/orders/42?verbose=1&X-Amz-Signature=abc`, {
      headers: { traceparent: `00-${TRACE_ID}-${PARENT_ID}-01`, 'user-agent': 'otel-nest-test' },
    });
    expect(response.status).toBe(200);
    const body = response.json() as { id: string; traceId: string };
    expect(body).toEqual({ id: '42', traceId: TRACE_ID });

    const spans = await spanRecorder.waitForSpans((s) => s.some((span) => span.kind === SpanKind.SERVER));
    const server = getSpan(spans, { kind: SpanKind.SERVER });
    expectSpan(server, spans)
      .toHaveName('GET /orders/:id')
      .toHaveAttributes({
        'http.request.method': 'GET',
        'http.route': '/orders/:id',
        'url.path': '/orders/42',
        'url.scheme': 'http',
        'url.query': 'verbose=1&X-Amz-Signature=REDACTED',
        'http.response.status_code': 200,
        'server.address': '127.0.0.1',
        'client.address': '127.0.0.1',
        'user_agent.original': 'otel-nest-test',
        'nestjs.controller': 'OrdersController',
        'nestjs.handler': 'findOne',
      })
      .toHaveStatus(SpanStatusCode.UNSET);
    expect(server.spanContext().traceId).toBe(TRACE_ID);
    expect(server.parentSpanContext?.spanId).toBe(PARENT_ID);
    expect(server.attributes['server.port']).toBe(Number(new URL(base).port));
    // The @Traced service method ran inside the request span.
    expectSpan(getSpan(spans, 'OrdersService.lookup'), spans).toHaveParent(server).toHaveKind(SpanKind.INTERNAL);
  });

  it('starts a new root trace when there is no traceparent', async () => {
    await plainRequest(`${base}/orders/7`);
    const spans = await spanRecorder.waitForSpans((s) => s.some((span) => span.kind === SpanKind.SERVER));
    const server = getSpan(spans, { kind: SpanKind.SERVER });
    expectSpan(server, spans).toBeRoot().toHaveName('GET /orders/:id');
  });

  it('keeps the span active inside an Observable the handler returns', async () => {
    const response = await plainRequest(`${base}/orders/9/stream`, { headers: { traceparent: `00-${TRACE_ID}-${PARENT_ID}-01` } });
    expect(response.json()).toEqual({ id: '9', traceId: TRACE_ID });
    const spans = await spanRecorder.waitForSpans(1);
    expectSpan(getSpan(spans, { kind: SpanKind.SERVER }), spans).toHaveName('GET /orders/:id/stream');
  });

  it('marks a thrown error as a 500 ERROR span with error.type, recorded once', async () => {
    const response = await plainRequest(`${base}/orders/1/fail`);
    expect(response.status).toBe(500);
    const spans = await spanRecorder.waitForSpans(1);
    const server = getSpan(spans, { kind: SpanKind.SERVER });
    expectSpan(server, spans)
      .toHaveName('GET /orders/:id/fail')
      .toHaveStatus(SpanStatusCode.ERROR, 'card declined')
      .toHaveAttributes({ 'http.response.status_code': 500, 'error.type': '500' });
    expect(server.events.filter((event) => event.name === 'exception')).toHaveLength(1);
    expect(server.events[0]?.attributes?.['exception.type']).toBe('PaymentDeclinedError');
  });

  it('traces a request a guard rejects (403, status unset)', async () => {
    const response = await plainRequest(`${base}/orders/1/secret`);
    expect(response.status).toBe(403);
    const spans = await spanRecorder.waitForSpans(1);
    expectSpan(getSpan(spans, { kind: SpanKind.SERVER }), spans)
      .toHaveName('GET /orders/:id/secret')
      .toHaveAttributes({ 'http.response.status_code': 403, 'http.route': '/orders/:id/secret' })
      .toHaveStatus(SpanStatusCode.UNSET)
      .toNotHaveAttribute('error.type');
  });

  it('traces a request a pipe rejects (400)', async () => {
    const response = await plainRequest(`${base}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ quantity: -1 }),
    });
    expect(response.status).toBe(400);
    const spans = await spanRecorder.waitForSpans(1);
    expectSpan(getSpan(spans, { kind: SpanKind.SERVER }), spans)
      .toHaveName('POST /orders')
      .toHaveAttributes({ 'http.response.status_code': 400, 'http.request.method': 'POST' })
      .toHaveStatus(SpanStatusCode.UNSET);
  });

  it('keeps the span active for a request with a body (parsed from stream events)', async () => {
    const response = await plainRequest(`${base}/orders/4/notes`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: `00-${TRACE_ID}-${PARENT_ID}-01` },
      // In pieces: the server reads the later ones from socket events, outside the hook's turn.
      bodyChunks: ['{"note":', '"leave at ', 'the door"}'],
    });
    expect(response.status).toBe(201);
    expect(response.json()).toEqual({ note: 'leave at the door', traceId: TRACE_ID });
    const spans = await spanRecorder.waitForSpans(1);
    expectSpan(getSpan(spans, { kind: SpanKind.SERVER }), spans).toHaveName('POST /orders/:id/notes');
  });

  it('traces an unknown route (404) without using the raw path as name', async () => {
    const response = await plainRequest(`${base}/nowhere/123`);
    expect(response.status).toBe(404);
    const spans = await spanRecorder.waitForSpans(1);
    expectSpan(getSpan(spans, { kind: SpanKind.SERVER }), spans)
      .toHaveName('GET')
      .toHaveAttributes({ 'http.response.status_code': 404, 'url.path': '/nowhere/123' })
      .toNotHaveAttribute('http.route')
      .toHaveStatus(SpanStatusCode.UNSET);
  });

  it.each([
    ['garbage', { traceparent: 'garbage!!' }],
    ['too long', { traceparent: `00-${TRACE_ID}-${PARENT_ID}-01-${'x'.repeat(600)}` }],
    ['unknown version ff', { traceparent: `ff-${TRACE_ID}-${PARENT_ID}-01` }],
    ['all-zero trace id', { traceparent: `00-${'0'.repeat(32)}-${PARENT_ID}-01` }],
    ['all-zero span id', { traceparent: `00-${TRACE_ID}-${'0'.repeat(16)}-01` }],
    ['bad baggage', { traceparent: 'nope', baggage: '=;;;%%%,k=v=w,' + 'a'.repeat(9000) }],
  ])('answers 200 with a new root trace for a malformed header (%s)', async (_label, headers) => {
    const response = await plainRequest(`${base}/orders/5`, { headers });
    expect(response.status).toBe(200);
    const spans = await spanRecorder.waitForSpans(1);
    const server = getSpan(spans, { kind: SpanKind.SERVER });
    expectSpan(server, spans).toBeRoot();
    expect(server.spanContext().traceId).not.toBe(TRACE_ID);
    expect(server.spanContext().traceId).not.toBe('0'.repeat(32));
  });

  it('keeps 200 concurrent requests in 200 distinct traces', async () => {
    const count = 200;
    const traceIds = Array.from({ length: count }, (_, i) => (i + 1).toString(16).padStart(32, 'a'));
    const bodies = await Promise.all(
      traceIds.map(async (traceId, i) => {
        const response = await plainRequest(`${base}/orders/${i}/stream`, {
          headers: { traceparent: `00-${traceId}-${PARENT_ID}-01` },
        });
        return response.json() as { id: string; traceId: string };
      }),
    );
    // Each handler saw its own trace, even though the Observables resolved interleaved.
    bodies.forEach((body, i) => expect(body).toEqual({ id: String(i), traceId: traceIds[i] }));
    const spans = await spanRecorder.waitForSpans((s) => findSpans(s, { kind: SpanKind.SERVER }).length >= count);
    const servers = findSpans(spans, { kind: SpanKind.SERVER });
    expect(new Set(servers.map((span) => span.spanContext().traceId))).toEqual(new Set(traceIds));
    for (const span of servers) {
      expect(span.parentSpanContext?.spanId).toBe(PARENT_ID);
    }
  });
});
