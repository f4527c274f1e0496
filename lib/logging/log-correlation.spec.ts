import { context, ROOT_CONTEXT, trace, TraceFlags, type Context } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import winston from 'winston';
import Transport from 'winston-transport';
import { RequestIdPropagator } from '../propagation/request-id.propagator.js';
import { ECS_LOG_FIELDS, logCorrelationFields, otelPinoMixin, otelWinstonFormat, otelWinstonMeta } from './log-correlation.js';

const A = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: TraceFlags.SAMPLED };
const B = { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: TraceFlags.NONE };

const inSpan = (ids: typeof A, base: Context = ROOT_CONTEXT): Context => trace.setSpan(base, trace.wrapSpanContext(ids));
const withRequestId = (id: string): Context =>
  new RequestIdPropagator().extract(ROOT_CONTEXT, { 'x-request-id': id }, { get: (c, k) => (c as Record<string, string>)[k], keys: Object.keys });

let manager: AsyncLocalStorageContextManager;
beforeAll(() => {
  manager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(manager);
});
afterAll(() => {
  context.disable();
});

describe('logCorrelationFields', () => {
  it('the ids and flags of the span of the context, and nothing at all outside a trace', () => {
    expect(logCorrelationFields(inSpan(A))).toEqual({ trace_id: A.traceId, span_id: A.spanId, trace_flags: '01' });
    expect(logCorrelationFields(inSpan(B))).toEqual({ trace_id: B.traceId, span_id: B.spanId, trace_flags: '00' });
    expect(logCorrelationFields(ROOT_CONTEXT)).toBeUndefined();
    expect(logCorrelationFields(inSpan({ ...A, traceId: '0'.repeat(32) }))).toBeUndefined();
  });

  it('the request id next to them, or alone; field names renamed or left out', () => {
    expect(logCorrelationFields(inSpan(A, withRequestId('req-1')))).toMatchObject({ trace_id: A.traceId, request_id: 'req-1' });
    expect(logCorrelationFields(withRequestId('req-2'))).toEqual({ request_id: 'req-2' });
    const ecs = { traceId: 'trace.id', spanId: 'span.id', traceFlags: false, requestId: 'http.request.id' } as const;
    expect(ECS_LOG_FIELDS).toEqual(ecs);
    expect(logCorrelationFields(inSpan(A, withRequestId('req-3')), ecs)).toEqual({ 'trace.id': A.traceId, 'span.id': A.spanId, 'http.request.id': 'req-3' });
  });
});

describe('otelPinoMixin', () => {
  it('reads the active context per call and returns a fresh object (pino assigns the line onto it)', () => {
    const mixin = otelPinoMixin();
    const inA = context.with(inSpan(A), mixin);
    const outside = mixin();
    expect(inA).toEqual({ trace_id: A.traceId, span_id: A.spanId, trace_flags: '01' });
    expect(outside).toEqual({});
    expect(mixin()).not.toBe(outside);
  });
});

/** A winston transport that acknowledges each entry only on a later turn: it holds the logger stream back. */
class SlowTransport extends Transport {
  readonly entries: Array<Record<string, unknown>> = [];
  override log(info: Record<string, unknown>, callback: () => void): void {
    this.entries.push(info);
    setImmediate(callback);
  }
}

async function logBurst(options: winston.LoggerOptions): Promise<Array<Record<string, unknown>>> {
  const transport = new SlowTransport();
  const logger = winston.createLogger({ ...options, transports: [transport] });
  // 60 entries from request A, then 60 from request B, written in one go.
  context.with(inSpan(A), () => {
    for (let i = 0; i < 60; i++) logger.info(`a ${i}`);
  });
  context.with(inSpan(B), () => {
    for (let i = 0; i < 60; i++) logger.info(`b ${i}`);
  });
  await new Promise<void>((resolve) => {
    const check = (): void => (transport.entries.length === 120 ? resolve() : void setTimeout(check, 5));
    check();
  });
  return transport.entries;
}

describe('winston', () => {
  it('otelWinstonFormat: the ids of the context active in the logging call, for a logger whose transport keeps up', () => {
    const lines: string[] = [];
    const logger = winston.createLogger({
      format: winston.format.combine(otelWinstonFormat(), winston.format.json()),
      transports: [
        new winston.transports.Stream({
          stream: new Writable({ write: (chunk: Buffer, _encoding, callback) => (lines.push(chunk.toString()), callback()) }),
        }),
      ],
    });
    context.with(inSpan(A), () => logger.info('inside'));
    logger.info('outside');
    expect(lines.map((line) => JSON.parse(line))).toEqual([
      { level: 'info', message: 'inside', trace_id: A.traceId, span_id: A.spanId, trace_flags: '01' },
      { level: 'info', message: 'outside' },
    ]);
  });

  it('the format alone, behind a slow transport, reads the ids of another request for the entries it transforms late', async () => {
    const entries = await logBurst({ format: otelWinstonFormat() });
    const wrong = entries.filter((entry) => String(entry.message).startsWith('b') && entry.trace_id !== B.traceId);
    // Why otelWinstonMeta exists: winston buffered these writes and transformed them outside B's context.
    expect(wrong.length).toBeGreaterThan(0);
  });

  it('otelWinstonMeta: the ids of the logging call even when a slow transport delays the formats', async () => {
    const entries = await logBurst({ defaultMeta: otelWinstonMeta(), format: otelWinstonFormat() });
    for (const entry of entries) {
      const ids = String(entry.message).startsWith('a') ? A : B;
      expect({ message: entry.message, trace_id: entry.trace_id, span_id: entry.span_id }).toEqual({
        message: entry.message,
        trace_id: ids.traceId,
        span_id: ids.spanId,
      });
    }
  });

  it('otelWinstonMeta outside a trace adds nothing', async () => {
    const transport = new SlowTransport();
    const logger = winston.createLogger({ defaultMeta: otelWinstonMeta(), format: otelWinstonFormat(), transports: [transport] });
    logger.info('outside');
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(Object.keys(transport.entries[0]!).sort()).toEqual(['level', 'message']);
  });
});
