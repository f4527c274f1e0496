import {
  Controller,
  Get,
  HttpCode,
  HttpException,
  Injectable,
  NotFoundException,
  Post,
  SetMetadata,
  UseGuards,
  type CanActivate,
  type ExecutionContext,
  type INestApplication,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { ClientProxyFactory, EventPattern, MessagePattern, Transport, type ClientProxy } from '@nestjs/microservices';
import {
  PATTERN_HANDLER_METADATA,
  PATTERN_METADATA,
  TRANSPORT_METADATA,
} from '@nestjs/microservices/constants.js';
import { ApiOperation, ApiResponse, DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { Test } from '@nestjs/testing';
import { context, diag, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { startTestingSdk, type TestingSdk } from '../testing/testing-sdk.js';
import { createServer } from 'node:net';
import { defer, firstValueFrom, of, Subject, throwError } from 'rxjs';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ATTR_CODE_FUNCTION_NAME, ATTR_ERROR_TYPE } from '../semconv.js';
import { TRACER_NAME } from '../utils/tracer.js';
import { Traced } from './traced.decorator.js';

const exporter = new InMemorySpanExporter();
let sdk: TestingSdk;
const tracer = () => trace.getTracer('traced.spec');

beforeAll(() => {
  sdk = startTestingSdk({ exporter });
});
afterEach(() => exporter.reset());
afterAll(() => sdk.shutdown());

const finished = (name: string): ReadableSpan[] => exporter.getFinishedSpans().filter((span) => span.name === name);
const only = (name: string): ReadableSpan => {
  const spans = finished(name);
  expect(spans).toHaveLength(1);
  return spans[0]!;
};
const exceptionEvents = (span: ReadableSpan) => span.events.filter((event) => event.name === 'exception');

describe('@Traced on methods', () => {
  class Inner {
    @Traced()
    leaf(): string {
      return trace.getActiveSpan()!.spanContext().spanId;
    }
  }

  class Orders {
    readonly inner = new Inner();
    prefix = 'order-';

    @Traced()
    place(id: number, _note?: string): string {
      return this.prefix + id;
    }

    @Traced('orders.load')
    async load(id: number): Promise<string> {
      await new Promise((resolve) => setTimeout(resolve, 1));
      return this.prefix + id;
    }

    @Traced()
    async fail(error: unknown): Promise<never> {
      await Promise.resolve();
      throw error;
    }

    @Traced()
    failSync(error: unknown): never {
      throw error;
    }

    @Traced()
    outer(): string {
      return this.inner.leaf();
    }

    @Traced({ root: true })
    detached(): void {}

    @Traced({
      kind: SpanKind.CONSUMER,
      attributes: (id: number, note: string) => ({ 'order.id': id, 'order.note': note }),
    })
    consume(_id: number, _note: string): void {}

    @Traced({ attributes: { static: 'yes' } })
    staticAttributes(): void {}

    @Traced({
      attributes: () => {
        throw new Error('attribute bug');
      },
    })
    brokenAttributes(): string {
      return 'still runs';
    }

    @Traced({ links: (link: { traceId: string; spanId: string }) => [{ context: { ...link, traceFlags: 1 } }] })
    linked(_link: { traceId: string; spanId: string }): void {}

    @Traced()
    @Traced()
    twice(): void {}

    @Traced()
    stream(source: Subject<number>) {
      return source.asObservable();
    }

    @Traced()
    failingStream(error: Error) {
      return throwError(() => error);
    }

    @Traced({ isError: () => false })
    tolerated(): never {
      throw new Error('tolerated');
    }

    @Traced()
    static create(): string {
      return 'static';
    }
  }

  const orders = new Orders();

  it('traces a sync method as Class.method with code.function.name, keeping `this`', () => {
    expect(orders.place(7)).toBe('order-7');
    const span = only('Orders.place');
    expect(span.kind).toBe(SpanKind.INTERNAL);
    expect(span.attributes[ATTR_CODE_FUNCTION_NAME]).toBe('Orders.place');
    expect(span.status.code).toBe(SpanStatusCode.UNSET);
    expect(span.instrumentationScope.name).toBe(TRACER_NAME);
  });

  it('keeps the function name and length', () => {
    expect(Orders.prototype.place.name).toBe('place');
    expect(Orders.prototype.place.length).toBe(2);
    expect(Orders.prototype.load.length).toBe(1);
  });

  it('uses the given name and ends an async span only when the Promise resolves', async () => {
    const pending = orders.load(3);
    expect(finished('orders.load')).toHaveLength(0);
    await expect(pending).resolves.toBe('order-3');
    const span = only('orders.load');
    expect(span.attributes[ATTR_CODE_FUNCTION_NAME]).toBe('Orders.load');
  });

  it('records an async rejection once and rejects with the same error object', async () => {
    const error = new TypeError('no stock');
    await expect(orders.fail(error)).rejects.toBe(error);
    const span = only('Orders.fail');
    expect(span.status).toEqual({ code: SpanStatusCode.ERROR, message: 'no stock' });
    expect(span.attributes[ATTR_ERROR_TYPE]).toBe('TypeError');
    expect(exceptionEvents(span)).toHaveLength(1);
  });

  it('records a sync throw and rethrows the same error object', () => {
    const error = new RangeError('sync');
    expect(() => orders.failSync(error)).toThrow(error);
    const span = only('Orders.failSync');
    expect(span.status.code).toBe(SpanStatusCode.ERROR);
    expect(span.attributes[ATTR_ERROR_TYPE]).toBe('RangeError');
    expect(exceptionEvents(span)).toHaveLength(1);
  });

  it('does not mark a 404 HttpException as an error, but marks a 500', async () => {
    const notFound = new NotFoundException('no order');
    await expect(orders.fail(notFound)).rejects.toBe(notFound);
    const quiet = only('Orders.fail');
    expect(quiet.status.code).toBe(SpanStatusCode.UNSET);
    expect(quiet.attributes[ATTR_ERROR_TYPE]).toBeUndefined();
    exporter.reset();

    const serverError = new HttpException('broken', 500);
    await expect(orders.fail(serverError)).rejects.toBe(serverError);
    const failed = only('Orders.fail');
    expect(failed.status.code).toBe(SpanStatusCode.ERROR);
    expect(failed.attributes[ATTR_ERROR_TYPE]).toBe('HttpException');
  });

  it('honours a custom isError', () => {
    expect(() => orders.tolerated()).toThrow('tolerated');
    expect(only('Orders.tolerated').status.code).toBe(SpanStatusCode.UNSET);
  });

  it('nests traced calls as parent and child in one trace', () => {
    const leafSpanId = orders.outer();
    const outer = only('Orders.outer');
    const leaf = only('Inner.leaf');
    expect(leaf.spanContext().spanId).toBe(leafSpanId);
    expect(leaf.parentSpanContext?.spanId).toBe(outer.spanContext().spanId);
    expect(leaf.spanContext().traceId).toBe(outer.spanContext().traceId);
  });

  it('is a child of the active span by default, and starts a new trace with root: true', () => {
    const parent = tracer().startSpan('caller');
    context.with(trace.setSpan(context.active(), parent), () => {
      orders.place(1);
      orders.detached();
    });
    parent.end();
    const child = only('Orders.place');
    expect(child.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    const detached = only('Orders.detached');
    expect(detached.parentSpanContext).toBeUndefined();
    expect(detached.spanContext().traceId).not.toBe(parent.spanContext().traceId);
  });

  it('sets the kind and the attributes computed from the arguments', () => {
    orders.consume(42, 'rush');
    orders.staticAttributes();
    const span = only('Orders.consume');
    expect(span.kind).toBe(SpanKind.CONSUMER);
    expect(span.attributes).toMatchObject({ 'order.id': 42, 'order.note': 'rush' });
    expect(only('Orders.staticAttributes').attributes.static).toBe('yes');
  });

  it('runs the method and warns through diag when the attributes function throws', () => {
    const warn = vi.spyOn(diag, 'warn');
    try {
      expect(orders.brokenAttributes()).toBe('still runs');
      expect(warn).toHaveBeenCalledWith(expect.stringContaining('Orders.brokenAttributes'), expect.any(Error));
      expect(only('Orders.brokenAttributes').attributes[ATTR_CODE_FUNCTION_NAME]).toBe('Orders.brokenAttributes');
    } finally {
      warn.mockRestore();
    }
  });

  it('adds links computed from the arguments', () => {
    const producer = tracer().startSpan('producer');
    producer.end();
    const { traceId, spanId } = producer.spanContext();
    orders.linked({ traceId, spanId });
    const span = only('Orders.linked');
    expect(span.links).toHaveLength(1);
    expect(span.links[0]!.context).toMatchObject({ traceId, spanId });
  });

  it('does not double-wrap when applied twice', () => {
    orders.twice();
    expect(finished('Orders.twice')).toHaveLength(1);
  });

  it('traces static methods under the class name', () => {
    expect(Orders.create()).toBe('static');
    expect(only('Orders.create').attributes[ATTR_CODE_FUNCTION_NAME]).toBe('Orders.create');
  });

  it('ends an Observable span only when it completes, passing values through', () => {
    const source = new Subject<number>();
    const values: number[] = [];
    const subscription = orders.stream(source).subscribe((value) => values.push(value));
    source.next(1);
    source.next(2);
    expect(finished('Orders.stream')).toHaveLength(0);
    source.complete();
    expect(values).toEqual([1, 2]);
    expect(only('Orders.stream').status.code).toBe(SpanStatusCode.UNSET);
    expect(subscription.closed).toBe(true);
  });

  it('records an Observable error and re-emits the same error object', async () => {
    const error = new Error('stream down');
    await expect(firstValueFrom(orders.failingStream(error))).rejects.toBe(error);
    const span = only('Orders.failingStream');
    expect(span.status.code).toBe(SpanStatusCode.ERROR);
    expect(exceptionEvents(span)).toHaveLength(1);
  });

  it('rejects an accessor with a clear message', () => {
    expect(() => {
      class Bad {
        @Traced()
        get value(): number {
          return 1;
        }
      }
      return Bad;
    }).toThrow(/@Traced\(\) can only decorate methods and classes, and Bad.value is not a method/);
  });
});

describe('@Traced on classes', () => {
  @Traced()
  class Payments {
    readonly rate = 2;

    charge(amount: number): number {
      return amount * this.rate;
    }

    async refund(amount: number): Promise<number> {
      await Promise.resolve();
      return -amount;
    }

    @Traced('payments.custom', { kind: SpanKind.CLIENT })
    custom(): void {}

    get total(): number {
      return this.charge(1);
    }
  }

  @Traced('Billing', { exclude: ['health'], kind: SpanKind.SERVER })
  class Invoices {
    issue(): void {}
    health(): string {
      return 'ok';
    }
  }

  it('wraps every own method with Class.method spans', async () => {
    const payments = new Payments();
    expect(payments.charge(5)).toBe(10);
    await expect(payments.refund(3)).resolves.toBe(-3);
    expect(only('Payments.charge').attributes[ATTR_CODE_FUNCTION_NAME]).toBe('Payments.charge');
    expect(only('Payments.refund').kind).toBe(SpanKind.INTERNAL);
  });

  it('keeps method-level options, skips accessors and wraps methods only once', () => {
    const payments = new Payments();
    payments.custom();
    expect(only('payments.custom').kind).toBe(SpanKind.CLIENT);
    expect(finished('Payments.custom')).toHaveLength(0);

    expect(payments.total).toBe(2);
    expect(Object.getOwnPropertyDescriptor(Payments.prototype, 'total')!.get).toBeTypeOf('function');
    expect(finished('Payments.total')).toHaveLength(0);
    expect(finished('Payments.charge')).toHaveLength(1);
    expect(Payments.prototype.charge.name).toBe('charge');
  });

  it('applies class options and the name prefix, and skips excluded methods', () => {
    const invoices = new Invoices();
    invoices.issue();
    expect(invoices.health()).toBe('ok');
    const span = only('Billing.issue');
    expect(span.kind).toBe(SpanKind.SERVER);
    expect(span.attributes[ATTR_CODE_FUNCTION_NAME]).toBe('Invoices.issue');
    expect(finished('Billing.health')).toHaveLength(0);
    expect(exporter.getFinishedSpans()).toHaveLength(1);
  });
});

describe('@Traced keeps Nest metadata', () => {
  const ROLES = 'roles';

  @Injectable()
  class DenyGuard implements CanActivate {
    canActivate(): boolean {
      return false;
    }
  }

  @Injectable()
  class RolesGuard implements CanActivate {
    constructor(private readonly reflector: Reflector) {}

    canActivate(ctx: ExecutionContext): boolean {
      const roles = this.reflector.get<string[] | undefined>(ROLES, ctx.getHandler());
      const role = ctx.switchToHttp().getRequest<{ headers: Record<string, string> }>().headers['x-role'];
      return Array.isArray(roles) && role !== undefined && roles.includes(role);
    }
  }

  const activeSpanId = () => ({ spanId: trace.getActiveSpan()?.spanContext().spanId });

  @Controller('traced')
  class TracedController {
    @Traced()
    @Get('above')
    above() {
      return activeSpanId();
    }

    @Get('below')
    @Traced()
    below() {
      return activeSpanId();
    }

    @Traced()
    @UseGuards(DenyGuard)
    @Get('guard-above')
    guardAbove() {
      return 'unreachable';
    }

    @UseGuards(DenyGuard)
    @Traced()
    @Get('guard-below')
    guardBelow() {
      return 'unreachable';
    }

    @Traced()
    @SetMetadata(ROLES, ['admin'])
    @UseGuards(RolesGuard)
    @Get('roles-above')
    rolesAbove() {
      return 'admin only';
    }

    @SetMetadata(ROLES, ['admin'])
    @Traced()
    @UseGuards(RolesGuard)
    @Get('roles-below')
    rolesBelow() {
      return 'admin only';
    }

    @Traced()
    @HttpCode(201)
    @Post('created-above')
    createdAbove() {
      return activeSpanId();
    }

    @HttpCode(202)
    @Traced()
    @Post('created-below')
    createdBelow() {
      return activeSpanId();
    }

    @Traced()
    @Get('stream')
    stream() {
      return defer(() => {
        tracer().startSpan('stream.work').end();
        return of(activeSpanId());
      });
    }

    @Traced()
    @ApiOperation({ summary: 'Find an order' })
    @ApiResponse({ status: 200, description: 'The order' })
    @Get('swagger-above')
    swaggerAbove() {
      return 'ok';
    }

    @ApiOperation({ summary: 'Brew tea' })
    @ApiResponse({ status: 418, description: 'A teapot' })
    @Traced()
    @Get('swagger-below')
    swaggerBelow() {
      return 'ok';
    }
  }

  @Controller()
  class OrdersHandler {
    @Traced()
    @MessagePattern('orders.get')
    get(data: { id: number }) {
      return { id: data.id, spanId: trace.getActiveSpan()?.spanContext().spanId };
    }

    @EventPattern('orders.created')
    @Traced({ consume: 'link' })
    created(_data: unknown) {
      eventSeen.next();
    }
  }
  const eventSeen = new Subject<void>();

  let app: INestApplication;
  let baseUrl: string;
  let client: ClientProxy;

  const freePort = () =>
    new Promise<number>((resolve, reject) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as { port: number };
        server.close(() => resolve(port));
      });
      server.on('error', reject);
    });

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({
      controllers: [TracedController, OrdersHandler],
      providers: [DenyGuard, RolesGuard],
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
  afterAll(async () => {
    await client?.close();
    await app?.close();
  });

  it('routes @Get with @Traced above and below, running the handler inside its span', async () => {
    for (const [path, name] of [
      ['above', 'TracedController.above'],
      ['below', 'TracedController.below'],
    ] as const) {
      const response = await fetch(`${baseUrl}/traced/${path}`);
      expect(response.status).toBe(200);
      const body = (await response.json()) as { spanId: string };
      expect(body.spanId).toBe(only(name).spanContext().spanId);
    }
  });

  it('still runs @UseGuards guards, which reject before the traced handler runs', async () => {
    expect((await fetch(`${baseUrl}/traced/guard-above`)).status).toBe(403);
    expect((await fetch(`${baseUrl}/traced/guard-below`)).status).toBe(403);
    expect(finished('TracedController.guardAbove')).toHaveLength(0);
    expect(finished('TracedController.guardBelow')).toHaveLength(0);
  });

  it('keeps SetMetadata readable by a Reflector-based guard', async () => {
    for (const path of ['roles-above', 'roles-below']) {
      expect((await fetch(`${baseUrl}/traced/${path}`, { headers: { 'x-role': 'guest' } })).status).toBe(403);
      const allowed = await fetch(`${baseUrl}/traced/${path}`, { headers: { 'x-role': 'admin' } });
      expect(allowed.status).toBe(200);
      expect(await allowed.text()).toBe('admin only');
    }
    expect(finished('TracedController.rolesAbove')).toHaveLength(1);
    expect(finished('TracedController.rolesBelow')).toHaveLength(1);
  });

  it('keeps @HttpCode', async () => {
    expect((await fetch(`${baseUrl}/traced/created-above`, { method: 'POST' })).status).toBe(201);
    expect((await fetch(`${baseUrl}/traced/created-below`, { method: 'POST' })).status).toBe(202);
    only('TracedController.createdAbove');
    only('TracedController.createdBelow');
  });

  it('ends an Observable handler span after Nest subscribed, with the work as its child', async () => {
    const response = await fetch(`${baseUrl}/traced/stream`);
    const body = (await response.json()) as { spanId: string };
    const span = only('TracedController.stream');
    expect(body.spanId).toBe(span.spanContext().spanId);
    expect(only('stream.work').parentSpanContext?.spanId).toBe(span.spanContext().spanId);
  });

  it('keeps Swagger operations and summaries', () => {
    const document = SwaggerModule.createDocument(app, new DocumentBuilder().setTitle('spec').build());
    const above = document.paths['/traced/swagger-above']?.get;
    const below = document.paths['/traced/swagger-below']?.get;
    expect(above?.summary).toBe('Find an order');
    expect(above?.responses['200']).toMatchObject({ description: 'The order' });
    expect(below?.summary).toBe('Brew tea');
    expect(below?.responses['418']).toMatchObject({ description: 'A teapot' });
  });

  it('keeps @MessagePattern and @EventPattern metadata and stores the consume option', () => {
    const { get, created } = OrdersHandler.prototype;
    expect(Reflect.getMetadata(PATTERN_METADATA, get)).toEqual(['orders.get']);
    expect(Reflect.getMetadata(PATTERN_METADATA, created)).toEqual(['orders.created']);
    expect(Reflect.getMetadata(PATTERN_HANDLER_METADATA, get)).toBe(1);
    expect(Reflect.getMetadata(PATTERN_HANDLER_METADATA, created)).toBe(2);
    expect(Reflect.getOwnMetadataKeys(get)).toContain(TRANSPORT_METADATA);
    // The traced servers read the policy from the pattern extras Nest hands them.
    expect(Reflect.getMetadata('microservices:pattern_extras', created)).toMatchObject({ otelConsume: 'link' });
    expect(Reflect.getMetadata('microservices:pattern_extras', get)?.otelConsume).toBeUndefined();
  });

  it('still receives TCP messages and events on traced handlers', async () => {
    const reply = await firstValueFrom(client.send<{ id: number; spanId: string }>('orders.get', { id: 9 }));
    expect(reply.id).toBe(9);
    expect(reply.spanId).toBe(only('OrdersHandler.get').spanContext().spanId);

    const seen = firstValueFrom(eventSeen);
    await firstValueFrom(client.emit('orders.created', { id: 9 }), { defaultValue: undefined });
    await seen;
    only('OrdersHandler.created');
  });
});
