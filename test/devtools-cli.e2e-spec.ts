import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT } from './support/child-app.js';
import { plainRequest } from './support/http-request.js';

const CLI = join(ROOT, 'dist/esm/devtools/cli.js');

/** The `otel-nest-viewer` command as users start it: the built file, in its own process. */
describe('otel-nest-viewer (dist/esm/devtools/cli.js)', () => {
  let child: ChildProcess | undefined;

  afterEach(() => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
    }
    child = undefined;
  });

  function run(args: string[]): { child: ChildProcess; output: () => string } {
    if (!existsSync(CLI)) {
      throw new Error(`${CLI} is missing: run \`npm run build\` (npm test does).`);
    }
    const started = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    started.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    started.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child = started;
    return { child: started, output: () => output };
  }

  it('prints its URLs, receives spans, serves them, and stops on SIGTERM', async () => {
    const viewer = run(['--port', '0', '--max-traces', '10']);
    const endpoint = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no URL printed in 10 s:\n${viewer.output()}`)), 10_000);
      viewer.child.stdout!.on('data', () => {
        // The last line of the banner means the server listens and the whole banner is out.
        const match = /OTEL_EXPORTER_OTLP_ENDPOINT=(http:\/\/127\.0\.0\.1:\d+)[\s\S]*Ctrl-C to stop\./.exec(viewer.output());
        if (match) {
          clearTimeout(timer);
          resolve(match[1]!);
        }
      });
    });
    expect(viewer.output()).toContain(`otel-nest trace viewer: ${endpoint}/`);
    expect(viewer.output()).toContain('keeps the last 10 traces');

    const traceId = 'abcdef0123456789abcdef0123456789';
    const posted = await plainRequest(`${endpoint}/v1/traces`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        resourceSpans: [
          {
            resource: { attributes: [{ key: 'service.name', value: { stringValue: 'cli-spec' } }] },
            scopeSpans: [{ spans: [{ traceId, spanId: '0123456789abcdef', name: 'GET /cli', kind: 2, startTimeUnixNano: '1', endTimeUnixNano: '2' }] }],
          },
        ],
      }),
    });
    expect(posted.status).toBe(200);
    const traces = (await plainRequest(`${endpoint}/api/traces`)).json<Array<{ traceId: string; rootName: string; services: string[] }>>();
    expect(traces).toEqual([expect.objectContaining({ traceId, rootName: 'GET /cli', services: ['cli-spec'] })]);
    const page = await plainRequest(`${endpoint}/`);
    expect(page.status).toBe(200);
    expect(page.text).toContain('otel-nest trace viewer');

    const exited = once(viewer.child, 'exit');
    viewer.child.kill('SIGTERM');
    expect(await exited).toEqual([0, null]);
  });

  it('explains a bad option and exits with 2', async () => {
    const viewer = run(['--port', 'eighty']);
    const [code] = await once(viewer.child, 'exit');
    expect(code).toBe(2);
    expect(viewer.output()).toContain('--port needs a whole number, got "eighty".');
    expect(viewer.output()).toContain('Usage: otel-nest-viewer');
  });
});
