import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SCRIPT = fileURLToPath(new URL('../../scripts/kafka-broker.mjs', import.meta.url));
const BINARY = fileURLToPath(new URL('../../.build/kafka-broker', import.meta.url));

export interface KafkaBroker {
  /** Bootstrap addresses for kafkajs / Nest (`client: { brokers }`). */
  readonly brokers: string[];
  /** Everything the broker printed on stderr so far. */
  output(): string;
  /**
   * Takes the broker down (SIGUSR1: its connections are closed, new ones refused) or brings it
   * back up (SIGUSR2) with its topics, offsets and groups, as a broker restart looks to its
   * clients. Takes effect a moment after the call.
   */
  setDown(down: boolean): void;
  /** Stops the broker (SIGTERM, or `signal`, e.g. SIGKILL for a crash) and waits for it to exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export interface KafkaBrokerOptions {
  /** Topics to create up front, as `name` or `name:partitions`. Others are created on first use. */
  topics?: string[];
  /** Give up waiting for the bootstrap address after this many ms. Default 10 000. */
  timeoutMs?: number;
  /**
   * Listen on this port rather than a random one: a broker started on the port of one that died
   * is the same address to the clients (an empty broker: topics and groups are created again).
   */
  port?: number;
}

/**
 * Starts a real Kafka-protocol broker (librdkafka's mock cluster, tools/kafka-broker/mock-broker.c)
 * on a random port, building it first if needed. The broker exits when this process goes away
 * (it watches its stdin), so a crashed test run leaves nothing behind.
 *
 * Consumers against it should set `maxWaitTimeInMs: 50`: the mock answers a fetch only when its
 * wait is over, even when data arrives earlier.
 */
export async function startKafkaBroker(options: KafkaBrokerOptions = {}): Promise<KafkaBroker> {
  const built = spawnSync(process.execPath, [SCRIPT, 'build'], { cwd: ROOT, encoding: 'utf8' });
  if (built.status !== 0) {
    throw new Error(`Could not build the Kafka test broker:\n${built.stderr || built.stdout}`);
  }
  const portArgs = options.port === undefined ? [] : [`--port=${options.port}`];
  const child = spawn(BINARY, ['--watch-stdin', ...portArgs, ...(options.topics ?? [])], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = once(child, 'exit');

  const timeoutMs = options.timeoutMs ?? 10_000;
  const address = await new Promise<string>((resolve, reject) => {
    let stdout = '';
    const timer = setTimeout(() => reject(new Error(`The Kafka test broker did not start in ${timeoutMs} ms:\n${stderr}`)), timeoutMs);
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const newline = stdout.indexOf('\n');
      if (newline !== -1) {
        clearTimeout(timer);
        resolve(stdout.slice(0, newline).trim());
      }
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`The Kafka test broker exited (${code ?? signal}) before it started:\n${stderr}`));
    });
  });

  let stopping: Promise<void> | undefined;
  return {
    brokers: address.split(','),
    output: () => stderr,
    setDown: (down) => {
      child.kill(down ? 'SIGUSR1' : 'SIGUSR2');
    },
    stop: (signal = 'SIGTERM') =>
      (stopping ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) {
          return;
        }
        child.kill(signal);
        const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(killer);
      })()),
  };
}
