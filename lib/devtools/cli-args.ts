import { parseArgs } from 'node:util';
import { DEFAULT_VIEWER_HOST, DEFAULT_VIEWER_PORT, type TraceViewerOptions } from './trace-viewer.server.js';
import { DEFAULT_MAX_SPANS_PER_TRACE, DEFAULT_MAX_TRACES } from './trace.store.js';

export const CLI_USAGE = `Usage: otel-nest-viewer [options]   (or: node node_modules/otel-nest/dist/devtools/cli.js)

Receives OTLP/HTTP JSON traces and shows them as waterfalls in the browser.

Options:
  --port <n>                 port to listen on, 0 for any free one (default ${DEFAULT_VIEWER_PORT})
  --host <address>           interface to listen on (default ${DEFAULT_VIEWER_HOST}; 0.0.0.0 to receive from containers)
  --max-traces <n>           traces kept in memory, oldest dropped first (default ${DEFAULT_MAX_TRACES})
  --max-spans-per-trace <n>  spans kept per trace, later ones refused (default ${DEFAULT_MAX_SPANS_PER_TRACE})
  -h, --help                 show this help

Then point your services at it: OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:${DEFAULT_VIEWER_PORT}
(or OtelModule.forRoot({ exporter: { url: 'http://127.0.0.1:${DEFAULT_VIEWER_PORT}/v1/traces' } })).`;

/** Thrown for a command line that cannot be understood; the message says why. */
export class CliUsageError extends Error {
  override readonly name = 'CliUsageError';
}

function integer(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) {
    return undefined;
  }
  if (!/^\d+$/.test(value)) {
    throw new CliUsageError(`${flag} needs a whole number, got ${JSON.stringify(value)}.`);
  }
  return Number(value);
}

/** The viewer options a command line asks for, or `'help'`. Throws {@link CliUsageError}. */
export function parseViewerArgs(args: readonly string[]): TraceViewerOptions | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...args],
      options: {
        port: { type: 'string' },
        host: { type: 'string' },
        'max-traces': { type: 'string' },
        'max-spans-per-trace': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new CliUsageError((error as Error).message);
  }
  if (values.help) {
    return 'help';
  }
  const options: TraceViewerOptions = {};
  const port = integer(values.port, '--port');
  const maxTraces = integer(values['max-traces'], '--max-traces');
  const maxSpansPerTrace = integer(values['max-spans-per-trace'], '--max-spans-per-trace');
  if (port !== undefined) options.port = port;
  if (values.host !== undefined) options.host = values.host;
  if (maxTraces !== undefined) options.maxTraces = maxTraces;
  if (maxSpansPerTrace !== undefined) options.maxSpansPerTrace = maxSpansPerTrace;
  return options;
}
