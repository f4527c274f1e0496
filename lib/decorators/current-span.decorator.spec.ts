import {
  Controller,
  Get,
  Injectable,
  UseInterceptors,
  type CallHandler,
  type ExecutionContext,
  type INestApplication,
  type NestInterceptor,
} from '@nestjs/common';
import { ClientProxyFactory, MessagePattern, Transport, type ClientProxy } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { context, propagation, trace, type Span } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import { TracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace';
import { createServer } from 'node:net';
import { finalize, firstValueFrom, type Observable } from 'rxjs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TraceService } from '../services/trace.service.js';
import { withContext } from '../utils/run-in-context.js';
import { Baggage, CurrentSpan } from './current-span.decorator.js';

const exporter = new InMemorySpanExporter();
const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
const contextManager = new AsyncLocalStorageContextManager();

/**
 * Stands in for the module's handler tracing: an active span around the handler, with the caller's
 * baggage extracted from the HTTP headers.
 */
@Injectable()
class TestSpanInterceptor implements NestInterceptor {
  intercept(ctx: ExecutionContext, next: CallHandler): Observable<unknown> {
    let parent = context.active();
    if (ctx.getType() === 'http') {
      parent = propagation.extract(parent, ctx.switchToHttp().getRequest<{ headers: Record<string, string> }>().headers);
    }
    const span = trace.getTracer('current-span.spec').startSpan(`handler ${ctx.getHandler().name}`, {}, parent);
    return withContext(trace.setSpan(parent, span), () => next.handle()).pipe(finalize(() => span.end()));
  }
}

const describeSpan = (span: Span | undefined) =>
  span ? { spanId: span.spanContext().spanId, recording: span.isRecording() } : { none: true };

@Controller('params')
@UseInterceptors(TestSpanInterceptor)
class ParamsController {
  constructor(private readonly traceService: TraceService) {}

  @Get('span')
  span(@CurrentSpan() span: Span | undefined) {
    return { ...describeSpan(span), serviceSpanId: this.traceService.getSpanId() };
  }

  @Get('baggage')
  baggage(@Baggage('tenant.id') tenant: string | undefined, @Baggage() all: Record<string, string>) {
    return { tenant: tenant ?? null, all };
  }

  @MessagePattern('params.span')
  rpcSpan(@CurrentSpan() span: Span | undefined) {
    return describeSpan(span);
  }
}

@Controller('untraced')
class UntracedController {
  @Get('span')
  span(@CurrentSpan() span: Span | undefined, @Baggage('tenant.id') tenant: string | undefined) {
    return { ...describeSpan(span), tenant: tenant ?? null };
  }
}

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });

describe('@CurrentSpan and @Baggage', () => {
  let app: INestApplication;
  let baseUrl: string;
  let client: ClientProxy;

  beforeAll(async () => {
    trace.setGlobalTracerProvider(provider);
    context.setGlobalContextManager(contextManager.enable());
    propagation.setGlobalPropagator(
      new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }),
    );
    const moduleRef = await Test.createTestingModule({
      controllers: [ParamsController, UntracedController],
      providers: [TraceService],
    }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    const port = await freePort();
    app.connectMicroservice({ transport: Transport.TCP, options: { host: '127.0.0.1', port } }, { inheritAppConfig: true });
    await app.startAllMicroservices();
    await app.listen(0, '127.0.0.1');
    baseUrl = (await app.getUrl()).replace('[::1]', '127.0.0.1');
    client = ClientProxyFactory.create({ transport: Transport.TCP, options: { host: '127.0.0.1', port } });
    await client.connect();
  });
  afterEach(() => exporter.reset());
  afterAll(async () => {
    await client?.close();
    await app?.close();
    await provider.shutdown();
    contextManager.disable();
    trace.disable();
    context.disable();
    propagation.disable();
  });

  const handlerSpan = (name: string) => {
    const spans = exporter.getFinishedSpans().filter((span) => span.name === `handler ${name}`);
    expect(spans).toHaveLength(1);
    return spans[0]!;
  };

  it('@CurrentSpan() injects the span active around an HTTP handler', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const body = (await (
      await fetch(`${baseUrl}/params/span`, { headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } })
    ).json()) as { spanId: string; recording: boolean; serviceSpanId: string };
    const span = handlerSpan('span');
    expect(body.spanId).toBe(span.spanContext().spanId);
    expect(body.serviceSpanId).toBe(span.spanContext().spanId);
    expect(body.recording).toBe(true);
    expect(span.spanContext().traceId).toBe(traceId);
  });

  it('@CurrentSpan() injects the active span of an RPC handler', async () => {
    const reply = await firstValueFrom(client.send<{ spanId: string; recording: boolean }>('params.span', {}));
    expect(reply.spanId).toBe(handlerSpan('rpcSpan').spanContext().spanId);
    expect(reply.recording).toBe(true);
  });

  it('@Baggage(key) injects one entry and @Baggage() all entries of the request baggage', async () => {
    const response = await fetch(`${baseUrl}/params/baggage`, {
      headers: { baggage: 'tenant.id=acme,user.id=u-7' },
    });
    expect(await response.json()).toEqual({ tenant: 'acme', all: { 'tenant.id': 'acme', 'user.id': 'u-7' } });

    const empty = await fetch(`${baseUrl}/params/baggage`);
    expect(await empty.json()).toEqual({ tenant: null, all: {} });
  });

  it('injects undefined when no span and no baggage are active', async () => {
    const response = await fetch(`${baseUrl}/untraced/span`, { headers: { baggage: 'tenant.id=acme' } });
    expect(await response.json()).toEqual({ none: true, tenant: null });
  });
});
