#!/usr/bin/env node
// The `otel-nest-viewer` command: starts the trace viewer until Ctrl-C.
import { DiagConsoleLogger, DiagLogLevel, diag } from '@opentelemetry/api';
import { CLI_USAGE, parseViewerArgs } from './cli-args.js';
import { startTraceViewer, type TraceViewerOptions } from './trace-viewer.server.js';

async function main(): Promise<void> {
  let options: TraceViewerOptions | 'help';
  try {
    options = parseViewerArgs(process.argv.slice(2));
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${CLI_USAGE}`);
    process.exitCode = 2;
    return;
  }
  if (options === 'help') {
    console.log(CLI_USAGE);
    return;
  }
  // The viewer reports its own failures through diag, silent unless someone listens: here, the console.
  diag.setLogger(new DiagConsoleLogger(), DiagLogLevel.ERROR);
  const viewer = await startTraceViewer(options);
  console.log(`otel-nest trace viewer: ${viewer.url}`);
  console.log(`  receiving OTLP/HTTP JSON at ${viewer.otlpUrl}`);
  console.log(`  for your services: OTEL_EXPORTER_OTLP_ENDPOINT=${viewer.endpoint}`);
  console.log(`  keeps the last ${viewer.store.maxTraces} traces, at most ${viewer.store.maxSpansPerTrace} spans each. Ctrl-C to stop.`);
  const stop = (): void => {
    void viewer.close().finally(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
