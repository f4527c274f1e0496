import 'reflect-metadata';
import { Controller, Get, Injectable, Module, type INestApplication, type LoggerService } from '@nestjs/common';
import { ClientsModule } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { APP_GUARD, APP_INTERCEPTOR } from '@nestjs/core';
import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { TracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  OtelClientKafka,
  OtelClientNats,
  OtelConfigError,
  OtelModule,
  OtelServerKafka,
  OtelServerNats,
  OtelServerRMQ,
  TraceService,
  type OtelModuleOptions,
} from '../lib/index.js';
import { expectSpan, findSpans, getSpan, OtelTestingModule, spanRecorder } from '../lib/testing/index.js';
import { plainRequest } from './support/http-request.js';

const TRACE_ID = '5bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_ID = '10f067aa0ba902b7';

@Controller('ping')
class PingController {
  constructor(private readonly traces: TraceService) {}

  @Get()
  ping(): { traceId?: string; tenant?: string } {
    this.traces.withSpan('child-work', () => undefined);
    return { traceId: this.traces.getTraceId(), tenant: this.traces.getTenantId() };
  }
}

/** Collects what Nest logs, to check the startup summary and warnings. */
class CapturingLogger implements LoggerService {
  readonly lines: string[] = [];
  log(message: unknown): void {
    this.lines.push(`LOG ${String(message)}`);
  }
  warn(message: unknown): void {
    this.lines.push(`WARN ${String(message)}`);
  }
  error(message: unknown): void {
    this.lines.push(`ERROR ${String(message)}`);
  }
  debug(): void {}
  verbose(): void {}
}

async function startApp(imports: unknown[], logger = new CapturingLogger()) {
  @Module({ imports: imports as never[], controllers: [PingController] })
  class AppModule {}
  const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).setLogger(logger).compile();
  const app = moduleRef.createNestApplication({ logger });
  await app.listen(0, '127.0.0.1');
  const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  return { app, url, logger };
}

const recording: OtelModuleOptions = { exporter: spanRecorder.exporter, batch: false };

describe('OtelModule', () => {
  let app: INestApplication | undefined;

  beforeEach(() => spanRecorder.reset());
  afterEach(async () => {
    await app?.close();
    app = undefined;
    delete process.env.OTEL_SDK_DISABLED;
    // Every app released the SDK when it closed: the next test starts from a clean process.
    expect(trace.getTracerProvider().getTracer('x').startSpan('x').isRecording()).toBe(false);
  });

  it('forRootAsync takes its options from an injected provider', async () => {
    @Injectable()
    class TracingConfig {
      readonly serviceName = 'async-configured';
    }
    @Module({ providers: [TracingConfig], exports: [TracingConfig] })
    class ConfigModule {}

    const started = await startApp([
      OtelModule.forRootAsync({
        imports: [ConfigModule],
        inject: [TracingConfig],
        useFactory: (config: TracingConfig) => ({ ...recording, serviceName: config.serviceName }),
      }),
    ]);
    app = started.app;
    const response = await plainRequest(`${started.url}/ping`);
    expect(response.status).toBe(200);
    const spans = await spanRecorder.waitForSpans((s) => s.some((span) => span.kind === SpanKind.SERVER));
    const server = getSpan(spans, { kind: SpanKind.SERVER });
    expect(server.resource.attributes['service.name']).toBe('async-configured');
    expectSpan(getSpan(spans, 'child-work'), spans).toHaveParent(server);
  });

  it('logs one startup summary: service, exporter, sampler, propagators, what is traced', async () => {
    const started = await startApp([
      OtelModule.forRoot({ ...recording, serviceName: 'summary-svc', sampler: { ratio: 0.5 }, logSummary: true }),
    ]);
    app = started.app;
    const summary = started.logger.lines.filter((line) => line.includes('summary-svc'));
    expect(summary).toHaveLength(1);
    expect(summary[0]).toMatch(/exporter SharedInMemorySpanExporter/);
    expect(summary[0]).toMatch(/sampler ParentBased\(TraceIdRatio(Based)?\{?0\.5\}?\)/);
    expect(summary[0]).toMatch(/propagators tracecontext,baggage/);
    expect(summary[0]).toMatch(/HTTP server \(express\)/);
    expect(summary[0]).toMatch(/fetch/);
    expect(summary[0]).not.toMatch(/NATS server/);
  });

  it("the summary names this application's traced transports, not every one the process created", async () => {
    // Nothing connects: strategies connect in listen(), clients on first use.
    const logger = new CapturingLogger();
    @Module({
      imports: [
        OtelModule.forRoot({ ...recording, serviceName: 'with-transports', logSummary: true }),
        ClientsModule.register([{ name: 'ORDERS', customClass: OtelClientKafka, options: { client: { brokers: ['127.0.0.1:9092'] } } }]),
      ],
      controllers: [PingController],
    })
    class TransportsModule {}
    // Another application's, in the same process.
    new OtelClientNats({ servers: ['nats://127.0.0.1:4222'] });
    new OtelServerKafka({ client: { brokers: ['127.0.0.1:9092'] } });

    const moduleRef = await Test.createTestingModule({ imports: [TransportsModule] }).setLogger(logger).compile();
    app = moduleRef.createNestApplication({ logger });
    app.connectMicroservice({ strategy: new OtelServerNats({ servers: ['nats://127.0.0.1:4222'] }) });
    await app.init();
    const summary = logger.lines.find((line) => line.includes('with-transports'));
    expect(summary).toMatch(/traced: .*NATS server/);
    expect(summary).toMatch(/traced: .*Kafka client/);
    expect(summary).not.toMatch(/NATS client|Kafka server/);
    // No @nestjs/axios HttpModule in this application: HttpService is not listed.
    expect(summary).not.toMatch(/HttpService/);
  });

  it("two applications in one process: each summary names that application's traced transports only", async () => {
    // Both share the SDK (same options, through OtelTestingModule); each has its own container.
    // Nothing connects: strategies connect in listen(), clients on first use.
    const start = async (clients: Parameters<typeof ClientsModule.register>[0], strategy: object, logger: CapturingLogger) => {
      @Module({ imports: [OtelTestingModule.forRoot({ serviceName: 'two-apps', logSummary: true }), ClientsModule.register(clients)] })
      class AppModule {}
      const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).setLogger(logger).compile();
      const started = moduleRef.createNestApplication({ logger });
      started.connectMicroservice({ strategy: strategy as never });
      await started.init();
      return started;
    };
    const natsLogs = new CapturingLogger();
    const kafkaLogs = new CapturingLogger();
    const natsApp = await start(
      [{ name: 'EVENTS', customClass: OtelClientNats, options: { servers: ['nats://127.0.0.1:4222'] } }],
      new OtelServerRMQ({ urls: ['amqp://127.0.0.1:5672'], queue: 'two-apps' }),
      natsLogs,
    );
    try {
      const kafkaApp = await start(
        [{ name: 'ORDERS', customClass: OtelClientKafka, options: { client: { brokers: ['127.0.0.1:9092'] } } }],
        new OtelServerKafka({ client: { brokers: ['127.0.0.1:9092'] } }),
        kafkaLogs,
      );
      await kafkaApp.close();
    } finally {
      await natsApp.close();
    }
    const summaryOf = (logger: CapturingLogger) => {
      const lines = logger.lines.filter((line) => line.includes('Tracing service "two-apps"'));
      expect(lines).toHaveLength(1);
      return /; traced: (.*?)\.$/.exec(lines[0]!)?.[1]?.split(', ') ?? [];
    };
    const first = summaryOf(natsLogs);
    const second = summaryOf(kafkaLogs);
    expect(first).toEqual(expect.arrayContaining(['NATS client', 'RabbitMQ server']));
    expect(first).not.toEqual(expect.arrayContaining(['Kafka client']));
    expect(first).not.toEqual(expect.arrayContaining(['Kafka server']));
    expect(second).toEqual(expect.arrayContaining(['Kafka client', 'Kafka server']));
    expect(second).not.toEqual(expect.arrayContaining(['NATS client']));
    expect(second).not.toEqual(expect.arrayContaining(['RabbitMQ server']));
  });

  it.each([
    [{ sampler: { ratio: 1.5 } }, /sampler\.ratio.*between 0 and 1/s],
    [{ servicename: 'typo' }, /servicename/],
    [{ exporter: { url: 'not a url' } }, /exporter\.url/],
    [{ batch: { maxExportBatchSize: 100, maxQueueSize: 10 } }, /maxExportBatchSize/],
    [{ propagators: ['w3c'] }, /propagators/],
  ])('fails at bootstrap with a message that says how to fix %j', async (options, message) => {
    const attempt = startApp([OtelModule.forRoot(options as OtelModuleOptions)]);
    await expect(attempt).rejects.toBeInstanceOf(OtelConfigError);
    await expect(attempt).rejects.toThrow(message);
  });

  it('OTEL_SDK_DISABLED=true: the app runs untraced and the summary says tracing is off', async () => {
    process.env.OTEL_SDK_DISABLED = 'true';
    const started = await startApp([OtelModule.forRoot({ ...recording, serviceName: 'off', logSummary: true })]);
    app = started.app;
    const response = await plainRequest(`${started.url}/ping`);
    expect(response.status).toBe(200);
    expect(response.json<{ traceId?: string }>().traceId).toBeUndefined();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(spanRecorder.getFinishedSpans()).toHaveLength(0);
    expect(started.logger.lines.join('\n')).toMatch(/Tracing is OFF/);
  });

  it("uses the application's own provider instead of registering a second one", async () => {
    const ownExporter = new InMemorySpanExporter();
    const own = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: ownExporter })] });
    trace.setGlobalTracerProvider(own);
    try {
      const started = await startApp([OtelModule.forRoot({ ...recording, serviceName: 'ignored', logSummary: true })]);
      app = started.app;
      await plainRequest(`${started.url}/ping`);
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(findSpans(ownExporter.getFinishedSpans(), { kind: SpanKind.SERVER })).toHaveLength(1);
      expect(spanRecorder.getFinishedSpans()).toHaveLength(0);
      expect(started.logger.lines.join('\n')).toMatch(/application's own SDK/);
      await app.close();
      app = undefined;
      // Closing the app leaves the application's provider in place: it is not ours to shut down.
      expect(trace.getTracerProvider().getTracer('x').startSpan('x').isRecording()).toBe(true);
    } finally {
      trace.disable();
    }
  });

  it('copies chosen baggage keys onto every span (baggageToAttributes)', async () => {
    const started = await startApp([OtelModule.forRoot({ ...recording, baggageToAttributes: ['tenant.id'] })]);
    app = started.app;
    const response = await plainRequest(`${started.url}/ping`, {
      headers: { traceparent: `00-${TRACE_ID}-${PARENT_ID}-01`, baggage: 'tenant.id=acme,secret=nope' },
    });
    expect(response.json()).toEqual({ traceId: TRACE_ID, tenant: 'acme' });
    const spans = await spanRecorder.waitForSpans(2);
    for (const span of spans) {
      expect(span.attributes['tenant.id']).toBe('acme');
      expect(span.attributes.secret).toBeUndefined();
    }
  });

  it('B3 propagation, opt-in for meshes: a b3 header continues the trace', async () => {
    const started = await startApp([OtelModule.forRoot({ ...recording, propagators: ['tracecontext', 'baggage', 'b3'] })]);
    app = started.app;
    const response = await plainRequest(`${started.url}/ping`, { headers: { b3: `${TRACE_ID}-${PARENT_ID}-1` } });
    expect(response.json<{ traceId: string }>().traceId).toBe(TRACE_ID);
    const spans = await spanRecorder.waitForSpans(2);
    expect(getSpan(spans, { kind: SpanKind.SERVER }).parentSpanContext?.spanId).toBe(PARENT_ID);
  });

  it('ignorePaths: health checks are not traced, other routes are', async () => {
    const started = await startApp([OtelModule.forRoot({ ...recording, http: { ignorePaths: ['/ping'] } })]);
    app = started.app;
    const response = await plainRequest(`${started.url}/ping`);
    expect(response.status).toBe(200);
    await plainRequest(`${started.url}/other`);
    const spans = await spanRecorder.waitForSpans((s) => s.some((span) => span.kind === SpanKind.SERVER));
    expect(findSpans(spans, { kind: SpanKind.SERVER }).map((span) => span.attributes['url.path'])).toEqual(['/other']);
  });
});

describe('OtelModule globalInterceptor', () => {
  @Controller('broken')
  class BrokenController {
    @Get()
    fail(): never {
      throw new TypeError('store down');
    }
  }

  async function serverSpanOf(extras: { globalInterceptor?: boolean }) {
    @Module({ imports: [OtelTestingModule.forRoot({ serviceName: 'interceptor', ...extras })], controllers: [BrokenController] })
    class AppModule {}
    const app = (await Test.createTestingModule({ imports: [AppModule] }).compile()).createNestApplication({ logger: false });
    await app.listen(0, '127.0.0.1');
    try {
      spanRecorder.reset();
      expect((await plainRequest(`${await app.getUrl()}/broken`)).status).toBe(500);
      return await spanRecorder.waitForSpan({ kind: SpanKind.SERVER });
    } finally {
      await app.close();
    }
  }

  it('by default names the handler and records the exception the handler threw', async () => {
    const span = await serverSpanOf({});
    expect(span.attributes).toMatchObject({ 'nestjs.controller': 'BrokenController', 'nestjs.handler': 'fail', 'error.type': '500' });
    expect(span.events.map((event) => [event.name, event.attributes?.['exception.type']])).toEqual([['exception', 'TypeError']]);
  });

  it('with `globalInterceptor: false` registers none: the guard names the handler, no exception event (error.type and status stay)', async () => {
    const span = await serverSpanOf({ globalInterceptor: false });
    expect(span.name).toBe('GET /broken');
    expect(span.attributes).toMatchObject({ 'nestjs.controller': 'BrokenController', 'nestjs.handler': 'fail', 'error.type': '500' });
    expect(span.status.code).toBe(SpanStatusCode.ERROR);
    expect(span.events).toEqual([]);
  });

  it('forRootAsync takes it next to useFactory', () => {
    const dynamic = OtelModule.forRootAsync({ useFactory: () => ({ serviceName: 'async' }), globalInterceptor: false });
    const withInterceptor = OtelModule.forRootAsync({ useFactory: () => ({ serviceName: 'async' }) });
    const enhancers = (module: typeof dynamic, token: string) =>
      (module.providers ?? []).filter((provider) => typeof provider === 'object' && 'provide' in provider && provider.provide === token);
    expect(enhancers(dynamic, APP_INTERCEPTOR)).toHaveLength(0);
    expect(enhancers(dynamic, APP_GUARD)).toHaveLength(1);
    expect(enhancers(withInterceptor, APP_INTERCEPTOR)).toHaveLength(1);
    expect(enhancers(withInterceptor, APP_GUARD)).toHaveLength(0);
  });
});
