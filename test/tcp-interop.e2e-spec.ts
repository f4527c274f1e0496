import 'reflect-metadata';
import { createConnection, createServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { Controller, Module, type INestMicroservice } from '@nestjs/common';
import { EventPattern, MessagePattern, Payload } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type SpanContext } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { firstValueFrom, lastValueFrom } from 'rxjs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { TraceService } from '../lib/index.js';
import { OtelTestingModule, expectSpan, findSpans, getSpan, spanRecorder } from '../lib/testing/index.js';
import { OtelClientTCP, OtelServerTCP } from '../lib/transports/tcp/index.js';

const HOST = '127.0.0.1';
const P = { echo: 'peer.echo', event: 'peer.event' };
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN_ID = '00f067aa0ba902b7';
const TRACEPARENT = `00-${TRACE_ID}-${SPAN_ID}-01`;

interface EchoView {
  data: unknown;
  tenant?: string;
  traceId?: string;
  spanId?: string;
}

const seenEvents: EchoView[] = [];

@Controller()
class PeerController {
  constructor(private readonly traces: TraceService) {}

  @MessagePattern(P.echo)
  echo(@Payload() data: unknown): EchoView {
    return { data, tenant: this.traces.getBaggage('tenant.id'), traceId: this.traces.getTraceId(), spanId: this.traces.getSpanId() };
  }

  @EventPattern(P.event)
  event(@Payload() data: unknown): void {
    seenEvents.push({ data, tenant: this.traces.getBaggage('tenant.id'), traceId: this.traces.getTraceId() });
  }
}

/**
 * Nest's TCP framing as a non-Nest peer writes it: `<length>#<json>`, the length being that of
 * the JSON text in UTF-16 code units (JavaScript's `string.length`, what Nest's JsonSocket counts).
 */
function frame(packet: unknown): string {
  const json = JSON.stringify(packet);
  return `${json.length}#${json}`;
}

/** Reads Nest's framing from a socket: every complete packet, parsed, in order. */
class FrameReader {
  readonly packets: unknown[] = [];
  private buffer = '';
  private waiters: Array<() => void> = [];

  constructor(socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      for (;;) {
        const hash = this.buffer.indexOf('#');
        if (hash === -1) {
          break;
        }
        const length = Number(this.buffer.slice(0, hash));
        if (this.buffer.length < hash + 1 + length) {
          break;
        }
        this.packets.push(JSON.parse(this.buffer.slice(hash + 1, hash + 1 + length)));
        this.buffer = this.buffer.slice(hash + 1 + length);
      }
      this.waiters.splice(0).forEach((wake) => wake());
    });
  }

  /** The first packet matching `predicate`, waiting up to `timeoutMs` for it. */
  async next(predicate: (packet: any) => boolean, timeoutMs = 3000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.packets.find(predicate);
      if (found !== undefined) {
        return found;
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`no matching packet within ${timeoutMs} ms; got ${JSON.stringify(this.packets).slice(0, 500)}`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }
}

/** A raw TCP client speaking Nest's framing, no Nest and no OpenTelemetry. */
class RawTcpClient {
  private constructor(
    readonly socket: Socket,
    readonly reader: FrameReader,
  ) {}

  static async connect(port: number): Promise<RawTcpClient> {
    const socket = createConnection({ host: HOST, port });
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    return new RawTcpClient(socket, new FrameReader(socket));
  }

  send(packet: unknown): void {
    this.socket.write(frame(packet));
  }

  /** Sends a request and waits for its last reply. */
  async request(packet: { id: string } & Record<string, unknown>): Promise<any> {
    this.send(packet);
    return this.reader.next((reply) => reply?.id === packet.id && reply?.isDisposed === true);
  }

  close(): void {
    this.socket.destroy();
  }
}

const traceparentOf = (span: ReadableSpan | SpanContext): string => {
  const { traceId, spanId, traceFlags } = 'spanContext' in span ? span.spanContext() : span;
  return `00-${traceId}-${spanId}-${(traceFlags & 0x03).toString(16).padStart(2, '0')}`;
};

describe('TCP interop: raw sockets speaking Nest\'s framing, both ways', () => {
  let service: INestMicroservice;
  let port: number;
  let peer: RawTcpClient;

  beforeAll(async () => {
    @Module({ imports: [OtelTestingModule.forRoot({ serviceName: 'orders' })], controllers: [PeerController] })
    class PeerModule {}
    const server = new OtelServerTCP({ host: HOST, port: 0 });
    service = (await Test.createTestingModule({ imports: [PeerModule] }).compile()).createNestMicroservice({ strategy: server });
    await service.listen();
    port = (server.unwrap<NetServer>().address() as AddressInfo).port;
    peer = await RawTcpClient.connect(port);
  });

  afterAll(async () => {
    peer?.close();
    await service?.close();
  });

  beforeEach(() => {
    spanRecorder.reset();
    seenEvents.length = 0;
  });

  describe('a raw client calling OtelServerTCP', () => {
    it('a request with metadata.traceparent and baggage: the SERVER span continues it; the reply is Nest\'s plain envelope', async () => {
      const reply = await peer.request({
        pattern: P.echo,
        data: { n: 1, text: 'é' },
        id: 'raw-1',
        metadata: { traceparent: TRACEPARENT, baggage: 'tenant.id=acme' },
      });
      const serverSpan = await spanRecorder.waitForSpan({ name: P.echo, kind: SpanKind.SERVER });
      expectSpan(serverSpan).toHaveParent({ traceId: TRACE_ID, spanId: SPAN_ID, traceFlags: 1 }).toHaveStatus(SpanStatusCode.UNSET);
      // No reply-context request: exactly what Nest's own server sends, which a plain Nest client accepts.
      expect(reply).toEqual({
        id: 'raw-1',
        response: { data: { n: 1, text: 'é' }, tenant: 'acme', traceId: TRACE_ID, spanId: serverSpan.spanContext().spanId },
        isDisposed: true,
      });
    });

    it('a request asking for the reply context ("otel-reply-context": "1"): the reply\'s metadata names the SERVER span, without the baggage', async () => {
      const reply = await peer.request({
        pattern: P.echo,
        data: 'ask',
        id: 'raw-2',
        metadata: { traceparent: TRACEPARENT, baggage: 'tenant.id=acme', 'otel-reply-context': '1' },
      });
      const serverSpan = await spanRecorder.waitForSpan({ name: P.echo, kind: SpanKind.SERVER });
      expect(reply).toEqual({
        id: 'raw-2',
        response: { data: 'ask', tenant: 'acme', traceId: TRACE_ID, spanId: serverSpan.spanContext().spanId },
        isDisposed: true,
        metadata: { traceparent: traceparentOf(serverSpan) },
      });
    });

    it('an event (no id) with metadata.traceparent: a CONSUMER span in a new trace, linked to the peer\'s span', async () => {
      peer.send({ pattern: P.event, data: { from: 'raw' }, metadata: { traceparent: TRACEPARENT } });
      const consumer = await spanRecorder.waitForSpan({ name: `process ${P.event}`, kind: SpanKind.CONSUMER });
      expectSpan(consumer).toBeRoot().toLinkTo({ traceId: TRACE_ID, spanId: SPAN_ID, traceFlags: 1 });
      expect(seenEvents).toEqual([{ data: { from: 'raw' }, tenant: undefined, traceId: consumer.spanContext().traceId }]);
    });

    /** Metadata no peer should send: each must give a fresh root, a normal reply, and nothing of it echoed. */
    const hostile: Array<[string, unknown]> = [
      ['metadata a string', TRACEPARENT],
      ['metadata a number', 42],
      ['metadata null', null],
      ['metadata an array', [TRACEPARENT]],
      ['metadata true', true],
      ['traceparent a number', { traceparent: 42 }],
      ['traceparent an array', { traceparent: [TRACEPARENT] }],
      ['traceparent an object', { traceparent: { value: TRACEPARENT } }],
      ['traceparent null', { traceparent: null }],
      ['traceparent of 10 KB', { traceparent: `${TRACEPARENT}${'-0'.repeat(5120)}` }],
      ['traceparent with LF', { traceparent: `${TRACEPARENT}\n` }],
      ['traceparent with NUL', { traceparent: `00-${TRACE_ID}-${SPAN_ID}\u0000-01` }],
      ['traceparent with a control character inside', { traceparent: `00-${TRACE_ID}\u0007-${SPAN_ID}-01` }],
      ['traceparent invalid', { traceparent: 'not-a-traceparent' }],
      ['traceparent with an all-zero trace id', { traceparent: `00-${'0'.repeat(32)}-${SPAN_ID}-01` }],
      ['traceparent twice, two spellings', { traceparent: TRACEPARENT, Traceparent: TRACEPARENT }],
      ['traceparent non-ASCII', { traceparent: `00-${TRACE_ID.slice(0, 31)}é-${SPAN_ID}-01` }],
      ['20 000 keys', Object.fromEntries([...Array.from({ length: 20_000 }, (_, i) => [`k${i}`, 'v']), ['traceparent', TRACEPARENT]])],
    ];

    it.each(hostile)('hostile metadata (%s): no crash, a fresh root trace, a normal reply, nothing echoed', async (name, metadata) => {
      const id = `hostile-${name.replace(/\W+/g, '-')}`;
      const reply = await peer.request({ pattern: P.echo, data: name, id, metadata });
      const serverSpan = await spanRecorder.waitForSpan({ name: P.echo, kind: SpanKind.SERVER });
      expectSpan(serverSpan).toBeRoot().toHaveStatus(SpanStatusCode.UNSET);
      expect(serverSpan.links).toEqual([]);
      expect(serverSpan.spanContext().traceId).not.toBe(TRACE_ID);
      expect(reply).toEqual({
        id,
        response: { data: name, tenant: undefined, traceId: serverSpan.spanContext().traceId, spanId: serverSpan.spanContext().spanId },
        isDisposed: true,
      });
      // An event with the same metadata: a root CONSUMER span without links.
      peer.send({ pattern: P.event, data: name, metadata });
      const consumer = await spanRecorder.waitForSpan({ name: `process ${P.event}`, kind: SpanKind.CONSUMER });
      expectSpan(consumer).toBeRoot();
      expect(consumer.links).toEqual([]);
    });

    it('hostile tracestate and baggage next to a valid traceparent (and the reply context asked for): the parent is kept, the rest dropped and not echoed', async () => {
      const reply = await peer.request({
        pattern: P.echo,
        data: 'mixed',
        id: 'raw-mixed',
        metadata: {
          traceparent: TRACEPARENT,
          tracestate: 'vendor=a\u0007b',
          baggage: `tenant.id=${'x'.repeat(10_240)}`,
          'otel-reply-context': '1',
        },
      });
      const serverSpan = await spanRecorder.waitForSpan({ name: P.echo, kind: SpanKind.SERVER });
      expectSpan(serverSpan).toHaveParent({ traceId: TRACE_ID, spanId: SPAN_ID, traceFlags: 1 });
      expect(serverSpan.spanContext().traceState).toBeUndefined();
      expect(reply.response).toEqual({ data: 'mixed', tenant: undefined, traceId: TRACE_ID, spanId: serverSpan.spanContext().spanId });
      expect(reply.metadata).toEqual({ traceparent: traceparentOf(serverSpan) });
    });

    it('after every hostile input the server still serves, and each request was its own trace', async () => {
      const reply = await peer.request({ pattern: P.echo, data: 'after', id: 'raw-after', metadata: { traceparent: TRACEPARENT } });
      expect(reply.response.traceId).toBe(TRACE_ID);
    });
  });

  describe('OtelClientTCP calling a raw server', () => {
    let rawServer: NetServer;
    let rawPort: number;
    let received: FrameReader[];
    /** What the raw server replies to a request, by pattern. */
    const answers = new Map<string, (packet: any) => unknown>();

    beforeAll(async () => {
      received = [];
      rawServer = createServer((socket) => {
        const reader = new FrameReader(socket);
        received.push(reader);
        socket.on('data', () => {
          for (const packet of reader.packets.splice(0) as any[]) {
            seen.push(packet);
            const answer = answers.get(packet?.pattern);
            if (packet?.id !== undefined && answer) {
              socket.write(frame(answer(packet)));
            }
          }
        });
      });
      await new Promise<void>((resolve) => rawServer.listen(0, HOST, resolve));
      rawPort = (rawServer.address() as AddressInfo).port;
    });
    const seen: any[] = [];

    afterAll(async () => {
      await new Promise((resolve) => rawServer?.close(resolve));
    });

    beforeEach(() => {
      seen.length = 0;
    });

    async function seenPacket(predicate: (packet: any) => boolean): Promise<any> {
      for (let i = 0; i < 300; i++) {
        const found = seen.find(predicate);
        if (found) {
          return found;
        }
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      throw new Error('the raw server saw no such packet');
    }

    it('send(): the packet is Nest\'s envelope plus metadata with the CLIENT span\'s traceparent; a reply with metadata still reaches the caller', async () => {
      answers.set('raw.get', (packet) => ({
        id: packet.id,
        response: { ok: true },
        isDisposed: true,
        metadata: { traceparent: `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01` },
      }));
      const client = new OtelClientTCP({ host: HOST, port: rawPort });
      try {
        const baggage = propagation.createBaggage({ 'tenant.id': { value: 'acme' } });
        const caller = trace.getTracer('tcp-interop').startSpan('caller', {}, ROOT_CONTEXT);
        const reply = await context.with(trace.setSpan(propagation.setBaggage(ROOT_CONTEXT, baggage), caller), () =>
          firstValueFrom(client.send('raw.get', { id: 7, text: 'é' })),
        );
        caller.end();
        expect(reply).toEqual({ ok: true });
        const clientSpan = await spanRecorder.waitForSpan({ name: 'raw.get', kind: SpanKind.CLIENT });
        expectSpan(clientSpan).toHaveParent(caller.spanContext()).toHaveStatus(SpanStatusCode.UNSET);
        const packet = await seenPacket((p) => p.pattern === 'raw.get');
        expect(Object.keys(packet).sort()).toEqual(['data', 'id', 'metadata', 'pattern']);
        expect(packet).toEqual({
          pattern: 'raw.get',
          data: { id: 7, text: 'é' },
          id: expect.any(String),
          metadata: { traceparent: traceparentOf(clientSpan), baggage: 'tenant.id=acme', 'otel-reply-context': '1' },
        });
        expect(packet.metadata.traceparent.split('-')[2]).toBe(clientSpan.spanContext().spanId);
      } finally {
        client.close();
      }
    });

    it('send() without an active span: the metadata still names the CLIENT span (a root)', async () => {
      answers.set('raw.root', (packet) => ({ id: packet.id, response: 1, isDisposed: true }));
      const client = new OtelClientTCP({ host: HOST, port: rawPort });
      try {
        expect(await firstValueFrom(client.send('raw.root', {}))).toBe(1);
        const clientSpan = await spanRecorder.waitForSpan({ name: 'raw.root', kind: SpanKind.CLIENT });
        expectSpan(clientSpan).toBeRoot();
        const packet = await seenPacket((p) => p.pattern === 'raw.root');
        expect(packet.metadata).toEqual({ traceparent: traceparentOf(clientSpan), 'otel-reply-context': '1' });
      } finally {
        client.close();
      }
    });

    it('a foreign reply with a metadata field that is not a Nest envelope is handed over whole, as Nest does', async () => {
      answers.set('raw.foreign', (packet) => ({ id: packet.id, metadata: { mine: true }, payload: 'x' }));
      const client = new OtelClientTCP({ host: HOST, port: rawPort });
      try {
        const reply = await firstValueFrom(client.send('raw.foreign', {}));
        expect(reply).toMatchObject({ metadata: { mine: true }, payload: 'x' });
      } finally {
        client.close();
      }
    });

    it('emit(): the event packet carries the PRODUCER span\'s traceparent in its metadata, no id, no reply-context request', async () => {
      const client = new OtelClientTCP({ host: HOST, port: rawPort });
      try {
        await lastValueFrom(client.emit('raw.event', { n: 1 }), { defaultValue: undefined });
        const producer = await spanRecorder.waitForSpan({ name: 'send raw.event', kind: SpanKind.PRODUCER });
        const packet = await seenPacket((p) => p.pattern === 'raw.event');
        expect(packet).toEqual({ pattern: 'raw.event', data: { n: 1 }, metadata: { traceparent: traceparentOf(producer) } });
        expect(findSpans(spanRecorder.getFinishedSpans(), { kind: SpanKind.CLIENT })).toHaveLength(0);
        getSpan(spanRecorder.getFinishedSpans(), { name: 'send raw.event' });
      } finally {
        client.close();
      }
    });
  });
});
