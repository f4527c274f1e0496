import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface ChildApp {
  readonly process: ChildProcess;
  readonly port: number;
  /** Everything the child printed so far (stdout and stderr). */
  output(): string;
  /** Sends `signal` and resolves with the exit code and signal once the child is gone. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts `node [...nodeArgs] <fixture>` in `cwd` (default: the project root) and waits for
 * "LISTENING <port>". The child loads otel-nest through its package name: from the root, that is
 * this repository's dist/ (built by `npm test`). `--import <package>` resolves from `cwd`.
 */
export async function startChildApp(
  fixture: string,
  env: Record<string, string>,
  nodeArgs: string[] = [],
  timeoutMs = 20_000,
  cwd = ROOT,
): Promise<ChildApp> {
  const child = spawn(process.execPath, [...nodeArgs, fixture], {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;

  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${fixture} did not start in ${timeoutMs} ms:\n${output}`)), timeoutMs);
    const onData = (): void => {
      const match = /LISTENING (\d+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${fixture} exited with ${code} before listening:\n${output}`));
    });
  });

  return {
    process: child,
    port,
    output: () => output,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(signal);
      }
      const [code, exitSignal] = await exited;
      return { code, signal: exitSignal };
    },
  };
}
