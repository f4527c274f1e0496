// Starts the project's Kafka-protocol test broker (librdkafka's mock cluster, built by
// scripts/kafka-broker.mjs) for the Kafka scenario; the broker exits with its stdin.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const script = fileURLToPath(new URL('../../scripts/kafka-broker.mjs', import.meta.url));

export async function startKafkaBroker(topics = [], timeoutMs = 15_000) {
  const { build } = await import(script);
  const binary = build();
  const child = spawn(binary, ['--watch-stdin', ...topics], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c) => (stderr += c));
  const address = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`Kafka test broker did not start in ${timeoutMs} ms.\n${stderr}`)), timeoutMs);
    child.stdout.on('data', (c) => {
      out += c;
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        resolve(out.slice(0, nl).trim());
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`Kafka test broker exited (${code}).\n${stderr}`));
    });
  });
  return {
    brokers: address.split(','),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(killer);
    },
  };
}
