// The HTTP load generator, in its own process so that it never shares an event loop with the app
// under test: autocannon, driven over IPC, one run per measured segment.
import autocannon from 'autocannon';
import { ready, serve } from './ipc.mjs';

function run({ url, seconds, connections = 16, pipelining = 1 }) {
  return new Promise((resolve, reject) => {
    autocannon(
      { url, duration: seconds, connections, pipelining, timeout: 10 },
      (err, result) => {
        if (err) return reject(err);
        const completed = result.requests.total;
        resolve({
          requests: completed,
          seconds: result.duration,
          rps: completed / result.duration,
          p50: result.latency.p50,
          p99: result.latency.p99,
          mean: result.latency.mean,
          errors: result.errors + result.timeouts,
          non2xx: result.non2xx,
        });
      },
    );
  });
}

serve({ run });
ready();
