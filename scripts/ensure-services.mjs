// Makes sure the brokers the end-to-end tests talk to are up on this machine, starting any that
// is down with the command this machine kind documents. Prints what it did; exits non-zero with
// a clear message if a broker stays down.
import { execSync } from 'node:child_process';
import { existsSync } from 'node:fs';
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
  {
    name: 'PostgreSQL',
    port: 5432,
    start: 'pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start',
  },
  {
    name: 'Redis',
    port: 6379,
    start:
      'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log',
  },
  { name: 'Mosquitto (MQTT)', port: 1883, start: 'mosquitto -d -c /etc/mosquitto/mosquitto.conf' },
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
// The trace viewer's browser test drives Debian's Chromium (never a downloaded browser).
if (!existsSync('/usr/bin/chromium')) {
  if (process.getuid?.() === 0) {
    console.log('Chromium: missing; installing Debian\'s chromium for the browser test.');
    try {
      execSync('apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium', { stdio: 'inherit' });
    } catch (error) {
      console.error(`Chromium: could not install it (${error.message}); the browser test will be skipped.`);
    }
  } else {
    console.log('Chromium: missing; the browser test will be skipped (install it with: apt-get install -y chromium).');
  }
} else {
  console.log('Chromium: /usr/bin/chromium');
}
process.exit(failed ? 1 : 0);
