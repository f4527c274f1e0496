// Makes sure the brokers the end-to-end tests talk to are up on this machine, starting any that
// is down with the command this machine kind documents. Prints what it did; exits non-zero with
// a clear message if a broker stays down.
import { execSync } from 'node:child_process';
import { createConnection } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

const services = [
  {
    name: 'NATS (JetStream)',
    port: 4222,
    start:
      'start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log',
  },
  { name: 'RabbitMQ', port: 5672, start: 'rabbitmq-server -detached' },
];

function isListening(port) {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

let failed = false;
for (const service of services) {
  if (await isListening(service.port)) {
    console.log(`${service.name}: up on 127.0.0.1:${service.port}`);
    continue;
  }
  console.log(`${service.name}: down; starting it with: ${service.start}`);
  try {
    execSync(service.start, { stdio: 'inherit' });
  } catch (error) {
    console.error(`${service.name}: the start command failed: ${error.message}`);
  }
  const deadline = Date.now() + 60_000;
  while (!(await isListening(service.port)) && Date.now() < deadline) {
    await sleep(500);
  }
  if (await isListening(service.port)) {
    console.log(`${service.name}: up on 127.0.0.1:${service.port}`);
  } else {
    console.error(`${service.name}: still not listening on 127.0.0.1:${service.port} after 60 s.`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
