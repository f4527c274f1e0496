import { spawn } from 'node:child_process';
import type { ReceivedSpan } from './otlp-receiver.js';
import { ROOT } from './child-app.js';

export interface SampleRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Everything `scripts/sample.mjs --once` printed (stdout and stderr). */
  output: string;
}

/**
 * Runs `node scripts/sample.mjs --once` (the sample as `npm run sample -- --once` runs it, after
 * `npm run build`) with `env` on top of this process's environment, and resolves when it exits.
 * Kills it after `timeoutMs`.
 */
export function runSample(env: Record<string, string>, timeoutMs: number): Promise<SampleRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['scripts/sample.mjs', '--once'], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, output });
    });
  });
}

export const KIND = { INTERNAL: 1, SERVER: 2, CLIENT: 3, PRODUCER: 4, CONSUMER: 5 } as const;
export const STATUS_ERROR = 2;

export const serviceOf = (span: ReceivedSpan): unknown => span.resource['service.name'];

/** By start, then end: start times have whole milliseconds, so back-to-back spans may share one. */
function byStart(a: ReceivedSpan, b: ReceivedSpan): number {
  for (const key of ['startTimeUnixNano', 'endTimeUnixNano'] as const) {
    const [x, y] = [BigInt(a[key]), BigInt(b[key])];
    if (x !== y) {
      return x < y ? -1 : 1;
    }
  }
  return 0;
}

export interface SpanMatch {
  name?: string | RegExp;
  service?: string;
  kind?: number;
  /** `nestjs.pattern`: which request-reply pattern a messaging span carried. */
  pattern?: string;
  parent?: ReceivedSpan;
}

/** Queries over the spans of one trace, as an OTLP receiver decoded them. */
export class ReceivedTrace {
  readonly spans: readonly ReceivedSpan[];

  constructor(spans: readonly ReceivedSpan[]) {
    this.spans = [...spans].sort(byStart);
  }

  all(match: SpanMatch): ReceivedSpan[] {
    return this.spans.filter(
      (span) =>
        (match.name === undefined || (typeof match.name === 'string' ? span.name === match.name : match.name.test(span.name))) &&
        (match.service === undefined || serviceOf(span) === match.service) &&
        (match.kind === undefined || span.kind === match.kind) &&
        (match.pattern === undefined || span.attributes['nestjs.pattern'] === match.pattern) &&
        (match.parent === undefined || span.parentSpanId === match.parent.spanId),
    );
  }

  /** The one span that matches; throws with the trace's span names otherwise. */
  one(match: SpanMatch): ReceivedSpan {
    const found = this.all(match);
    if (found.length !== 1) {
      const described = JSON.stringify({ ...match, parent: match.parent?.name, name: match.name?.toString() });
      throw new Error(`Expected one span ${described}, found ${found.length}. Spans: ${this.spans.map((s) => `${serviceOf(s)}:${s.name}`).join(', ')}`);
    }
    return found[0]!;
  }

  children(parent: ReceivedSpan): ReceivedSpan[] {
    return this.all({ parent });
  }

  /** `span` and everything below it. */
  subtree(span: ReceivedSpan): ReceivedSpan[] {
    return [span, ...this.children(span).flatMap((child) => this.subtree(child))];
  }

  services(): Set<unknown> {
    return new Set(this.spans.map(serviceOf));
  }
}

/** `db.system.name` in current conventions, `db.system` in older instrumentations. */
export const dbSystem = (span: ReceivedSpan): unknown => span.attributes['db.system.name'] ?? span.attributes['db.system'];
