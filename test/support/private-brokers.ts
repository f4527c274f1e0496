import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Broker processes of a test's own, on free ports, that the test may kill and restart: the
 * machine's shared NATS (4222) and RabbitMQ (5672) serve other test files at the same time and
 * are never touched.
 *
 * Every process is also known to a reaper: a detached shell that waits for the test process to
 * go away and then kills whatever is still running and removes the folders. So a test run that
 * is killed (no afterAll) leaves no broker behind either.
 */

/** A free TCP port on 127.0.0.1 (free when asked; brokers started right after take it). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

/** Whether `port` accepts connections; resolves once the probe's socket is closed (no handle left). */
export function isListening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    let listening = false;
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      listening = true;
      socket.destroy();
    });
    socket.once('error', () => undefined);
    socket.once('close', () => resolve(listening));
  });
}

/** Waits until `port` accepts connections (`up`) or refuses them (`!up`). */
export async function waitForPort(port: number, up: boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await isListening(port)) !== up) {
    if (Date.now() > deadline) {
      throw new Error(`${what}: port ${port} still ${up ? 'closed' : 'open'} after ${timeoutMs} ms.`);
    }
    await sleep(50);
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Kills the processes of pid files and removes folders once this process is gone (see above). */
class Reaper {
  /** Its own folder, with the list of pid files and folders; made when the first process starts. */
  private folder?: string;

  private get list(): string {
    return join(this.folder!, 'pidfiles');
  }

  /** `pidFile` holds a pid whenever a process of ours runs; `folder` is removed at the end. */
  watch(pidFile: string, folder?: string): void {
    const first = this.folder === undefined;
    this.folder ??= mkdtempSync(join(tmpdir(), 'otel-nest-reaper-'));
    writeFileSync(this.list, `${pidFile}${folder ? `\t${folder}` : ''}\n`, { flag: 'a' });
    if (!first) {
      return;
    }
    const script = [
      `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done`,
      `while IFS="$(printf '\\t')" read -r pidfile folder; do`,
      '  pid=$(cat "$pidfile" 2>/dev/null | tr -dc 0-9)',
      '  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null',
      '  [ -n "$folder" ] && rm -rf "$folder"',
      `done < "${this.list}"`,
      `rm -rf "${this.folder}"`,
    ].join('\n');
    spawn('/bin/sh', ['-c', script], { detached: true, stdio: 'ignore' }).unref();
  }

  /** Called at a clean end: the reaper finds nothing to do. */
  forget(): void {
    if (this.folder !== undefined) {
      writeFileSync(this.list, '');
    }
  }
}

const reaper = new Reaper();

export interface PrivateNats {
  readonly port: number;
  readonly url: string;
  /** Starts the server on the port (again); resolves when it accepts connections. */
  start(): Promise<void>;
  /** Sends `signal` (default SIGKILL: a crash) and waits until the port is closed. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the server unless it runs (after a test that failed half-way through a fault). */
  ensureUp(): Promise<void>;
  /** Kills the server if it runs and removes its folder. */
  dispose(): Promise<void>;
}

/**
 * A `nats-server` of this test on a free port (JetStream off: the fault tests use core NATS, as
 * Nest's transport does). A child process of the test.
 */
export async function startPrivateNats(): Promise<PrivateNats> {
  const port = await freePort();
  const folder = mkdtempSync(join(tmpdir(), 'otel-nest-nats-'));
  const pidFile = join(folder, 'pid');
  reaper.watch(pidFile, folder);
  const binary = existsSync('/usr/sbin/nats-server') ? '/usr/sbin/nats-server' : 'nats-server';
  let child: ChildProcess | undefined;
  const nats: PrivateNats = {
    port,
    url: `nats://127.0.0.1:${port}`,
    async start() {
      child = spawn(binary, ['-a', '127.0.0.1', '-p', String(port), '-P', pidFile], { stdio: 'ignore' });
      child.once('error', () => undefined);
      await waitForPort(port, true, 10_000, 'nats-server');
    },
    async kill(signal = 'SIGKILL') {
      const running = child;
      child = undefined;
      if (running && running.exitCode === null && running.signalCode === null) {
        const exited = once(running, 'exit');
        running.kill(signal);
        await exited;
      }
      // A stale pid must not lead the reaper to another process.
      rmSync(pidFile, { force: true });
      await waitForPort(port, false, 10_000, 'nats-server');
    },
    async ensureUp() {
      if (!(await isListening(port))) {
        await nats.start();
      }
    },
    async dispose() {
      await nats.kill('SIGKILL').catch(() => undefined);
      rmSync(folder, { recursive: true, force: true });
    },
  };
  await nats.start();
  return nats;
}

export interface PrivateRabbit {
  readonly port: number;
  readonly url: string;
  readonly node: string;
  /** Starts the node (again); resolves when its AMQP listener accepts connections. */
  start(): Promise<void>;
  /** `rabbitmqctl stop`: the broker closes every connection (320 CONNECTION_FORCED) and halts. */
  stop(): Promise<void>;
  /** SIGKILL to the node's VM: a crash, connections drop without a word. */
  kill(): Promise<void>;
  /** Starts the node unless it runs (after a test that failed half-way through a fault). */
  ensureUp(): Promise<void>;
  /** Stops the node if it runs and removes its folder. */
  dispose(): Promise<void>;
}

/**
 * The RabbitMQ scripts that run as the current user: Debian's, under /usr/lib/rabbitmq/bin (its
 * /usr/sbin wrappers would switch to the `rabbitmq` user, who cannot write our folder), else the
 * ones on PATH (Homebrew, generic-unix).
 */
function rabbitScript(name: string): string {
  const debian = join('/usr/lib/rabbitmq/bin', name);
  return existsSync(debian) ? debian : name;
}

/**
 * A RabbitMQ node of this test: its own node name, AMQP and distribution ports, Mnesia, logs,
 * config (no plugins) and Erlang cookie, all in a temporary folder; registered with the machine's
 * epmd like any node. Runs as the current user (root in CI, see rabbitScript). Starting takes a
 * few seconds: once per test file.
 */
export async function startPrivateRabbit(): Promise<PrivateRabbit> {
  const [port, distPort] = [await freePort(), await freePort()];
  const folder = mkdtempSync(join(tmpdir(), 'otel-nest-rabbit-'));
  const node = `otelfault-${process.pid}-${port}@localhost`;
  const pidFile = join(folder, 'pid');
  reaper.watch(pidFile, folder);
  writeFileSync(join(folder, 'rabbitmq.conf'), `listeners.tcp.local = 127.0.0.1:${port}\n`);
  writeFileSync(join(folder, 'enabled_plugins'), '[].\n');
  // Empty: /etc/rabbitmq/rabbitmq-env.conf names the machine's node.
  writeFileSync(join(folder, 'rabbitmq-env.conf'), '');
  const cookie = join(folder, '.erlang.cookie');
  writeFileSync(cookie, randomBytes(20).toString('hex').toUpperCase());
  chmodSync(cookie, 0o400);
  const env = {
    ...process.env,
    // The CLI and the node read the cookie from $HOME.
    HOME: folder,
    RABBITMQ_NODENAME: node,
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_CONFIG_FILE: join(folder, 'rabbitmq.conf'),
    RABBITMQ_CONF_ENV_FILE: join(folder, 'rabbitmq-env.conf'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(folder, 'enabled_plugins'),
    RABBITMQ_MNESIA_BASE: join(folder, 'mnesia'),
    RABBITMQ_LOG_BASE: join(folder, 'log'),
    RABBITMQ_PLUGINS_EXPAND_DIR: join(folder, 'plugins-expand'),
    RABBITMQ_PID_FILE: pidFile,
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
    ERL_EPMD_ADDRESS: '127.0.0.1',
  };
  const ctl = (...args: string[]) =>
    spawnSync(rabbitScript('rabbitmqctl'), ['-n', node, ...args], { env, encoding: 'utf8', timeout: 30_000, cwd: folder });
  const pid = (): number | undefined => {
    const text = existsSync(pidFile) ? readFileSync(pidFile, 'utf8').trim() : '';
    return /^\d+$/.test(text) ? Number(text) : undefined;
  };
  const waitForExit = async (what: string): Promise<void> => {
    const running = pid();
    const deadline = Date.now() + 20_000;
    while (running !== undefined && isRunning(running)) {
      if (Date.now() > deadline) {
        throw new Error(`${what}: RabbitMQ node ${node} (pid ${running}) still runs after 20 s.`);
      }
      await sleep(50);
    }
    // A stale pid must not lead the reaper to another process.
    rmSync(pidFile, { force: true });
    await waitForPort(port, false, 10_000, 'RabbitMQ');
  };
  const rabbit: PrivateRabbit = {
    port,
    url: `amqp://guest:guest@127.0.0.1:${port}`,
    node,
    async start() {
      const started = spawnSync(rabbitScript('rabbitmq-server'), ['-detached'], {
        env,
        encoding: 'utf8',
        cwd: folder,
        timeout: 30_000,
      });
      if (started.status !== 0) {
        throw new Error(`rabbitmq-server -detached failed (${started.status}):\n${started.stderr}${started.stdout}`);
      }
      try {
        await waitForPort(port, true, 60_000, 'RabbitMQ');
      } catch (err) {
        const log = join(folder, 'log', `${node}.log`);
        throw new Error(`${(err as Error).message}\n${existsSync(log) ? readFileSync(log, 'utf8').slice(-4000) : ''}`);
      }
    },
    async stop() {
      const stopped = ctl('stop');
      if (stopped.status !== 0) {
        throw new Error(`rabbitmqctl -n ${node} stop failed (${stopped.status}):\n${stopped.stderr}${stopped.stdout}`);
      }
      await waitForExit('rabbitmqctl stop');
    },
    async kill() {
      const running = pid();
      if (running !== undefined && isRunning(running)) {
        process.kill(running, 'SIGKILL');
      }
      await waitForExit('SIGKILL');
    },
    async ensureUp() {
      if (!(await isListening(port))) {
        await rabbit.start();
      }
    },
    async dispose() {
      const running = pid();
      if (running !== undefined && isRunning(running)) {
        ctl('stop');
        if (isRunning(running)) {
          process.kill(running, 'SIGKILL');
        }
      }
      await waitForExit('dispose').catch(() => undefined);
      rmSync(folder, { recursive: true, force: true });
    },
  };
  await rabbit.start();
  return rabbit;
}

/** Tells the reaper that everything was cleaned up (call at the end of afterAll). */
export function brokersDisposed(): void {
  reaper.forget();
}
