import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { Controller, Module, type INestApplication, type INestMicroservice } from '@nestjs/common';
import { ClientKafka, ClientNats, ClientRMQ, EventPattern, MessagePattern, Payload, type ClientProxy } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { context, diag, DiagLogLevel, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context } from '@opentelemetry/api';
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace';
import { Kafka, logLevel } from 'kafkajs';
import { filter, firstValueFrom, timeout, type Observable, type Subscription } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { TraceService } from '../lib/index.js';
import { OtelTestingModule, expectSpan, findSpans, getSpan, spanRecorder } from '../lib/testing/index.js';
import { OtelClientKafka, OtelServerKafka } from '../lib/transports/kafka/index.js';
import { OtelClientNats, OtelServerNats } from '../lib/transports/nats/index.js';
import { OtelClientRMQ, OtelServerRMQ } from '../lib/transports/rmq/index.js';
import { SEND_CANCELLED, SEND_CLIENT_CLOSED, SEND_CONNECTION_LOST } from '../lib/transports/shared/producer-tracer.js';
import { startKafkaBroker, type KafkaBroker } from './support/kafka-broker.js';
import { NEST_MAJOR } from './support/nest-version.js';
import {
  brokersDisposed,
  freePort,
  startPrivateNats,
  startPrivateRabbit,
  type PrivateNats,
  type PrivateRabbit,
} from './support/private-brokers.js';

// Brokers going away under a running, traced app: NATS killed (SIGKILL) and started again on its
// port; RabbitMQ stopped with rabbitmqctl, then killed, and started again; the Kafka test broker
// taken down and brought back (SIGUSR1/SIGUSR2: connections refused, state kept, as a restarted
// broker looks to its clients), then killed and replaced by an empty broker on its port. Always
// on brokers of this file's own (test/support/private-brokers.ts, --port of the Kafka broker):
// the machine's shared NATS and RabbitMQ serve other test files meanwhile and are never touched.
//
// For each transport, a traced client (OtelClientX) and Nest's own (ClientX) make the same calls
// under the same fault. The callers must get the same outcome; the traced calls' spans must end,
// exactly once, ERROR with an `error.type` where the call failed; tracing must resume after the
// reconnect; and nothing may be left behind: spans, listeners, pending requests, handles.

/** Every span started in this process: `open` holds those that have not ended. */
class OpenSpans implements SpanProcessor {
  readonly open = new Map<string, Span>();
  onStart(span: Span, _parent: Context): void {
    this.open.set(span.spanContext().spanId, span);
  }
  onEnd(span: ReadableSpan): void {
    this.open.delete(span.spanContext().spanId);
  }
  openNames(): string[] {
    return [...this.open.values()].map((span) => (span as unknown as ReadableSpan).name).sort();
  }
  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

const spans = new OpenSpans();

/**
 * What `diag` says: the SDK warns about every operation on an ended span (a second `end()`, an
 * attribute set too late), and otel-nest reports its own failures there instead of throwing.
 */
const diagLines: string[] = [];
const capture =
  (level: string) =>
  (message: string, ...args: unknown[]): void => {
    const details = args.map((arg) => (arg instanceof Error ? arg.message : String(arg))).join(' ');
    diagLines.push(`${level}: ${message} ${details}`.trim());
  };
diag.setLogger(
  { error: capture('error'), warn: capture('warn'), info: () => undefined, debug: () => undefined, verbose: () => undefined },
  { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true },
);
/** Spans ended twice or used after their end, and failures of otel-nest's own. */
const tracingProblems = (): string[] => diagLines.filter((line) => /ended Span|otel-nest/.test(line));

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((done) => (resolve = done));
  return { promise, resolve };
}

/** Request handlers that wait: each request names its gate, the test opens it. */
class Gates {
  private readonly gates = new Map<string, { started: Deferred<void>; release: Deferred<void> }>();
  private get(name: string) {
    let gate = this.gates.get(name);
    if (!gate) {
      gate = { started: deferred<void>(), release: deferred<void>() };
      this.gates.set(name, gate);
    }
    return gate;
  }
  async pass(name: string): Promise<void> {
    const gate = this.get(name);
    gate.started.resolve();
    await gate.release.promise;
  }
  async started(...names: string[]): Promise<void> {
    await Promise.all(names.map((name) => this.get(name).started.promise));
  }
  release(...names: string[]): void {
    names.forEach((name) => this.get(name).release.resolve());
  }
  releaseAll(): void {
    this.gates.forEach((gate) => gate.release.resolve());
  }
}

const gates = new Gates();

interface EchoReply {
  data: unknown;
  traceId?: string;
  spanId?: string;
}

/** The trace ids the event handler ran in, by the `run` the event carried. */
const events = new Map<string, string | undefined>();

@Controller()
class FaultsController {
  constructor(private readonly traces: TraceService) {}

  @MessagePattern('faults.echo')
  echo(@Payload() data: unknown): EchoReply {
    return { data, traceId: this.traces.getTraceId(), spanId: this.traces.getSpanId() };
  }

  @MessagePattern('faults.wait')
  async wait(@Payload() data: { gate: string }): Promise<string> {
    await gates.pass(data.gate);
    return `released ${data.gate}`;
  }

  @EventPattern('faults.happened')
  happened(@Payload() data: { run: string }): void {
    events.set(data.run, this.traces.getTraceId());
  }
}

const otelTesting = () => OtelTestingModule.forRoot({ serviceName: 'faults', spanProcessors: [spans] });

@Module({ imports: [otelTesting()], controllers: [FaultsController] })
class FaultsModule {}

/** Holds the SDK for the whole file: closing one transport's service must not shut it down. */
let host: INestApplication | undefined;

beforeAll(async () => {
  @Module({ imports: [otelTesting()] })
  class HostModule {}
  host = (await Test.createTestingModule({ imports: [HostModule] }).compile()).createNestApplication({ logger: false });
  await host.init();
});

afterAll(async () => {
  gates.releaseAll();
  await host?.close();
  brokersDisposed();
});

async function startService(strategy: object): Promise<INestMicroservice> {
  const service = (await Test.createTestingModule({ imports: [FaultsModule] }).compile()).createNestMicroservice({
    strategy: strategy as never,
    logger: false,
  });
  await service.listen();
  return service;
}

/** What a caller got: its last value, an error (name and message), or nothing yet. */
type Outcome = { value: unknown } | { error: string } | 'pending';

function describeError(err: unknown): string {
  if (err instanceof Error) {
    return `${err.name}: ${err.message}`;
  }
  return `${typeof err}: ${typeof err === 'string' ? err : JSON.stringify(err)}`;
}

interface Call {
  /** What the caller has got so far. */
  outcome(): Outcome;
  /** Resolves when the call completes or fails. */
  settled: Promise<Outcome>;
  /** The caller gives up (unsubscribes). */
  cancel(): void;
  /** The trace the call was made in. */
  traceId: string;
  /** The finished spans of that trace. */
  spans(): ReadableSpan[];
  /** Its one PRODUCER span, which must have ended (and been exported once). */
  producer(): ReadableSpan;
}

/**
 * Subscribes to `source()` now, inside a trace of its own (a remote parent with a random trace
 * id), so that the spans of this one call can be told apart from the others'.
 */
function call(source: () => Observable<unknown>): Call {
  const traceId = randomBytes(16).toString('hex');
  const parent = trace.setSpanContext(ROOT_CONTEXT, { traceId, spanId: randomBytes(8).toString('hex'), traceFlags: 1, isRemote: true });
  let state: Outcome = 'pending';
  const settled = deferred<Outcome>();
  const subscription: Subscription = context.with(parent, () =>
    source().subscribe({
      next: (value) => {
        state = { value };
      },
      error: (err: unknown) => {
        state = { error: describeError(err) };
        settled.resolve(state);
      },
      complete: () => settled.resolve(state),
    }),
  );
  const ofTrace = () => spanRecorder.getFinishedSpans().filter((span) => span.spanContext().traceId === traceId);
  return {
    outcome: () => state,
    settled: settled.promise,
    cancel: () => subscription.unsubscribe(),
    traceId,
    spans: ofTrace,
    producer() {
      const found = findSpans(ofTrace(), { kind: SpanKind.PRODUCER });
      expect(found, `the PRODUCER span of trace ${traceId} ended, once`).toHaveLength(1);
      return found[0]!;
    },
  };
}

/** The same call through the traced client and Nest's own. */
function both(
  clients: { traced: ClientProxy; plain: ClientProxy },
  make: (client: ClientProxy, which: 'traced' | 'plain') => Observable<unknown>,
): { traced: Call; plain: Call } {
  return { traced: call(() => make(clients.traced, 'traced')), plain: call(() => make(clients.plain, 'plain')) };
}

/** Resolves once Nest's status of a client or server is `status` (the latest one counts). */
async function statusIs(transport: { status: Observable<string> }, status: string, timeoutMs = 20_000): Promise<void> {
  await firstValueFrom(transport.status.pipe(filter((current) => current === status), timeout(timeoutMs)));
}

/** Listener counts per event of an EventEmitter (not one: `{}`). */
function listenerCounts(emitter: unknown): Record<string, number> {
  if (!(emitter instanceof EventEmitter)) {
    return {};
  }
  return Object.fromEntries(emitter.eventNames().map((name) => [String(name), emitter.listenerCount(name)]));
}

/**
 * The process's listeners per event, its open handles (sockets, child processes, pipes, servers)
 * per kind, and its timers.
 */
function processSnapshot(): { listeners: Record<string, number>; handles: Record<string, number>; timers: number } {
  const handles: Record<string, number> = {};
  let timers = 0;
  for (const type of process.getActiveResourcesInfo()) {
    if (/Wrap$/.test(type)) {
      handles[type] = (handles[type] ?? 0) + 1;
    } else if (type === 'Timeout') {
      timers++;
    }
  }
  return { listeners: listenerCounts(process), handles, timers };
}

/**
 * No emitter of `after` has more listeners for an event than in `before`, nor listeners for an
 * event it had none for. (Fewer is fine: Nest's `once` listeners fire during a fault.)
 */
function expectNoMoreListeners(after: unknown, before: unknown, path = 'listeners'): void {
  if (typeof after === 'number') {
    expect(after, path).toBeLessThanOrEqual(typeof before === 'number' ? before : 0);
    return;
  }
  for (const [key, value] of Object.entries(after as Record<string, unknown>)) {
    expectNoMoreListeners(value, (before as Record<string, unknown> | undefined)?.[key], `${path}.${key}`);
  }
}

/**
 * The process's listeners and handles return to `before` (a closed socket goes away a moment
 * later), and no more timers run than then (`before` was taken in a hook, whose timeout timer
 * Vitest runs; counted outside `vi.waitFor`, which runs two).
 */
async function expectBackTo(before: ReturnType<typeof processSnapshot>): Promise<void> {
  await vi.waitFor(() => expect({ ...processSnapshot(), timers: 0 }).toEqual({ ...before, timers: 0 }), { timeout: 5000 });
  expect(processSnapshot().timers, 'timers').toBeLessThanOrEqual(before.timers);
}

/** Requests a client still waits for: Nest's reply callbacks, and otel-nest's open PRODUCER spans. */
function pendingOf(client: object): { nest: number; otel: number } {
  const { routingMap, pendingRequests } = client as unknown as { routingMap: Map<unknown, unknown>; pendingRequests?: { open: Set<unknown> } };
  return { nest: routingMap.size, otel: pendingRequests?.open.size ?? 0 };
}

/** Reads a protected or private member (driver objects, registries) of a Nest or otel-nest class. */
function member<T>(instance: object, name: string): T {
  return (instance as Record<string, unknown>)[name] as T;
}

/**
 * A request and an event once the broker is back: client PRODUCER → server CONSUMER, parent and
 * child in one trace, through the broker (the services trace events as children:
 * `eventConsume: 'parent'`). Tries again while the transport does not deliver yet.
 */
async function expectConnectedTrace(client: ClientProxy, run: string): Promise<void> {
  let request: Call | undefined;
  await vi.waitFor(
    async () => {
      request = call(() => client.send('faults.echo', { run }).pipe(timeout(3000)));
      expect(await request.settled).toMatchObject({ value: { data: { run } } });
    },
    { timeout: 30_000, interval: 100 },
  );
  const reply = (request!.outcome() as { value: EchoReply }).value;
  const requestSpans = await spanRecorder.waitForSpans(() => request!.spans().length >= 2).then(() => request!.spans());
  const producer = request!.producer();
  const consumer = getSpan(requestSpans, { kind: SpanKind.CONSUMER });
  expectSpan(producer, requestSpans).toHaveStatus(SpanStatusCode.UNSET).toHaveAttributes({ 'nestjs.pattern': 'faults.echo' });
  expectSpan(consumer, requestSpans).toHaveParent(producer).toHaveStatus(SpanStatusCode.UNSET);
  expect(reply).toMatchObject({ traceId: producer.spanContext().traceId, spanId: consumer.spanContext().spanId });

  const event = call(() => client.emit('faults.happened', { run }));
  await event.settled;
  await vi.waitFor(() => expect(events.get(run)).toBe(event.traceId), { timeout: 15_000 });
  await spanRecorder.waitForSpans(() => event.spans().length >= 2);
  const emitted = event.producer();
  expectSpan(emitted).toHaveStatus(SpanStatusCode.UNSET).toHaveAttributes({ 'nestjs.handler.type': 'event' });
  expectSpan(getSpan(event.spans(), { kind: SpanKind.CONSUMER }), event.spans()).toHaveParent(emitted);
}

/**
 * Runs `whileDown` after `fault`, then `restore` even when an expectation failed, so that a
 * failing test leaves the broker up, and no handler waiting, for the next ones.
 */
async function underFault(fault: () => Promise<void>, whileDown: () => Promise<void>, restore: () => Promise<void>): Promise<void> {
  await fault();
  try {
    await whileDown();
  } catch (err) {
    gates.releaseAll();
    throw err;
  } finally {
    await restore();
  }
}

/** Both callers failed alike, and the traced call's PRODUCER span ended ERROR with an `error.type`. */
async function expectSameFailure(calls: { traced: Call; plain: Call }): Promise<string> {
  const outcome = await calls.traced.settled;
  expect(outcome).toHaveProperty('error');
  expect(await calls.plain.settled).toEqual(outcome);
  const producer = calls.traced.producer();
  expectSpan(producer).toHaveStatus(SpanStatusCode.ERROR);
  expect(producer.attributes['error.type'], 'error.type').toMatch(/./);
  return (outcome as { error: string }).error;
}

describe('NATS: nats-server killed (SIGKILL) and started again on its port', () => {
  let nats: PrivateNats;
  let strategy: OtelServerNats;
  let service: INestMicroservice | undefined;
  let traced: OtelClientNats;
  let plain: ClientNats;
  let clients: { traced: ClientProxy; plain: ClientProxy };
  let before: ReturnType<typeof processSnapshot>;
  let connected: ReturnType<typeof natsCounts>;
  let options: { servers: string[]; reconnectTimeWait: number; reconnectJitter: number; maxReconnectAttempts: number };

  /**
   * What the connections keep: the driver's status listeners (Nest iterates `status()`), their
   * subscriptions (one per request waiting for its reply, one per handler), and Nest's events.
   */
  function natsCounts() {
    const of = (transport: ClientNats | OtelServerNats) => {
      const connection = transport.unwrap<{ protocol: { listeners: unknown[]; subscriptions: { size(): number } }; listeners?: unknown[] }>();
      return {
        statusListeners: connection.protocol.listeners.length + (connection.listeners?.length ?? 0),
        subscriptions: connection.protocol.subscriptions.size(),
        nestListeners: listenerCounts(member(transport, 'statusEventEmitter')),
      };
    };
    return { traced: of(traced), plain: of(plain), server: of(strategy) };
  }

  beforeAll(async () => {
    before = processSnapshot();
    nats = await startPrivateNats();
    // Reconnect at once; never give up (the default gives up after 10 attempts).
    options = { servers: [nats.url], reconnectTimeWait: 50, reconnectJitter: 0, maxReconnectAttempts: -1 };
    strategy = new OtelServerNats({ ...options, otel: { eventConsume: 'parent' } });
    service = await startService(strategy);
    traced = new OtelClientNats(options);
    plain = new ClientNats(options);
    // Nest 12.1's typings do not make its own ClientNats a ClientProxy (the status type).
    clients = { traced, plain: plain as unknown as ClientProxy };
    await Promise.all([traced.connect(), plain.connect()]);
    await Promise.all([firstValueFrom(traced.send('faults.echo', 'warm-up')), firstValueFrom(plain.send('faults.echo', 'warm-up'))]);
    connected = natsCounts();
  });

  afterAll(async () => {
    gates.releaseAll();
    await Promise.allSettled([traced?.close(), plain?.close()]);
    await service?.close();
    await nats?.dispose();
  });

  it('mid-request: a reply sent after the restart arrives (span OK); a caller giving up (ERROR cancelled) or a client closed during the outage fails its span, callers as with ClientNats', async () => {
    spanRecorder.reset();
    const across = both(clients, (client, which) => client.send('faults.wait', { gate: `nats-across-${which}` }));
    const givingUp = both(clients, (client, which) => client.send('faults.wait', { gate: `nats-give-up-${which}` }).pipe(timeout(1000)));
    // Clients shut down during the outage, with a request in flight.
    const closing = { traced: new OtelClientNats(options), plain: new ClientNats(options) };
    await Promise.all([closing.traced.connect(), closing.plain.connect()]);
    const closedUnder = both({ traced: closing.traced, plain: closing.plain as unknown as ClientProxy }, (client, which) =>
      client.send('faults.wait', { gate: `nats-closed-${which}` }),
    );
    const allGates = ['across', 'give-up', 'closed'].flatMap((name) => [`nats-${name}-traced`, `nats-${name}-plain`]);
    await gates.started(...allGates);

    await underFault(
      () => nats.kill('SIGKILL'),
      async () => {
        await Promise.all([statusIs(traced, 'disconnected'), statusIs(plain, 'disconnected')]);
        // Nest fails what is sent while it knows the connection is lost (with a string).
        const sentDuring = both(clients, (client) => client.send('faults.echo', { during: true }));
        const emittedDuring = both(clients, (client) => client.emit('faults.happened', { run: 'nats-during' }));
        expect(await expectSameFailure(sentDuring)).toMatch(/Connection lost/);
        expect(await expectSameFailure(emittedDuring)).toMatch(/Connection lost/);
        expect(await givingUp.traced.settled).toEqual({ error: 'TimeoutError: Timeout has occurred' });
        expect(await givingUp.plain.settled).toEqual(await givingUp.traced.settled);
        expectSpan(givingUp.traced.producer()).toHaveStatus(SpanStatusCode.ERROR).toHaveAttributes({ 'error.type': SEND_CANCELLED });
        // The driver keeps the reply inbox subscribed across the reconnect: the span waits.
        expect(across.traced.outcome()).toBe('pending');
        expect(spans.openNames()).toContain('send faults.wait');

        await Promise.all([closing.traced.close(), closing.plain.close()]);
        if (NEST_MAJOR >= 12) {
          // Nest 12 fails the requests still waiting when it closes.
          expect(await closedUnder.traced.settled).toEqual({ error: 'Error: Connection closed' });
          expect(await closedUnder.plain.settled).toEqual(await closedUnder.traced.settled);
          expectSpan(closedUnder.traced.producer()).toHaveStatus(SpanStatusCode.ERROR, 'Connection closed').toHaveAttributes({ 'error.type': 'Error' });
        } else {
          // Nest 11 leaves them pending for good; the span ends anyway, when the client closes.
          await sleep(200);
          expect(closedUnder.traced.outcome()).toBe('pending');
          expect(closedUnder.plain.outcome()).toBe('pending');
          expectSpan(closedUnder.traced.producer()).toHaveStatus(SpanStatusCode.ERROR).toHaveAttributes({ 'error.type': SEND_CLIENT_CLOSED });
          closedUnder.traced.cancel();
          closedUnder.plain.cancel();
        }
        expect(pendingOf(closing.traced)).toEqual({ nest: 0, otel: 0 });
      },
      () => nats.ensureUp(),
    );

    await Promise.all([statusIs(traced, 'connected'), statusIs(plain, 'connected'), statusIs(strategy, 'connected')]);
    gates.release(...allGates);
    expect(await across.traced.settled).toEqual({ value: 'released nats-across-traced' });
    expect(await across.plain.settled).toEqual({ value: 'released nats-across-plain' });
    const producer = across.traced.producer();
    expectSpan(producer).toHaveStatus(SpanStatusCode.UNSET);
    expectSpan(getSpan(across.traced.spans(), { kind: SpanKind.CONSUMER }), across.traced.spans()).toHaveParent(producer);
    expect(tracingProblems()).toEqual([]);
  });

  it('tracing resumes after the reconnect: request and event are connected traces through the broker', async () => {
    await expectConnectedTrace(traced, 'nats-after');
  });

  it('nothing leaks: every span ended, no more listeners or subscriptions than before the fault, no pending request, no handle', async () => {
    // The handlers of the requests that gave up finish too.
    await vi.waitFor(() => expect(spans.openNames()).toEqual([]));
    expectNoMoreListeners(natsCounts(), connected);
    expect(pendingOf(traced)).toEqual({ nest: 0, otel: 0 });
    expect(pendingOf(plain)).toEqual({ nest: 0, otel: 0 });
    await Promise.all([traced.close(), plain.close()]);
    await service!.close();
    service = undefined;
    await nats.dispose();
    await expectBackTo(before);
    expect(tracingProblems()).toEqual([]);
  });
});

describe('RabbitMQ: a node of its own stopped (rabbitmqctl stop), then killed (SIGKILL), and started again', () => {
  let rabbit: PrivateRabbit;
  let strategy: OtelServerRMQ;
  let service: INestMicroservice | undefined;
  let traced: OtelClientRMQ;
  let plain: ClientRMQ;
  let clients: { traced: ClientProxy; plain: ClientProxy };
  let before: ReturnType<typeof processSnapshot>;
  let connected: ReturnType<typeof rmqCounts>;

  /**
   * Listeners on what Nest keeps per connection: the connection manager and its channel (client
   * and server), and the client's reply emitter (one listener per request waiting for its reply).
   */
  function rmqCounts() {
    const of = (transport: object, manager: string) => ({
      manager: listenerCounts(member(transport, manager)),
      channel: listenerCounts(member(transport, 'channel')),
    });
    return {
      traced: { ...of(traced, 'client'), replies: listenerCounts(member(traced, 'responseEmitter')) },
      plain: { ...of(plain, 'client'), replies: listenerCounts(member(plain, 'responseEmitter')) },
      server: of(strategy, 'server'),
    };
  }

  beforeAll(async () => {
    before = processSnapshot();
    rabbit = await startPrivateRabbit();
    const options = {
      urls: [rabbit.url],
      queue: 'faults',
      // Reconnect at once (default 5 s).
      socketOptions: { reconnectTimeInSeconds: 0.1, heartbeatIntervalInSeconds: 1 },
    };
    strategy = new OtelServerRMQ({ ...options, otel: { eventConsume: 'parent' } });
    service = await startService(strategy);
    traced = new OtelClientRMQ(options);
    plain = new ClientRMQ(options);
    clients = { traced, plain: plain as unknown as ClientProxy };
    await Promise.all([traced.connect(), plain.connect()]);
    await Promise.all([firstValueFrom(traced.send('faults.echo', 'warm-up')), firstValueFrom(plain.send('faults.echo', 'warm-up'))]);
    connected = rmqCounts();
  }, 90_000);

  afterAll(async () => {
    gates.releaseAll();
    await Promise.allSettled([traced?.close(), plain?.close()]);
    await service?.close();
    await rabbit?.dispose();
  });

  for (const fault of ['rabbitmqctl stop', 'SIGKILL'] as const) {
    it(`${fault} mid-request: the reply to direct reply-to is lost; the caller waits as with ClientRMQ, the span ends ERROR ${SEND_CONNECTION_LOST} at the drop`, async () => {
      spanRecorder.reset();
      const tag = fault === 'SIGKILL' ? 'kill' : 'stop';
      const across = both(clients, (client, which) => client.send('faults.wait', { gate: `rmq-${tag}-${which}` }));
      await gates.started(`rmq-${tag}-traced`, `rmq-${tag}-plain`);

      const dropped = Date.now();
      await underFault(
        () => (fault === 'SIGKILL' ? rabbit.kill() : rabbit.stop()),
        async () => {
          await Promise.all([statusIs(traced, 'disconnected'), statusIs(plain, 'disconnected'), statusIs(strategy, 'disconnected')]);
          // The span ended when the connection dropped; the caller, as Nest's, still waits.
          const producer = across.traced.producer();
          expectSpan(producer).toHaveStatus(SpanStatusCode.ERROR).toHaveAttributes({ 'error.type': SEND_CONNECTION_LOST });
          expect(producer.endTime[0] * 1000 + producer.endTime[1] / 1e6).toBeGreaterThanOrEqual(dropped - 1);
          expect(across.traced.outcome()).toBe('pending');
          expect(across.plain.outcome()).toBe('pending');
          expect(pendingOf(traced).otel).toBe(0);
          // Nest fails what is sent while it knows the connection is lost (with a string).
          const sentDuring = both(clients, (client) => client.send('faults.echo', { during: tag }));
          const emittedDuring = both(clients, (client) => client.emit('faults.happened', { run: `rmq-during-${tag}` }));
          expect(await expectSameFailure(sentDuring)).toMatch(/Connection lost/);
          expect(await expectSameFailure(emittedDuring)).toMatch(/Connection lost/);
        },
        () => rabbit.ensureUp(),
      );

      await Promise.all([statusIs(traced, 'connected'), statusIs(plain, 'connected'), statusIs(strategy, 'connected')]);
      // The handlers reply now, to the reply-to address of a channel that is gone.
      gates.release(`rmq-${tag}-traced`, `rmq-${tag}-plain`);
      await spanRecorder.waitForSpans(() => findSpans(across.traced.spans(), { kind: SpanKind.CONSUMER }).length === 1);
      await sleep(300);
      expect(across.traced.outcome()).toBe('pending');
      expect(across.plain.outcome()).toBe('pending');
      // The callers give up; the span had ended, and stays as it was.
      across.traced.cancel();
      across.plain.cancel();
      expectSpan(across.traced.producer()).toHaveAttributes({ 'error.type': SEND_CONNECTION_LOST });
      expect(pendingOf(traced)).toEqual({ nest: 0, otel: 0 });
      expect(pendingOf(plain)).toEqual({ nest: 0, otel: 0 });
      expect(tracingProblems()).toEqual([]);
    }, 60_000);
  }

  it('tracing resumes after the reconnect: request and event are connected traces through the broker', async () => {
    await expectConnectedTrace(traced, 'rmq-after');
  });

  it('nothing leaks: every span ended, no more listeners than before the faults, no pending request, no handle', async () => {
    await vi.waitFor(() => expect(spans.openNames()).toEqual([]));
    // Fewer is fine: the server's `once('connectFailed')` listener fires during the outage.
    expectNoMoreListeners(rmqCounts(), connected);
    expect(pendingOf(traced)).toEqual({ nest: 0, otel: 0 });
    await Promise.all([traced.close(), plain.close()]);
    await service!.close();
    service = undefined;
    await rabbit.dispose();
    await expectBackTo(before);
    expect(tracingProblems()).toEqual([]);
  }, 30_000);
});

/**
 * The service's reply publisher, with the failures it reports kept (as an application's error
 * handling would). Nest 11 leaves a failed reply publish unhandled (an unhandled rejection, with
 * ServerKafka as with OtelServerKafka); Nest 12 handles it.
 */
class ReplyFailuresKept extends OtelServerKafka {
  readonly replyFailures: unknown[] = [];

  override send(stream$: Observable<any>, respond: Parameters<OtelServerKafka['send']>[1]): ReturnType<OtelServerKafka['send']> {
    return super.send(stream$, (packet) => Promise.resolve(respond(packet)).catch((err: unknown) => void this.replyFailures.push(err)));
  }
}

describe('Kafka: the test broker down and back up (state kept), killed and replaced by an empty one on its port', () => {
  // Two partitions for the waiting handler: the traced and the plain request each wait in one.
  const topics = ['faults.echo', 'faults.echo.reply', 'faults.wait:2', 'faults.wait.reply', 'faults.happened'];
  /** A request for the waiting handler, to a partition of its own (a consumer handles one record per partition at a time). */
  const wait = (gate: string, which: 'traced' | 'plain') => ({ partition: which === 'traced' ? 0 : 1, value: { gate } });
  /** Records in the plain request's partition of `faults.wait`, as the broker counts them. */
  async function plainRequestsInBroker(): Promise<number> {
    const admin = new Kafka({ brokers: broker.brokers, logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    try {
      const offsets = await admin.fetchTopicOffsets('faults.wait');
      return Number(offsets.find((offset) => offset.partition === 1)?.high ?? 0);
    } finally {
      await admin.disconnect();
    }
  }
  /**
   * Sends the traced and the plain request to the waiting handler, and resolves when both are in
   * flight: the traced one in its handler, the plain one in the broker at least (the consumer
   * fetches again only once every record of its last fetch is handled, so the plain one may wait
   * for the traced handler).
   */
  async function sendWaiting(tag: string, giveUpAfterMs?: number): Promise<{ traced: Call; plain: Call }> {
    const inBroker = await plainRequestsInBroker();
    const calls = both(clients, (client, which) => {
      const request = client.send('faults.wait', wait(`kafka-${tag}-${which}`, which));
      return giveUpAfterMs === undefined ? request : request.pipe(timeout(giveUpAfterMs));
    });
    await gates.started(`kafka-${tag}-traced`);
    await vi.waitFor(async () => expect(await plainRequestsInBroker()).toBe(inBroker + 1), { timeout: 5000, interval: 20 });
    return calls;
  }
  let port: number;
  let broker: KafkaBroker;
  let strategy: ReplyFailuresKept;
  let service: INestMicroservice | undefined;
  let traced: OtelClientKafka;
  let plain: ClientKafka;
  let clients: { traced: ClientProxy; plain: ClientProxy };
  let before: ReturnType<typeof processSnapshot>;

  beforeAll(async () => {
    before = processSnapshot();
    port = await freePort();
    broker = await startKafkaBroker({ port, topics });
    // kafkajs retries at two levels: each attempt of a send or a fetch (`producer` / `consumer`
    // retry) reconnects with the client's own retries (`client` retry: here about 1.2 s, by
    // default about 9 s).
    const client = {
      brokers: broker.brokers,
      connectionTimeout: 500,
      retry: { initialRetryTime: 100, maxRetryTime: 300, retries: 5 },
      logLevel: logLevel.NOTHING,
    };
    // Sends try twice (about 2.5 s): a shorter outage is ridden out, a longer one fails them.
    const producer = { retry: { initialRetryTime: 100, maxRetryTime: 200, retries: 1 } };
    // A consumer finding no broker at all crashes at once and restarts (kafkajs), and joins its
    // group again as a new member: the group waits for the old one's session to time out first,
    // 6 s here (default 30 s). The mock answers a fetch only when its wait is over (see
    // tools/kafka-broker).
    const consumer = { maxWaitTimeInMs: 50, heartbeatInterval: 500, sessionTimeout: 6000, rebalanceTimeout: 6000 };
    // A group without committed offsets starts at the beginning: at the latest offset, a consumer
    // misses what was produced between its joining and its first fetch.
    const subscribe = { fromBeginning: true };
    strategy = new ReplyFailuresKept({
      client: { ...client, clientId: 'faults' },
      consumer: { ...consumer, groupId: 'faults' },
      producer,
      subscribe,
      // Records of different partitions are handled side by side: a waiting handler blocks only its own.
      run: { partitionsConsumedConcurrently: 4 },
      otel: { eventConsume: 'parent' },
    });
    const clientOptions = (clientId: string) => ({ client: { ...client, clientId }, consumer: { ...consumer, groupId: clientId }, producer, subscribe });
    traced = new OtelClientKafka(clientOptions('traced'));
    plain = new ClientKafka(clientOptions('plain'));
    clients = { traced: traced as unknown as ClientProxy, plain: plain as unknown as ClientProxy };
    for (const kafka of [traced, plain]) {
      kafka.subscribeToResponseOf('faults.echo');
      kafka.subscribeToResponseOf('faults.wait');
    }
    // Consumer groups take seconds to form on the mock broker: all at once.
    [service] = await Promise.all([startService(strategy), traced.connect(), plain.connect()]);
    await Promise.all([firstValueFrom(traced.send('faults.echo', 'warm-up')), firstValueFrom(plain.send('faults.echo', 'warm-up'))]);
  }, 60_000);

  afterAll(async () => {
    gates.releaseAll();
    await Promise.allSettled([traced?.close(), plain?.close()]);
    await service?.close();
    await broker?.stop();
  });

  it('down for less than the retries: what was in flight and what was sent meanwhile succeeds, as with ClientKafka; spans OK, once', async () => {
    spanRecorder.reset();
    const across = await sendWaiting('short');

    let sentDuring!: { traced: Call; plain: Call };
    let emittedDuring!: { traced: Call; plain: Call };
    await underFault(
      async () => {
        broker.setDown(true);
        await sleep(100);
      },
      async () => {
        // The handlers reply, and the callers send and emit, while the broker refuses connections.
        gates.release('kafka-short-traced', 'kafka-short-plain');
        sentDuring = both(clients, (client) => client.send('faults.echo', { during: 'short' }));
        emittedDuring = both(clients, (client) => client.emit('faults.happened', { run: 'kafka-during-short' }));
        await sleep(300);
      },
      async () => broker.setDown(false),
    );

    expect(await across.traced.settled).toEqual({ value: 'released kafka-short-traced' });
    expect(await across.plain.settled).toEqual({ value: 'released kafka-short-plain' });
    expect(await sentDuring.traced.settled).toMatchObject({ value: { data: { during: 'short' } } });
    expect(await sentDuring.plain.settled).toMatchObject({ value: { data: { during: 'short' } } });
    expect(await emittedDuring.traced.settled).toHaveProperty('value');
    expect(await emittedDuring.plain.settled).toHaveProperty('value');
    for (const request of [across.traced, sentDuring.traced]) {
      await spanRecorder.waitForSpans(() => request.spans().length >= 2);
      const producer = request.producer();
      expectSpan(producer).toHaveStatus(SpanStatusCode.UNSET);
      expectSpan(getSpan(request.spans(), { kind: SpanKind.CONSUMER }), request.spans()).toHaveParent(producer).toHaveStatus(SpanStatusCode.UNSET);
    }
    expectSpan(emittedDuring.traced.producer()).toHaveStatus(SpanStatusCode.UNSET);
    expect(tracingProblems()).toEqual([]);
  }, 30_000);

  it('killed (SIGKILL) and replaced by an empty broker on its port: what was in flight fails as with ClientKafka, then the apps trace through the new one', async () => {
    spanRecorder.reset();
    const givingUp = await sendWaiting('kill', 1500);

    // Every consumer gives up on the dead broker (kafkajs: no broker available) and restarts: a
    // consumer still in its old group when the new broker comes up would be told the group does
    // not exist, and stop for good (kafkajs does not retry that). The service's consumer gets
    // there once its handler is done.
    const crashed = Promise.all([traced, plain, strategy].map((transport) => statusIs(transport, 'crashed')));
    await underFault(
      () => broker.stop('SIGKILL'),
      async () => {
        gates.release('kafka-kill-traced', 'kafka-kill-plain');
        const sentDuring = both(clients, (client) => client.send('faults.echo', { during: 'kill' }));
        expect(await expectSameFailure(sentDuring)).toMatch(/^KafkaJS/);
        expect(await givingUp.traced.settled).toEqual({ error: 'TimeoutError: Timeout has occurred' });
        expect(await givingUp.plain.settled).toEqual(await givingUp.traced.settled);
        expectSpan(givingUp.traced.producer()).toHaveStatus(SpanStatusCode.ERROR).toHaveAttributes({ 'error.type': SEND_CANCELLED });
        await crashed;
      },
      async () => {
        // No topics, offsets or groups: the consumers, restarted after finding no broker, join anew.
        broker = await startKafkaBroker({ port, topics });
      },
    );
    await expectConnectedTrace(clients.traced, 'kafka-new-broker');
    expect(tracingProblems()).toEqual([]);
  }, 60_000);

  it('down for longer: sends fail as with ClientKafka (ERROR), a caller that gives up fails (ERROR cancelled), the lost reply fails its CONSUMER span', async () => {
    spanRecorder.reset();
    const givingUp = await sendWaiting('long', 1500);

    await underFault(
      async () => {
        broker.setDown(true);
        await sleep(100);
      },
      async () => {
        gates.release('kafka-long-traced', 'kafka-long-plain');
        const sentDuring = both(clients, (client) => client.send('faults.echo', { during: 'long' }));
        const emittedDuring = both(clients, (client) => client.emit('faults.happened', { run: 'kafka-during-long' }));
        const sendError = await expectSameFailure(sentDuring);
        expect(sendError).toMatch(/^KafkaJS/);
        expect(await expectSameFailure(emittedDuring)).toBe(sendError);
        expect(await givingUp.traced.settled).toEqual({ error: 'TimeoutError: Timeout has occurred' });
        expect(await givingUp.plain.settled).toEqual(await givingUp.traced.settled);
        expectSpan(givingUp.traced.producer()).toHaveStatus(SpanStatusCode.ERROR).toHaveAttributes({ 'error.type': SEND_CANCELLED });
        // The handler's reply could not be published: its CONSUMER span failed, and Nest got the error.
        await spanRecorder.waitForSpans(() => findSpans(givingUp.traced.spans(), { kind: SpanKind.CONSUMER }).length >= 1, { timeoutMs: 10_000 });
        expectSpan(findSpans(givingUp.traced.spans(), { kind: SpanKind.CONSUMER })[0]).toHaveStatus(SpanStatusCode.ERROR);
        await vi.waitFor(() => expect(strategy.replyFailures.map((err) => (err as Error).name)).toContain('KafkaJSNonRetriableError'));
      },
      async () => broker.setDown(false),
    );
    expect(tracingProblems()).toEqual([]);
  }, 30_000);

  it('tracing resumes after the reconnect: request and event are connected traces through the broker', async () => {
    await expectConnectedTrace(clients.traced, 'kafka-after');
  }, 40_000);

  it('nothing leaks: every span ended, no pending request, no record in flight, no handle', async () => {
    await vi.waitFor(() => expect(spans.openNames()).toEqual([]), { timeout: 10_000 });
    expect(pendingOf(traced)).toEqual({ nest: 0, otel: 0 });
    expect(pendingOf(plain)).toEqual({ nest: 0, otel: 0 });
    expect(member<Map<unknown, unknown>>(strategy, 'inFlight').size).toBe(0);
    await Promise.all([traced.close(), plain.close()]);
    await service!.close();
    service = undefined;
    await broker.stop();
    await expectBackTo(before);
    expect(tracingProblems()).toEqual([]);
  }, 30_000);
});
