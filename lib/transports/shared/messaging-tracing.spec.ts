import {
  context,
  defaultTextMapGetter,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Context,
  type TextMapGetter,
} from '@opentelemetry/api';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTestingSdk, type TestingSdk } from '../../testing/testing-sdk.js';
import { EXCEPTION_SIGNAL_OPT_IN } from '../../utils/exception-signal.js';
import {
  endConsumerSpan,
  getConsumerState,
  messagingSpanName,
  producerSpanEnder,
  resolveConsumePolicy,
  rpcErrorType,
  startConsumerSpan,
  startProducerSpan,
  type ConsumePolicy,
  type IncomingMessageDescription,
} from './messaging-tracing.js';
import { recordDiagErrors } from '../../../test/support/diag-errors.js';

const PRODUCER_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PRODUCER_SPAN = '00f067aa0ba902b7';
const PRODUCER_TRACEPARENT = `00-${PRODUCER_TRACE}-${PRODUCER_SPAN}-01`;

type Headers = Record<string, string> | undefined;

function message(headers: Headers): IncomingMessageDescription<Headers> {
  return {
    system: 'nats',
    destination: 'orders.created',
    pattern: 'orders.*',
    carrier: headers,
    getter: defaultTextMapGetter as TextMapGetter<Headers>,
    attributes: { 'messaging.message.id': 'm-1' },
  };
}


describe('messaging tracing', () => {
  const diagErrors = recordDiagErrors();
  let sdk: TestingSdk;

  beforeAll(() => {
    sdk = startTestingSdk();
  });
  afterEach(() => {
    sdk.reset();
  });
  afterAll(() => sdk.shutdown());

  /**
   * What is active while a transport calls the consumer tracer in a real application: the span of
   * whatever else runs (the request that opened the connection, a timer's span) and its baggage.
   * None of it belongs to the message.
   */
  function unrelatedContext(): { ctx: Context; traceId: string; end: () => void } {
    const span = trace.getTracer('unrelated').startSpan('unrelated work');
    const baggage = propagation.createBaggage({ 'tenant.id': { value: 'leaked-tenant' }, 'user.id': { value: 'leaked-user' } });
    return {
      ctx: propagation.setBaggage(trace.setSpan(ROOT_CONTEXT, span), baggage),
      traceId: span.spanContext().traceId,
      end: () => span.end(),
    };
  }

  describe('startConsumerSpan: the context comes from the message alone (extracted from ROOT_CONTEXT)', () => {
    it.each(['parent', 'parent+link'] as const)(
      '%s: the producer span is the parent, whatever span and baggage are active',
      (policy: ConsumePolicy) => {
        const active = unrelatedContext();
        const { state, ctx } = context.with(active.ctx, () =>
          startConsumerSpan(message({ traceparent: PRODUCER_TRACEPARENT, baggage: 'order.id=o-7' }), false, policy),
        );
        endConsumerSpan(state);
        active.end();

        const span = sdk.getFinishedSpans().find((s) => s.kind === SpanKind.CONSUMER)!;
        expect(span.spanContext().traceId).toBe(PRODUCER_TRACE);
        expect(span.parentSpanContext?.spanId).toBe(PRODUCER_SPAN);
        expect(span.parentSpanContext?.isRemote).toBe(true);
        expect(span.links.map((l) => l.context.spanId)).toEqual(policy === 'parent+link' ? [PRODUCER_SPAN] : []);
        // The handler's context: this span, the message's baggage only.
        expect(trace.getSpan(ctx)?.spanContext().spanId).toBe(span.spanContext().spanId);
        expect(propagation.getBaggage(ctx)?.getAllEntries()).toEqual([['order.id', { value: 'o-7' }]]);
        expect(getConsumerState(ctx)).toBe(state);
      },
    );

    it('link: a new root trace linked to the producer, with the message baggage and none of the active one', () => {
      const active = unrelatedContext();
      const { state, ctx } = context.with(active.ctx, () =>
        startConsumerSpan(message({ traceparent: PRODUCER_TRACEPARENT, baggage: 'order.id=o-7' }), true, 'link'),
      );
      endConsumerSpan(state);
      active.end();

      const span = sdk.getFinishedSpans().find((s) => s.kind === SpanKind.CONSUMER)!;
      expect(span.parentSpanContext).toBeUndefined();
      expect(span.spanContext().traceId).not.toBe(PRODUCER_TRACE);
      expect(span.spanContext().traceId).not.toBe(active.traceId);
      expect(span.links.map((l) => l.context.spanId)).toEqual([PRODUCER_SPAN]);
      expect(propagation.getBaggage(ctx)?.getAllEntries()).toEqual([['order.id', { value: 'o-7' }]]);
    });

    it.each(['parent', 'link', 'parent+link'] as const)(
      '%s: a message with trace context but no baggage gets no baggage (the active one does not leak in)',
      (policy: ConsumePolicy) => {
        const active = unrelatedContext();
        const { state, ctx } = context.with(active.ctx, () =>
          startConsumerSpan(message({ traceparent: PRODUCER_TRACEPARENT }), false, policy),
        );
        endConsumerSpan(state);
        active.end();
        expect(propagation.getBaggage(ctx)).toBeUndefined();
        const span = sdk.getFinishedSpans().find((s) => s.kind === SpanKind.CONSUMER)!;
        expect(span.spanContext().traceId).not.toBe(active.traceId);
      },
    );

    it.each([
      ['no headers object', undefined],
      ['empty headers', {}],
      ['a malformed traceparent', { traceparent: 'garbage!!', baggage: '=;;%%' }],
    ] as const)('%s, while another span and baggage are active: a fresh root with no baggage', (_label, headers) => {
      for (const policy of ['parent', 'link', 'parent+link'] as const) {
        sdk.reset();
        const active = unrelatedContext();
        const { state, ctx } = context.with(active.ctx, () => startConsumerSpan(message(headers), false, policy));
        endConsumerSpan(state);
        active.end();

        const span = sdk.getFinishedSpans().find((s) => s.kind === SpanKind.CONSUMER)!;
        expect(span.parentSpanContext, policy).toBeUndefined();
        expect(span.spanContext().traceId, policy).not.toBe(active.traceId);
        expect(span.links, policy).toEqual([]);
        expect(propagation.getBaggage(ctx), policy).toBeUndefined();
      }
    });

    it('names the span, sets kind and attributes', () => {
      const { state } = startConsumerSpan(message({ traceparent: PRODUCER_TRACEPARENT }), true, 'parent');
      endConsumerSpan(state);
      const [span] = sdk.getFinishedSpans();
      expect(span).toMatchObject({ name: 'process orders.created', kind: SpanKind.CONSUMER });
      expect(span!.attributes).toEqual({
        'messaging.system': 'nats',
        'messaging.operation.name': 'process',
        'messaging.operation.type': 'process',
        'messaging.destination.name': 'orders.created',
        'nestjs.pattern': 'orders.*',
        'nestjs.handler.type': 'event',
        'messaging.message.id': 'm-1',
      });
      expect(span!.status.code).toBe(SpanStatusCode.UNSET);
    });
  });

  describe('destinations: template, temporary, anonymous', () => {
    it('names spans after the template, else a destination that is neither temporary nor anonymous, else the operation', () => {
      expect(messagingSpanName('process', { destination: 'probe.7.get', template: 'probe.*.get' })).toBe('process probe.*.get');
      expect(messagingSpanName('process', { destination: 'probe.7.get' })).toBe('process probe.7.get');
      expect(messagingSpanName('send', { destination: '_INBOX.x', temporary: true, anonymous: true })).toBe('send');
      expect(messagingSpanName('send', { destination: 'amq.gen-x', anonymous: true })).toBe('send');
      expect(messagingSpanName('process', { destination: 'q', temporary: true })).toBe('process');
      expect(messagingSpanName('process', { destination: 'x:k:amq.gen-1', template: 'x:k.*', anonymous: true })).toBe('process x:k.*');
    });

    it('sets messaging.destination.template, and temporary / anonymous only when true', () => {
      const { state } = startConsumerSpan({ ...message(undefined), destination: 'probe.7.get', template: 'probe.*.get' }, true, 'link');
      endConsumerSpan(state);
      startProducerSpan({ system: 'nats', destination: '_INBOX.abc', pattern: '_INBOX.abc', isEvent: true, temporary: true, anonymous: true }).span.end();
      startProducerSpan({ system: 'nats', destination: 'd', pattern: 'd', isEvent: true, temporary: false, anonymous: false }).span.end();
      const [consumer, reply, plain] = sdk.getFinishedSpans();
      expect(consumer!.name).toBe('process probe.*.get');
      expect(consumer!.attributes).toMatchObject({ 'messaging.destination.name': 'probe.7.get', 'messaging.destination.template': 'probe.*.get' });
      expect(reply!.name).toBe('send');
      expect(reply!.attributes).toMatchObject({
        'messaging.destination.name': '_INBOX.abc',
        'messaging.destination.temporary': true,
        'messaging.destination.anonymous': true,
      });
      expect(Object.keys(plain!.attributes).filter((key) => key.startsWith('messaging.destination.'))).toEqual(['messaging.destination.name']);
    });
  });

  describe(`exceptions and ${EXCEPTION_SIGNAL_OPT_IN}`, () => {
    afterEach(() => {
      delete process.env[EXCEPTION_SIGNAL_OPT_IN];
    });

    it.each([
      [undefined, 1],
      ['http', 1],
      ['logs/dup', 1],
      ['logs, logs/dup', 1],
      ['logs', 0],
      [' LOGS ', 0],
    ] as const)('%s: ERROR and error.type always, %i exception event(s)', (value, events) => {
      if (value !== undefined) {
        process.env[EXCEPTION_SIGNAL_OPT_IN] = value;
      }
      const { state } = startConsumerSpan(message(undefined), false, 'parent');
      const error = new RangeError('no stock');
      state.error = error;
      endConsumerSpan(state);
      const [span] = sdk.getFinishedSpans();
      expect(span!.status.code).toBe(SpanStatusCode.ERROR);
      expect(span!.attributes['error.type']).toBe('RangeError');
      expect(span!.events.filter((e) => e.name === 'exception')).toHaveLength(events);
      // The error object itself is the caller's, untouched.
      expect(Object.keys(error)).toEqual([]);
    });
  });

  describe('endConsumerSpan', () => {
    it('ends the span once, however often it is called', () => {
      const { state } = startConsumerSpan(message(undefined), false, 'parent');
      endConsumerSpan(state);
      endConsumerSpan(state);
      expect(sdk.getFinishedSpans()).toHaveLength(1);
      expect(diagErrors).toEqual([]);
    });

    it('records the kept error once: ERROR, error.type, one exception event', () => {
      const { state } = startConsumerSpan(message(undefined), false, 'parent');
      state.error = { name: 'OutOfStockError', message: 'out of stock' };
      endConsumerSpan(state);
      endConsumerSpan(state);
      const [span] = sdk.getFinishedSpans();
      expect(span!.status.code).toBe(SpanStatusCode.ERROR);
      expect(span!.attributes['error.type']).toBe('OutOfStockError');
      expect(span!.events.filter((e) => e.name === 'exception')).toHaveLength(1);
      expect(diagErrors).toEqual([]);
    });
  });

  describe('rpcErrorType', () => {
    it('is the class of an Error, the name of a plain error reply, else _OTHER', () => {
      expect(rpcErrorType(new TypeError('x'))).toBe('TypeError');
      expect(rpcErrorType({ status: 'error', message: 'x', name: 'OutOfStockError' })).toBe('OutOfStockError');
      expect(rpcErrorType({ status: 'error', message: 'x' })).toBe('_OTHER');
      expect(rpcErrorType('just a string')).toBe('_OTHER');
    });
  });

  describe('resolveConsumePolicy', () => {
    it("prefers the handler's own policy, then the server's default for its kind, then parent/link", () => {
      expect(resolveConsumePolicy({ extras: { otelConsume: 'parent+link' } }, true, { eventConsume: 'parent' })).toBe('parent+link');
      expect(resolveConsumePolicy({ extras: { otelConsume: 'nonsense' } }, true, undefined)).toBe('link');
      expect(resolveConsumePolicy(null, true, { eventConsume: 'parent' })).toBe('parent');
      expect(resolveConsumePolicy(undefined, false, { messageConsume: 'link' })).toBe('link');
      expect(resolveConsumePolicy(undefined, false, undefined)).toBe('parent');
    });
  });

  describe('producer spans', () => {
    it('start as a child of the active span and return the context to inject', () => {
      const parent = trace.getTracer('caller').startSpan('caller');
      const { span, ctx } = context.with(trace.setSpan(ROOT_CONTEXT, parent), () =>
        startProducerSpan({ system: 'nats', destination: 'orders.get', pattern: 'orders.get', isEvent: false }),
      );
      expect(trace.getSpan(ctx)).toBe(span);
      producerSpanEnder(span)();
      parent.end();
      const producer = sdk.getFinishedSpans().find((s) => s.kind === SpanKind.PRODUCER)!;
      expect(producer.name).toBe('send orders.get');
      expect(producer.spanContext().traceId).toBe(parent.spanContext().traceId);
      expect(producer.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
      expect(producer.attributes['nestjs.handler.type']).toBe('message');
    });

    it('end once; an error records ERROR with its type, an errorType alone sets ERROR without an event', () => {
      const start = () => startProducerSpan({ system: 'nats', destination: 'd', pattern: 'p', isEvent: true }).span;
      const ok = producerSpanEnder(start());
      ok();
      ok(new Error('late'));
      const failed = producerSpanEnder(start());
      failed(new RangeError('no route'));
      failed();
      const cancelled = producerSpanEnder(start());
      cancelled(undefined, 'cancelled');
      cancelled(new Error('late'));

      const [first, second, third] = sdk.getFinishedSpans();
      expect(sdk.getFinishedSpans()).toHaveLength(3);
      expect(first!.status.code).toBe(SpanStatusCode.UNSET);
      expect(first!.events).toEqual([]);
      expect(second!.status.code).toBe(SpanStatusCode.ERROR);
      expect(second!.attributes['error.type']).toBe('RangeError');
      expect(second!.events.map((e) => e.name)).toEqual(['exception']);
      expect(third!.status.code).toBe(SpanStatusCode.ERROR);
      expect(third!.attributes['error.type']).toBe('cancelled');
      expect(third!.events).toEqual([]);
      expect(diagErrors).toEqual([]);
    });
  });
});
