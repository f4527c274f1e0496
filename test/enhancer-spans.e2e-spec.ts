import 'reflect-metadata';
import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  Catch,
  Controller,
  Get,
  Injectable,
  Module,
  Param,
  ParseIntPipe,
  Query,
  Scope,
  UnauthorizedException,
  UseFilters,
  UseGuards,
  UseInterceptors,
  type ArgumentMetadata,
  type ArgumentsHost,
  type CallHandler,
  type CanActivate,
  type ExceptionFilter,
  type ExecutionContext,
  type INestApplication,
  type INestMicroservice,
  type NestInterceptor,
  type PipeTransform,
} from '@nestjs/common';
import { APP_GUARD, HttpAdapterHost, NestFactory } from '@nestjs/core';
import { ClientNats, MessagePattern, Payload } from '@nestjs/microservices';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { firstValueFrom, map, type Observable } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OtelModule, OtelSdkService, Traced, otelInstrument, type OtelModuleOptions } from '../lib/index.js';
import { OtelServerNats } from '../lib/transports/nats/index.js';
import { plainRequest } from './support/http-request.js';
import { installedVersion } from './support/nest-version.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './support/otlp-receiver.js';

/**
 * Guard, pipe, interceptor and exception-filter spans (`enhancerSpans` + `otelInstrument()`), on
 * real express, fastify and NATS applications created by `NestFactory` with Nest's `instrument`
 * option, exporting OTLP/HTTP to a real receiver: each enhancer that runs gets one INTERNAL span
 * directly under the request's SERVER (or the message's CONSUMER) span; a guard shared by two
 * handlers has a span only for the handler called; a denying guard and a throwing guard; an
 * interceptor span that covers its handler while the handler's spans stay under the request;
 * collapse above the threshold; and nothing at all when the option is off.
 */

const NATS_URL = 'nats://127.0.0.1:4222';
const SUBJECT = `otel-nest-e2e.enhancers.${randomUUID().slice(0, 8)}`;
const SLOW_ARGUMENTS = new Set(['q3', 'q6']);
/** Above this many pipe calls under one request, only the slowest `KEEP` keep a span. */
const COLLAPSE_ABOVE = 5;
const KEEP = 2;

/** `useGlobalGuards()` instances reach `instanceDecorator` from Nest 11.1.12 (and on 12). */
const [major, minor, patch] = installedVersion('@nestjs/core').split('.').map(Number) as [number, number, number];
const GLOBAL_INSTANCES_DECORATED = major > 11 || minor > 1 || patch >= 12;

@Injectable()
class SharedGuard implements CanActivate {
  canActivate(): boolean {
    return true;
  }
}

@Injectable()
class DenyGuard implements CanActivate {
  canActivate(): boolean {
    return false;
  }
}

@Injectable()
class TokenGuard implements CanActivate {
  async canActivate(): Promise<boolean> {
    await sleep(1);
    throw new UnauthorizedException('no token');
  }
}

/** Created per request by the application's injector (which has the decorator too). */
@Injectable({ scope: Scope.REQUEST })
class ScopedGuard implements CanActivate {
  canActivate(): boolean {
    return true;
  }
}

/** Registered with APP_GUARD: created by Nest's injector, so decorated on every Nest 11.1.4+. */
@Injectable()
class AuditGuard implements CanActivate {
  canActivate(): boolean {
    return true;
  }
}

/** Given to app.useGlobalGuards() as an instance. */
class OpenGuard implements CanActivate {
  canActivate(): boolean {
    return true;
  }
}

@Injectable()
class TimingInterceptor implements NestInterceptor {
  intercept(_context: ExecutionContext, next: CallHandler): Observable<unknown> {
    return next.handle().pipe(map((value) => ({ ...(value as object), intercepted: true })));
  }
}

/** Slow (25 ms, asynchronously) for the arguments in SLOW_ARGUMENTS, immediate for the others. */
@Injectable()
class TagPipe implements PipeTransform {
  async transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    if (SLOW_ARGUMENTS.has(metadata.data ?? '')) {
      await sleep(25);
    }
    return value;
  }
}

class PaymentDeclinedError extends Error {}

@Catch(PaymentDeclinedError)
@Injectable()
class DeclinedFilter implements ExceptionFilter {
  constructor(private readonly adapterHost: HttpAdapterHost) {}

  catch(_exception: PaymentDeclinedError, host: ArgumentsHost): void {
    this.adapterHost.httpAdapter.reply(host.switchToHttp().getResponse(), { declined: true }, 402);
  }
}

@Injectable()
class ItemsService {
  @Traced()
  load(id: number): { id: number } {
    return { id };
  }
}

@Controller('enh')
class EnhancedController {
  constructor(private readonly items: ItemsService) {}

  @Get('a')
  @UseGuards(SharedGuard)
  a(): string {
    return 'a';
  }

  @Get('b')
  @UseGuards(SharedGuard)
  b(): string {
    return 'b';
  }

  @Get('scoped')
  @UseGuards(ScopedGuard)
  scoped(): string {
    return 'scoped';
  }

  @Get('deny')
  @UseGuards(DenyGuard)
  deny(): string {
    return 'never';
  }

  @Get('token')
  @UseGuards(TokenGuard)
  token(): string {
    return 'never';
  }

  @Get('items/:id')
  @UseInterceptors(TimingInterceptor)
  item(@Param('id', ParseIntPipe) id: number): { id: number } {
    return this.items.load(id);
  }

  @Get('declined')
  @UseFilters(DeclinedFilter)
  declined(): never {
    throw new PaymentDeclinedError('card declined');
  }

  @Get('few')
  few(@Query('q1', TagPipe) q1: string, @Query('q2', TagPipe) q2: string, @Query('q3', TagPipe) q3: string): string[] {
    return [q1, q2, q3];
  }

  @Get('many')
  many(
    @Query('q1', TagPipe) q1: string,
    @Query('q2', TagPipe) q2: string,
    @Query('q3', TagPipe) q3: string,
    @Query('q4', TagPipe) q4: string,
    @Query('q5', TagPipe) q5: string,
    @Query('q6', TagPipe) q6: string,
    @Query('q7', TagPipe) q7: string,
    @Query('q8', TagPipe) q8: string,
  ): string[] {
    return [q1, q2, q3, q4, q5, q6, q7, q8];
  }
}

@Controller()
class EnhancedMessagesController {
  @MessagePattern(SUBJECT)
  @UseGuards(SharedGuard)
  @UseInterceptors(TimingInterceptor)
  handle(@Payload(TagPipe) data: { n: number }): { n: number } {
    return { n: data.n + 1 };
  }
}

function appModule(serviceName: string, otel: Partial<OtelModuleOptions>, receiver: OtlpReceiver, messages = false): new () => object {
  @Module({
    imports: [OtelModule.forRoot({ serviceName, exporter: { url: receiver.url }, batch: false, logSummary: false, ...otel })],
    controllers: messages ? [EnhancedMessagesController] : [EnhancedController],
    providers: [ItemsService, { provide: APP_GUARD, useClass: AuditGuard }],
  })
  class AppModule {}
  return AppModule;
}

const ENHANCER_SPANS: OtelModuleOptions['enhancerSpans'] = { collapseAbove: COLLAPSE_ABOVE, keepSlowest: KEEP };
const SPAN_KIND_INTERNAL = 1;
const SPAN_KIND_SERVER = 2;
const SPAN_KIND_CONSUMER = 5;
const STATUS_ERROR = 2;

let receiver: OtlpReceiver;

beforeAll(async () => {
  receiver = await startOtlpReceiver();
});

afterAll(async () => {
  await receiver?.close();
});

/** The spans of one trace, once its SERVER span arrived and everything that ended by then was exported. */
async function traceSpans(app: { get(type: typeof OtelSdkService): OtelSdkService }, traceId: string, rootKind: number): Promise<ReceivedSpan[]> {
  await receiver.waitForSpans((span) => span.traceId === traceId && span.kind === rootKind);
  // Collapse windows close on setImmediate; then every span that ended is exported.
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setImmediate(resolve));
  await app.get(OtelSdkService).forceFlush();
  return receiver.spans.filter((span) => span.traceId === traceId);
}

const enhancerSpans = (spans: ReceivedSpan[]): ReceivedSpan[] => spans.filter((span) => span.attributes['nestjs.type'] !== undefined);
const names = (spans: ReceivedSpan[]): string[] => enhancerSpans(spans).map((span) => span.name).sort();

describe.each(['express', 'fastify'] as const)('enhancer spans on %s', (platform) => {
  let app: INestApplication;
  let base: string;

  beforeAll(async () => {
    const module = appModule(`enhancers-${platform}`, { enhancerSpans: ENHANCER_SPANS }, receiver);
    const options = { logger: false as const, instrument: otelInstrument() };
    app = platform === 'fastify' ? await NestFactory.create(module, new FastifyAdapter(), options) : await NestFactory.create(module, options);
    app.useGlobalGuards(new OpenGuard());
    await app.listen(0, '127.0.0.1');
    base = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  });

  afterAll(async () => {
    await app?.close();
  });

  /** Sends a request in a fresh trace; returns its status and the spans of that trace. */
  async function call(path: string): Promise<{ status: number; body: string; spans: ReceivedSpan[]; server: ReceivedSpan }> {
    const traceId = randomBytes(16).toString('hex');
    const response = await plainRequest(`${base}${path}`, { headers: { traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` } });
    const spans = await traceSpans(app, traceId, SPAN_KIND_SERVER);
    const server = spans.find((span) => span.kind === SPAN_KIND_SERVER)!;
    return { status: response.status, body: response.text, spans, server };
  }

  it('a guard shared by two handlers has one span, for the handler called, directly under the SERVER span', async () => {
    const { status, spans, server } = await call('/enh/a');
    expect(status).toBe(200);
    const shared = enhancerSpans(spans).filter((span) => span.name === 'guard SharedGuard');
    expect(shared).toHaveLength(1);
    expect(shared[0]).toMatchObject({
      kind: SPAN_KIND_INTERNAL,
      parentSpanId: server.spanId,
      attributes: {
        'nestjs.type': 'guard',
        'nestjs.enhancer.name': 'SharedGuard',
        'nestjs.controller': 'EnhancedController',
        'nestjs.handler': 'a',
        'nestjs.guard.result': true,
      },
    });
    // The global guards run too, each once: the APP_GUARD provider always, the useGlobalGuards
    // instance where Nest hands it to instanceDecorator.
    expect(names(spans)).toEqual(
      GLOBAL_INSTANCES_DECORATED ? ['guard AuditGuard', 'guard OpenGuard', 'guard SharedGuard'] : ['guard AuditGuard', 'guard SharedGuard'],
    );
    for (const span of enhancerSpans(spans)) {
      expect(span.parentSpanId).toBe(server.spanId);
    }

    const other = await call('/enh/b');
    const sharedOnB = enhancerSpans(other.spans).filter((span) => span.name === 'guard SharedGuard');
    expect(sharedOnB).toHaveLength(1);
    expect(sharedOnB[0]!.attributes['nestjs.handler']).toBe('b');
  });

  it('a request-scoped guard, created per request, has its span on every request', async () => {
    for (let i = 0; i < 2; i++) {
      const { status, spans, server } = await call('/enh/scoped');
      expect(status).toBe(200);
      const scoped = enhancerSpans(spans).filter((span) => span.name === 'guard ScopedGuard');
      expect(scoped).toHaveLength(1);
      expect(scoped[0]!.parentSpanId).toBe(server.spanId);
    }
  });

  it('a guard that returns false: nestjs.guard.result=false, not an error; the request is refused (403)', async () => {
    const { status, spans } = await call('/enh/deny');
    expect(status).toBe(403);
    const deny = enhancerSpans(spans).find((span) => span.name === 'guard DenyGuard');
    expect(deny?.attributes['nestjs.guard.result']).toBe(false);
    expect(deny?.status.code).not.toBe(STATUS_ERROR);
    expect(deny?.attributes['error.type']).toBeUndefined();
  });

  it('a guard that throws (asynchronously): the error is recorded on the guard span, once', async () => {
    const { status, spans, server } = await call('/enh/token');
    expect(status).toBe(401);
    const guard = enhancerSpans(spans).find((span) => span.name === 'guard TokenGuard')!;
    expect(guard.status.code).toBe(STATUS_ERROR);
    expect(guard.attributes['error.type']).toBe('UnauthorizedException');
    expect(guard.attributes['nestjs.guard.result']).toBeUndefined();
    expect(guard.events.filter((event) => event.name === 'exception')).toHaveLength(1);
    // A 4xx leaves the SERVER span's status unset, and its exception event is the guard's alone.
    expect(server.status.code).not.toBe(STATUS_ERROR);
    expect(server.events.filter((event) => event.name === 'exception')).toHaveLength(0);
  });

  it("pipe and interceptor spans, under the SERVER span; the handler's own spans stay under the SERVER span too", async () => {
    const { status, body, spans, server } = await call('/enh/items/42');
    expect(status).toBe(200);
    expect(JSON.parse(body)).toEqual({ id: 42, intercepted: true });
    const pipe = enhancerSpans(spans).find((span) => span.name === 'pipe ParseIntPipe')!;
    expect(pipe).toMatchObject({
      parentSpanId: server.spanId,
      attributes: { 'nestjs.type': 'pipe', 'nestjs.enhancer.name': 'ParseIntPipe', 'nestjs.pipe.argument.type': 'param', 'nestjs.pipe.argument.name': 'id' },
    });
    const interceptor = enhancerSpans(spans).find((span) => span.name === 'interceptor TimingInterceptor')!;
    expect(interceptor).toMatchObject({
      parentSpanId: server.spanId,
      attributes: { 'nestjs.type': 'interceptor', 'nestjs.controller': 'EnhancedController', 'nestjs.handler': 'item' },
    });
    const handlerSpan = spans.find((span) => span.name === 'ItemsService.load')!;
    expect(handlerSpan.parentSpanId).toBe(server.spanId);
    // That the interceptor span lasts until its Observable settles is shown in enhancer-proxy.spec.ts
    // (span start times are only millisecond-precise, so they cannot order spans here).
    expect(names(spans).filter((name) => !name.startsWith('guard '))).toEqual(['interceptor TimingInterceptor', 'pipe ParseIntPipe']);
  });

  it('an exception filter: a span for its catch, with the exception it handled', async () => {
    const { status, spans, server } = await call('/enh/declined');
    expect(status).toBe(402);
    const filter = enhancerSpans(spans).find((span) => span.name === 'filter DeclinedFilter')!;
    expect(filter).toMatchObject({
      parentSpanId: server.spanId,
      attributes: { 'nestjs.type': 'filter', 'nestjs.enhancer.name': 'DeclinedFilter', 'nestjs.filter.exception.type': 'PaymentDeclinedError' },
    });
    expect(filter.status.code).not.toBe(STATUS_ERROR);
  });

  it(`below the threshold every pipe call has its span; above ${COLLAPSE_ABOVE}, only the ${KEEP} slowest, with the count`, async () => {
    const few = await call('/enh/few?q1=a&q2=b&q3=c');
    const fewPipes = enhancerSpans(few.spans).filter((span) => span.name === 'pipe TagPipe');
    expect(fewPipes.map((span) => span.attributes['nestjs.pipe.argument.name']).sort()).toEqual(['q1', 'q2', 'q3']);
    for (const span of fewPipes) {
      expect(span.attributes['nestjs.enhancer.calls']).toBeUndefined();
    }

    const many = await call('/enh/many?q1=1&q2=2&q3=3&q4=4&q5=5&q6=6&q7=7&q8=8');
    expect(many.status).toBe(200);
    const kept = enhancerSpans(many.spans).filter((span) => span.name === 'pipe TagPipe');
    expect(kept.map((span) => span.attributes['nestjs.pipe.argument.name']).sort()).toEqual([...SLOW_ARGUMENTS].sort());
    for (const span of kept) {
      expect(span.parentSpanId).toBe(many.server.spanId);
      expect(span.attributes['nestjs.enhancer.calls']).toBe(8);
      expect(span.attributes['nestjs.enhancer.collapsed']).toBe(8 - KEEP);
    }
  });
});

describe('enhancer spans off (the default), with otelInstrument() given', () => {
  let app: INestApplication;
  let base: string;

  beforeAll(async () => {
    app = await NestFactory.create(appModule('enhancers-off', {}, receiver), { logger: false, instrument: otelInstrument() });
    await app.listen(0, '127.0.0.1');
    base = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  });

  afterAll(async () => {
    await app?.close();
  });

  it('no guard, pipe, interceptor or filter spans; the request spans as before', async () => {
    for (const path of ['/enh/a', '/enh/items/7', '/enh/declined', '/enh/many?q1=1&q3=3']) {
      const traceId = randomBytes(16).toString('hex');
      await plainRequest(`${base}${path}`, { headers: { traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` } });
      const spans = await traceSpans(app, traceId, SPAN_KIND_SERVER);
      expect(spans.some((span) => span.kind === SPAN_KIND_SERVER)).toBe(true);
      expect(enhancerSpans(spans)).toEqual([]);
    }
  });
});

describe('enhancer spans on, but the application created without otelInstrument()', () => {
  let app: INestApplication;
  let base: string;
  const logged: string[] = [];

  beforeAll(async () => {
    const record = (message: unknown) => void logged.push(String(message));
    app = await NestFactory.create(appModule('enhancers-no-instrument', { enhancerSpans: true, logSummary: true }, receiver), {
      logger: { log: record, warn: record, error: record, debug: record, verbose: record, fatal: record },
    });
    await app.listen(0, '127.0.0.1');
    base = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  });

  afterAll(async () => {
    await app?.close();
  });

  it('says so at bootstrap (the summary lists enhancer spans, a warning says how to pass otelInstrument()), and makes none', async () => {
    expect(logged.find((line) => line.includes('enhancer spans (guards, pipes, interceptors, filters; collapse above 10, keep 3)'))).toBeDefined();
    expect(logged.find((line) => line.includes('"enhancerSpans" is on, but this application was not created with otelInstrument()'))).toBeDefined();
    const traceId = randomBytes(16).toString('hex');
    await plainRequest(`${base}/enh/a`, { headers: { traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` } });
    const spans = await traceSpans(app, traceId, SPAN_KIND_SERVER);
    expect(enhancerSpans(spans)).toEqual([]);
  });
});

describe('enhancer spans on a NATS microservice (OtelServerNats)', () => {
  let service: INestMicroservice;
  let client: ClientNats;

  beforeAll(async () => {
    const server = new OtelServerNats({ servers: [NATS_URL] });
    service = await NestFactory.createMicroservice(appModule('enhancers-nats', { enhancerSpans: ENHANCER_SPANS }, receiver, true), {
      strategy: server,
      logger: false,
      instrument: otelInstrument(),
    });
    await service.listen();
    await (server.unwrap() as { flush(): Promise<void> }).flush();
    client = new ClientNats({ servers: [NATS_URL] });
    await client.connect();
  });

  afterAll(async () => {
    await client?.close();
    await service?.close();
  });

  it('guard, interceptor and pipe spans nest once under the CONSUMER span', async () => {
    const reply = await firstValueFrom(client.send<{ n: number; intercepted: boolean }>(SUBJECT, { n: 1 }));
    expect(reply).toEqual({ n: 2, intercepted: true });
    const [consumer] = await receiver.waitForSpans(
      (span) => span.kind === SPAN_KIND_CONSUMER && span.attributes['messaging.destination.name'] === SUBJECT,
    );
    const spans = await traceSpans(service, consumer!.traceId, SPAN_KIND_CONSUMER);
    expect(names(spans)).toEqual(['guard AuditGuard', 'guard SharedGuard', 'interceptor TimingInterceptor', 'pipe TagPipe']);
    for (const span of enhancerSpans(spans)) {
      expect(span.parentSpanId).toBe(consumer!.spanId);
      expect(span.kind).toBe(SPAN_KIND_INTERNAL);
    }
    const guard = enhancerSpans(spans).find((span) => span.name === 'guard SharedGuard')!;
    expect(guard.attributes).toMatchObject({ 'nestjs.controller': 'EnhancedMessagesController', 'nestjs.handler': 'handle', 'nestjs.guard.result': true });
    expect(enhancerSpans(spans).find((span) => span.name === 'pipe TagPipe')!.attributes['nestjs.pipe.argument.type']).toBe('body');
  });
});
