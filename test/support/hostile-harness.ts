import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { ReceivedSpan, OtlpReceiver } from './otlp-receiver.js';
import { describeInput, type HostileInput } from './hostile-inputs.js';
import {
  checkOutgoingHeaders,
  expectedParent,
  inboundBaggage,
  inboundTracestate,
  isSafeText,
  traceIdCandidates,
  type DeliveredHeaders,
  type OutgoingExpectation,
} from './hostile-oracle.js';

/**
 * Machinery of the hostile-input tests: the application under test in a child process (with IPC
 * and `--expose-gc`), the HTTP server its handlers `fetch`, and the run loop that sends inputs,
 * checks every one against the oracle and sums up.
 */

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const FIXTURE = fileURLToPath(new URL('../fixtures/hostile-app.mjs', import.meta.url));

export type HostileChannel = 'express' | 'fastify' | 'nats' | 'rmq' | 'kafka';

/** What a handler in the child reported (see test/fixtures/hostile-app.mjs). */
export interface HandledReport {
  id: number;
  kind: 'message' | 'event';
  traceId?: string;
  spanId?: string;
  recording: boolean;
  seen: Array<[string, unknown]>;
  fetchStatus?: number;
  fetchError?: string;
}

export interface ChildStats {
  started: number;
  ended: number;
  open: number;
  openNames: string[];
  diag: { error: number; warn: number; endedTwice: number; otelNest: number; samples: string[] };
  heapUsed: number;
  gc: boolean;
}

const MAX_OUTPUT = 200_000;

/** The application under test, in a child process. */
export class HostileApp {
  readonly handled = new Map<number, HandledReport>();
  /** Reports for an id that was already reported: a handler ran twice for one message. */
  readonly duplicates: number[] = [];
  exit?: { code: number | null; signal: NodeJS.Signals | null };
  private text = '';
  private seq = 0;
  private readonly pending = new Map<number, (reply: any) => void>();
  private readonly waiters = new Map<number, Array<(report: HandledReport) => void>>();
  private readonly exited: Promise<void>;

  private constructor(
    readonly channel: HostileChannel,
    readonly child: ChildProcess,
  ) {
    const append = (chunk: Buffer): void => {
      this.text += chunk.toString();
      if (this.text.length > MAX_OUTPUT) {
        this.text = this.text.slice(-MAX_OUTPUT);
      }
    };
    child.stdout!.on('data', append);
    child.stderr!.on('data', append);
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        for (const answer of this.pending.values()) {
          answer({ error: `the application exited (${code ?? signal})` });
        }
        resolve();
      }),
    );
    child.on('message', (message: any) => {
      if (message?.type === 'handled') {
        const report = message as HandledReport;
        if (this.handled.has(report.id)) {
          this.duplicates.push(report.id);
        }
        this.handled.set(report.id, report);
        for (const wake of this.waiters.get(report.id) ?? []) {
          wake(report);
        }
        this.waiters.delete(report.id);
      } else if (message?.type === 'reply') {
        this.pending.get(message.seq)?.(message);
        this.pending.delete(message.seq);
      }
    });
  }

  /** Starts the fixture for `channel` and waits until it listens. */
  static async start(channel: HostileChannel, env: Record<string, string>, timeoutMs = 30_000): Promise<HostileApp> {
    const child = spawn(process.execPath, ['--expose-gc', FIXTURE], {
      cwd: ROOT,
      env: { ...process.env, ...env, HOSTILE_CHANNEL: channel },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      serialization: 'advanced',
    });
    const app = new HostileApp(channel, child);
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the ${channel} application did not start in ${timeoutMs} ms:\n${app.output()}`)), timeoutMs);
      child.on('message', (message: any) => {
        if (message?.type === 'ready') {
          clearTimeout(timer);
          resolve(Number(message.port));
        }
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`the ${channel} application exited (${code ?? signal}) before it was ready:\n${app.output()}`));
      });
    });
    app.port = port;
    return app;
  }

  port = 0;

  get alive(): boolean {
    return this.exit === undefined;
  }

  output(): string {
    return this.text;
  }

  command<T = any>(cmd: 'stats' | 'flush' | 'stop', timeoutMs = 30_000): Promise<T> {
    if (!this.alive) {
      return Promise.reject(new Error(`the application is gone (${JSON.stringify(this.exit)}):\n${this.output().slice(-4000)}`));
    }
    const seq = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(seq);
        reject(new Error(`no answer to ${cmd} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(seq, (reply) => {
        clearTimeout(timer);
        if (reply.error) {
          reject(new Error(`${cmd}: ${reply.error}\n${this.output().slice(-4000)}`));
        } else {
          resolve(reply as T);
        }
      });
      this.child.send({ type: 'cmd', seq, cmd });
    });
  }

  /** The report of input `id`, once its handler ran; undefined after `timeoutMs` or when the application is gone. */
  waitHandled(id: number, timeoutMs: number): Promise<HandledReport | undefined> {
    const known = this.handled.get(id);
    if (known || !this.alive) {
      return Promise.resolve(known);
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(this.handled.get(id)), timeoutMs);
      const wake = (report: HandledReport): void => {
        clearTimeout(timer);
        resolve(report);
      };
      this.waiters.set(id, [...(this.waiters.get(id) ?? []), wake]);
      void this.exited.then(() => wake(this.handled.get(id)!));
    });
  }

  /** Stops gracefully (the application flushes its spans); kills it if it does not exit. */
  async stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.alive) {
      await this.command('stop').catch(() => undefined);
      const killer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
      await this.exited;
      clearTimeout(killer);
    }
    return this.exit!;
  }

  /** Kills the child without waiting for anything (cleanup after a failure). */
  kill(): void {
    if (this.alive) {
      this.child.kill('SIGKILL');
    }
  }
}

/** A request the handlers' `fetch` made, as the recording server received it. */
export interface RecordedFetch {
  rawHeaders: Array<[string, string]>;
}

/** The HTTP server the handlers call: records each request's raw headers by input id. */
export class FetchRecorder {
  readonly requests = new Map<number, RecordedFetch>();
  readonly duplicates: number[] = [];

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(): Promise<FetchRecorder> {
    let recorder: FetchRecorder | undefined;
    const server = createServer((req, res) => {
      const id = Number(/^\/fetch\/(\d+)$/.exec(req.url ?? '')?.[1]);
      const rawHeaders: Array<[string, string]> = [];
      for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
        rawHeaders.push([req.rawHeaders[i]!, req.rawHeaders[i + 1]!]);
      }
      if (Number.isInteger(id) && recorder) {
        if (recorder.requests.has(id)) {
          recorder.duplicates.push(id);
        }
        recorder.requests.set(id, { rawHeaders });
      }
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"ok":true}');
      });
    });
    // Lenient about nothing: a malformed header from the client is a 400 here, and a missing record.
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    recorder = new FetchRecorder(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    return recorder;
  }

  async wait(id: number, timeoutMs: number): Promise<RecordedFetch | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (!this.requests.has(id) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    return this.requests.get(id);
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** What came back for one input. */
export interface SendResult {
  /** The framework refused the input before any handler could run (HTTP parser, NATS driver): why. */
  refused?: string;
  /** A refused input whose first part may still have reached a handler (an HTTP request cut by a CR/LF): checked if it did. */
  mayStillRun?: boolean;
  /** The reply (request-reply inputs, HTTP responses): its body, and its headers as they arrived (messaging). */
  reply?: { headers?: Array<[string, unknown]>; body: unknown };
  /** HTTP only: the response header lines, checked for safe bytes. */
  responseLines?: string[];
  /** The headers as the application received them, when the test knows them better than the handler's view. */
  delivered?: DeliveredHeaders;
  /** Sending failed on the test's side. */
  error?: string;
}

export interface ChannelDriver {
  /** Sends one input; resolves when its reply (or, for an event, its publication) is done. */
  send(input: HostileInput): Promise<SendResult>;
  /** Reply header names a channel's framework adds (besides trace context), with values that may be binary. */
  replyHeaderAllowList?: ReadonlySet<string>;
  binaryReplyHeaders?: ReadonlySet<string>;
  /** Whether a handler makes a fetch for this input (the default: always). */
  fetches?(input: HostileInput): boolean;
}

export type Outcome = 'continued' | 'continued-unsampled' | 'fresh-root' | 'linked' | 'refused';

export interface HostileSummary {
  channel: string;
  seed: number;
  inputs: number;
  requests: number;
  events: number;
  outcomes: Record<Outcome, number>;
  /** Inputs whose outgoing fetch carried a tracestate / a baggage, and whose reply did. */
  forwarded: { fetchTracestate: number; fetchBaggage: number; replyTracestate: number; replyBaggage: number };
  spansStarted: number;
  spansEnded: number;
  spansExported: number;
  spansOpenAtEnd: number;
  endedTwiceWarnings: number;
  otelNestDiagLines: number;
  alive: boolean;
  heapStartMB: number;
  heapEndMB: number;
  heapDeltaMB: number;
  heapToleranceMB: number;
  durationMs: number;
  violations: string[];
  violationCount: number;
}

export interface RunOptions {
  channel: string;
  seed: number;
  app: HostileApp;
  driver: ChannelDriver;
  receiver: OtlpReceiver;
  recorder: FetchRecorder;
  inputs: HostileInput[];
  /** SERVER (2) for HTTP, CONSUMER (5) for messaging. */
  entryKind: number;
  concurrency?: number;
  /** Inputs per chunk: spans are flushed, checked and forgotten after each. */
  chunkSize?: number;
  /** Allowed growth of the heap (after GC) from the end of the first chunk to the end. */
  heapToleranceMB?: number;
  /** How long a handler may take to report, after its input was sent. */
  handledTimeoutMs?: number;
  /** Called after every chunk (progress output of `npm run fuzz`). */
  onProgress?: (done: number, summary: HostileSummary) => void;
}

const KIND_NAMES: Record<number, string> = { 1: 'INTERNAL', 2: 'SERVER', 3: 'CLIENT', 4: 'PRODUCER', 5: 'CONSUMER' };
const MAX_VIOLATIONS = 50;
const mb = (bytes: number): number => Math.round((bytes / 1024 / 1024) * 100) / 100;

/** Runs `tasks` with at most `limit` at a time. */
async function pool<T>(items: readonly T[], limit: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        await task(items[next++]!);
      }
    }),
  );
}

/**
 * Sends every input, checks each against the oracle, and returns the summary. Violations are
 * collected, not thrown: the caller asserts there are none (the summary says which inputs).
 */
export async function runHostile(options: RunOptions): Promise<HostileSummary> {
  const { app, driver, receiver, recorder, inputs } = options;
  const concurrency = options.concurrency ?? 16;
  // The heap is first measured after the first chunk (warm): small chunks leave most of a short run to compare.
  const chunkSize = options.chunkSize ?? Math.max(1, Math.min(500, Math.ceil(inputs.length / 4)));
  const handledTimeoutMs = options.handledTimeoutMs ?? 15_000;
  const started = Date.now();
  const summary: HostileSummary = {
    channel: options.channel,
    seed: options.seed,
    inputs: inputs.length,
    requests: inputs.filter((input) => input.kind === 'message').length,
    events: inputs.filter((input) => input.kind === 'event').length,
    outcomes: { continued: 0, 'continued-unsampled': 0, 'fresh-root': 0, linked: 0, refused: 0 },
    forwarded: { fetchTracestate: 0, fetchBaggage: 0, replyTracestate: 0, replyBaggage: 0 },
    spansStarted: 0,
    spansEnded: 0,
    spansExported: 0,
    spansOpenAtEnd: 0,
    endedTwiceWarnings: 0,
    otelNestDiagLines: 0,
    alive: true,
    heapStartMB: 0,
    heapEndMB: 0,
    heapDeltaMB: 0,
    // Measured drift without a leak: 0.3 to 0.7 MB at 300 inputs, 1.3 to 2.8 MB at 20,000, 1.6 MB at
    // 60,000 (it levels off). A leak of 30 KB a message shows at 300 inputs, of 300 bytes at 20,000.
    heapToleranceMB: options.heapToleranceMB ?? 6,
    durationMs: 0,
    violations: [],
    violationCount: 0,
  };
  const violate = (message: string): void => {
    summary.violationCount++;
    if (summary.violations.length < MAX_VIOLATIONS) {
      summary.violations.push(message);
    }
  };
  /** Trace ids of fresh roots, by input: no two inputs may share one. */
  const freshTraceIds = new Map<string, number>();
  let previous: ChildStats | undefined;
  let heapStart: number | undefined;

  for (let offset = 0; offset < inputs.length && app.alive; offset += chunkSize) {
    const chunk = inputs.slice(offset, offset + chunkSize);
    const results = new Map<number, SendResult>();
    await pool(chunk, concurrency, async (input) => {
      let result: SendResult;
      try {
        result = await driver.send(input);
      } catch (error) {
        result = { error: String(error instanceof Error ? error.message : error) };
      }
      results.set(input.id, result);
      if (!result.refused && !result.error) {
        await app.waitHandled(input.id, handledTimeoutMs);
      }
    });
    // Refused inputs must stay unhandled: give a wrongly delivered one time to show up.
    if ([...results.values()].some((result) => result.refused)) {
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    if (!app.alive) {
      break;
    }
    // Every span of the chunk has ended once its reply is out; a SERVER span ends on the response's 'close'.
    let stats = await app.command<ChildStats>('stats');
    for (let waited = 0; stats.open > 0 && waited < 5_000; waited += 100) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      stats = await app.command<ChildStats>('stats');
    }
    await app.command('flush');
    const spans = new Map<string, ReceivedSpan>();
    for (const span of receiver.spans) {
      spans.set(span.spanId, span);
    }
    const exported = receiver.spans.length;
    receiver.reset();

    const startedInChunk = stats.started - (previous?.started ?? 0);
    const endedInChunk = stats.ended - (previous?.ended ?? 0);
    summary.spansStarted = stats.started;
    summary.spansEnded = stats.ended;
    summary.spansExported += exported;
    summary.spansOpenAtEnd = stats.open;
    summary.endedTwiceWarnings = stats.diag.endedTwice;
    summary.otelNestDiagLines = stats.diag.otelNest;
    if (stats.open > 0) {
      violate(`chunk at ${offset}: ${stats.open} span(s) never ended: ${stats.openNames.join(', ')}`);
    }
    if (stats.diag.endedTwice > (previous?.diag.endedTwice ?? 0)) {
      violate(`chunk at ${offset}: the SDK warned about spans ended twice: ${stats.diag.samples.join(' | ')}`);
    }
    if (exported !== endedInChunk) {
      violate(`chunk at ${offset}: ${endedInChunk} span(s) ended but ${exported} exported`);
    }
    if (startedInChunk !== endedInChunk && stats.open === 0 && (previous?.open ?? 0) === 0) {
      violate(`chunk at ${offset}: ${startedInChunk} span(s) started, ${endedInChunk} ended`);
    }

    for (const input of chunk) {
      const result = results.get(input.id)!;
      const problems: string[] = [];
      const fetched = recorder.requests.get(input.id);
      const outcome = checkInput(options, driver, input, result, app.handled.get(input.id), fetched, spans, problems);
      const has = (headers: ReadonlyArray<readonly [string, unknown]> | undefined, field: string): boolean =>
        headers?.some(([name]) => name.toLowerCase() === field) ?? false;
      summary.forwarded.fetchTracestate += Number(has(fetched?.rawHeaders, 'tracestate'));
      summary.forwarded.fetchBaggage += Number(has(fetched?.rawHeaders, 'baggage'));
      summary.forwarded.replyTracestate += Number(has(result.reply?.headers, 'tracestate'));
      summary.forwarded.replyBaggage += Number(has(result.reply?.headers, 'baggage'));
      if (outcome) {
        summary.outcomes[outcome]++;
        if (outcome === 'fresh-root' || outcome === 'linked') {
          const traceId = app.handled.get(input.id)?.traceId;
          const other = traceId === undefined ? undefined : freshTraceIds.get(traceId);
          if (other !== undefined) {
            problems.push(`fresh trace ${traceId} is also the trace of input #${other}: context leaked between messages`);
          } else if (traceId !== undefined) {
            freshTraceIds.set(traceId, input.id);
          }
        }
      }
      if (app.duplicates.includes(input.id) || recorder.duplicates.includes(input.id)) {
        problems.push('the handler ran (or fetched) more than once');
      }
      for (const problem of problems) {
        violate(`${options.channel} ${describeInput(input)}: ${problem}`);
      }
      // Forget what this input left, so that long runs keep a flat memory in the test process too.
      app.handled.delete(input.id);
      recorder.requests.delete(input.id);
    }

    if (heapStart === undefined) {
      heapStart = stats.heapUsed;
    }
    summary.heapStartMB = mb(heapStart);
    summary.heapEndMB = mb(stats.heapUsed);
    summary.heapDeltaMB = mb(stats.heapUsed - heapStart);
    previous = stats;
    summary.durationMs = Date.now() - started;
    options.onProgress?.(Math.min(inputs.length, offset + chunk.length), summary);
  }

  summary.alive = app.alive;
  if (!app.alive) {
    violate(`the application died (${JSON.stringify(app.exit)}); its last output:\n${app.output().slice(-6000)}`);
  }
  if (summary.heapDeltaMB > summary.heapToleranceMB) {
    violate(`heap after GC grew by ${summary.heapDeltaMB} MB over the run (${summary.heapStartMB} -> ${summary.heapEndMB} MB; tolerance ${summary.heapToleranceMB} MB)`);
  }
  summary.durationMs = Date.now() - started;
  return summary;
}

/** Checks one input; pushes problems and returns its outcome (undefined when it could not be classified). */
function checkInput(
  options: RunOptions,
  driver: ChannelDriver,
  input: HostileInput,
  result: SendResult,
  handled: HandledReport | undefined,
  fetched: RecordedFetch | undefined,
  spans: ReadonlyMap<string, ReceivedSpan>,
  problems: string[],
): Outcome | undefined {
  if (result.error) {
    problems.push(`sending failed: ${result.error}`);
    return undefined;
  }
  for (const line of result.responseLines ?? []) {
    if (!isSafeText(line)) {
      problems.push(`response header line has a control or non-ASCII character: ${JSON.stringify(line.slice(0, 200))}`);
    }
  }
  if (result.refused && !(handled && result.mayStillRun)) {
    if (handled) {
      problems.push(`refused by the framework (${result.refused}) yet the handler ran`);
    }
    return 'refused';
  }
  if (!handled) {
    problems.push(`the handler did not run within ${options.handledTimeoutMs ?? 15_000} ms`);
    return undefined;
  }
  const expectsFetch = driver.fetches?.(input) ?? true;
  if (expectsFetch && (handled.fetchError !== undefined || handled.fetchStatus !== 200)) {
    problems.push(`the handler's fetch failed: ${handled.fetchError ?? `status ${handled.fetchStatus}`}`);
  }
  if (handled.kind !== input.kind) {
    problems.push(`handled as ${handled.kind}, sent as ${input.kind}`);
  }
  const delivered = result.delivered ?? handled.seen;
  const parent = expectedParent(delivered);
  const candidates = traceIdCandidates(delivered);
  const isEvent = input.kind === 'event';
  const traceId = handled.traceId;
  const entry = handled.spanId === undefined ? undefined : spans.get(handled.spanId);
  let outcome: Outcome;

  if (!traceId || !handled.spanId) {
    problems.push('the handler ran without an active span');
    return undefined;
  }
  if (!isEvent && parent) {
    outcome = parent.sampled ? 'continued' : 'continued-unsampled';
    if (traceId !== parent.traceId) {
      problems.push(`valid traceparent ${parent.traceId}-${parent.spanId} not continued: handler trace ${traceId}`);
    }
    if (handled.recording !== parent.sampled) {
      problems.push(`parent sampled=${parent.sampled} but the span recording=${handled.recording}`);
    }
    if (parent.sampled && entry && entry.parentSpanId !== parent.spanId) {
      problems.push(`entry span's parent is ${entry.parentSpanId ?? 'none'}, expected ${parent.spanId}`);
    }
  } else {
    outcome = isEvent && parent ? 'linked' : 'fresh-root';
    if (candidates.has(traceId)) {
      problems.push(`fresh root expected (no valid ${isEvent ? 'parent for a link-policy event' : 'traceparent'}), but trace ${traceId} came from the input`);
    }
    if (!handled.recording) {
      problems.push('a fresh root span is not recording (the sampler is always on for roots)');
    }
    if (entry?.parentSpanId) {
      problems.push(`fresh root expected, entry span has parent ${entry.parentSpanId}`);
    }
  }
  if (handled.recording) {
    if (!entry) {
      problems.push(`the entry span ${handled.spanId} was not exported`);
    } else {
      if (entry.kind !== options.entryKind) {
        problems.push(`entry span is ${KIND_NAMES[entry.kind] ?? entry.kind}, expected ${KIND_NAMES[options.entryKind]}`);
      }
      if (entry.traceId !== traceId) {
        problems.push(`entry span trace ${entry.traceId} differs from the handler's ${traceId}`);
      }
      const links = entry.links.map((link) => `${link.traceId}-${link.spanId}`);
      const expectedLinks = isEvent && parent ? [`${parent.traceId}-${parent.spanId}`] : [];
      if (links.join() !== expectedLinks.join()) {
        problems.push(`entry span links ${JSON.stringify(links)}, expected ${JSON.stringify(expectedLinks)}`);
      }
    }
  } else if (entry) {
    problems.push('an unsampled span was exported');
  }

  const tracestate = !isEvent && parent ? inboundTracestate(delivered) : undefined;
  const baggage = inboundBaggage(delivered);
  const random = outcome === 'fresh-root' || outcome === 'linked' ? true : parent!.random;
  const base: Omit<OutgoingExpectation, 'spanId'> = { traceId, sampled: handled.recording, random, tracestate, baggage };

  if (expectsFetch) {
    if (!fetched) {
      problems.push("the handler's fetch did not reach the recording server");
    } else {
      const clientSpanId = fetched.rawHeaders.find(([name]) => name.toLowerCase() === 'traceparent')?.[1].split('-')[2];
      problems.push(...checkOutgoingHeaders('outgoing fetch', fetched.rawHeaders, base));
      if (handled.recording) {
        const client = clientSpanId === undefined ? undefined : spans.get(clientSpanId);
        if (!client) {
          problems.push(`the fetch's CLIENT span ${clientSpanId} was not exported`);
        } else if (client.kind !== 3 || client.parentSpanId !== handled.spanId || client.traceId !== traceId) {
          problems.push(
            `the fetch span is ${KIND_NAMES[client.kind]} with parent ${client.parentSpanId} in ${client.traceId}, expected CLIENT under ${handled.spanId} in ${traceId}`,
          );
        }
      }
    }
  }

  if (result.reply) {
    const body = result.reply.body as { id?: unknown; traceId?: unknown; spanId?: unknown } | undefined;
    if (body?.id !== input.id || body?.traceId !== traceId || body?.spanId !== handled.spanId) {
      problems.push(`the reply ${JSON.stringify(body)} does not match the handler (${traceId}/${handled.spanId})`);
    }
    const headers = result.reply.headers;
    if (headers) {
      const allowed = driver.replyHeaderAllowList ?? new Set<string>();
      const extra = headers.filter(([name]) => !['traceparent', 'tracestate', 'baggage'].includes(name.toLowerCase()) && !allowed.has(name));
      if (extra.length > 0) {
        problems.push(`the reply carries headers that are not trace context: ${JSON.stringify(extra.map(([name]) => name))}`);
      }
      problems.push(...checkOutgoingHeaders('reply', headers, { ...base, spanId: handled.spanId }, { ignoreValueSafetyOf: driver.binaryReplyHeaders }));
    }
  } else if (input.kind === 'message' && !result.refused) {
    problems.push('no reply to a request');
  }
  return outcome;
}

/** A printable summary line set (npm run fuzz, test failures). */
export function formatSummary(summary: HostileSummary): string {
  const o = summary.outcomes;
  return [
    `${summary.channel}: ${summary.inputs} inputs (${summary.requests} requests, ${summary.events} events), seed ${summary.seed}, ${(summary.durationMs / 1000).toFixed(1)} s`,
    `  continued ${o.continued} (+${o['continued-unsampled']} unsampled), fresh roots ${o['fresh-root']}, linked events ${o.linked}, refused by the framework ${o.refused}`,
    `  forwarded: tracestate on ${summary.forwarded.fetchTracestate} fetches / ${summary.forwarded.replyTracestate} replies, baggage on ${summary.forwarded.fetchBaggage} fetches / ${summary.forwarded.replyBaggage} replies`,
    `  spans started ${summary.spansStarted}, ended ${summary.spansEnded}, exported ${summary.spansExported}, open at end ${summary.spansOpenAtEnd}, ended-twice warnings ${summary.endedTwiceWarnings}`,
    `  process alive: ${summary.alive}; heap after GC ${summary.heapStartMB} -> ${summary.heapEndMB} MB (delta ${summary.heapDeltaMB} MB, tolerance ${summary.heapToleranceMB} MB); otel-nest diag lines ${summary.otelNestDiagLines}`,
    `  violations: ${summary.violationCount}${summary.violations.length > 0 ? `\n    ${summary.violations.join('\n    ')}` : ''}`,
  ].join('\n');
}
