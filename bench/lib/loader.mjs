// The HTTP load generator, in its own process so that it never shares an event loop with the app
// under test: autocannon, driven over IPC, one run per measured segment. Latencies are taken from
// autocannon's per-response event (float ms) rather than its histogram, which keeps whole ms only.
import autocannon from 'autocannon';
import { ready, serve } from './ipc.mjs';
import { percentile } from './stats.mjs';

function run({ url, seconds, connections = 16, pipelining = 1 }) {
  return new Promise((resolve, reject) => {
    const latencies = [];
    const instance = autocannon(
      { url, duration: seconds, connections, pipelining, timeout: 10 },
      (err, result) => {
        if (err) return reject(err);
        const completed = result.requests.total;
        resolve({
          requests: completed,
          seconds: result.duration,
          rps: completed / result.duration,
          p50: percentile(latencies, 50),
          p99: percentile(latencies, 99),
          errors: result.errors + result.timeouts,
          non2xx: result.non2xx,
        });
      },
    );
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      if (statusCode < 300) latencies.push(responseTime);
    });
  });
}

serve({ run });
ready();
