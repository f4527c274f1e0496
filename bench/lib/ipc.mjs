// Parent <-> child plumbing for the benchmark processes: every configuration runs in its own
// child (a fresh SDK per process), driven over the IPC channel with request/reply messages.
import { fork } from 'node:child_process';
import { once } from 'node:events';

/**
 * Forks `file` and waits for its `{ type: 'ready', ... }` message. `request(cmd, args)` sends
 * `{ id, cmd, args }` and resolves with the child's `{ id, result }` (or rejects with its `error`).
 * Unsolicited messages (`{ type: ... }`) go to `onMessage`. `execPath`: the node binary (default:
 * this process's).
 */
export async function startChild(file, { name, env = {}, execArgv = [], execPath, readyTimeoutMs = 60_000, onMessage, quiet = true } = {}) {
  const child = fork(file, [], {
    env: { ...process.env, ...env },
    execArgv,
    ...(execPath ? { execPath } : {}),
    stdio: ['ignore', quiet ? 'ignore' : 'inherit', 'pipe', 'ipc'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
    if (stderr.length > 20_000) stderr = stderr.slice(-10_000);
  });
  let nextId = 1;
  const pending = new Map();
  let readyResolve;
  let readyReject;
  const ready = new Promise((resolve, reject) => {
    readyResolve = resolve;
    readyReject = reject;
  });
  child.on('message', (msg) => {
    if (msg && msg.type === 'ready') {
      readyResolve(msg);
    } else if (msg && msg.id !== undefined && pending.has(msg.id)) {
      const { resolve, reject } = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error !== undefined) reject(new Error(`${name}: ${msg.error}`));
      else resolve(msg.result);
    } else {
      onMessage?.(msg);
    }
  });
  const exited = once(child, 'exit');
  exited.then(([code, signal]) => {
    const err = new Error(`${name} exited (${code ?? signal}).\n${stderr.slice(-4000)}`);
    readyReject(err);
    for (const { reject } of pending.values()) reject(err);
    pending.clear();
  });
  const timer = setTimeout(() => readyReject(new Error(`${name} was not ready within ${readyTimeoutMs} ms.\n${stderr.slice(-4000)}`)), readyTimeoutMs);
  let info;
  try {
    info = await ready;
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return {
    name,
    info,
    pid: child.pid,
    child,
    stderr: () => stderr,
    send(msg) {
      child.send(msg);
    },
    request(cmd, args = {}, timeoutMs = 120_000) {
      const id = nextId++;
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`${name}: "${cmd}" timed out after ${timeoutMs} ms.`));
        }, timeoutMs);
        pending.set(id, {
          resolve: (v) => (clearTimeout(t), resolve(v)),
          reject: (e) => (clearTimeout(t), reject(e)),
        });
        child.send({ id, cmd, args });
      });
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      this.request('exit', {}, 5000).catch(() => undefined);
      const graceful = setTimeout(() => child.kill('SIGTERM'), 5000);
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      clearTimeout(graceful);
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(killer);
    },
  };
}

/**
 * Starts several children in parallel; when one cannot start, the others are stopped (once
 * started) before the error is thrown, so that no child outlives the run.
 */
export async function startChildren(starts) {
  const settled = await Promise.allSettled(starts.map((start) => start()));
  const failed = settled.find((r) => r.status === 'rejected');
  if (failed) {
    await Promise.all(settled.filter((r) => r.status === 'fulfilled').map((r) => r.value.stop()));
    throw failed.reason;
  }
  return settled.map((r) => r.value);
}

/** Child side: answers `{ id, cmd, args }` with `handlers[cmd](args)`; exits when the parent goes away. */
export function serve(handlers) {
  process.on('message', async (msg) => {
    if (!msg || msg.id === undefined) return;
    try {
      if (msg.cmd === 'exit') {
        // A clean exit, so that --cpu-prof writes its profile.
        process.send({ id: msg.id, result: null }, () => process.exit(0));
        return;
      }
      const handler = handlers[msg.cmd];
      if (!handler) throw new Error(`unknown command ${msg.cmd}`);
      const result = await handler(msg.args ?? {});
      process.send({ id: msg.id, result: result ?? null });
    } catch (err) {
      process.send({ id: msg.id, error: err?.stack ?? String(err) });
    }
  });
  process.on('disconnect', () => process.exit(0));
}

export function ready(info = {}) {
  process.send({ type: 'ready', ...info });
}
