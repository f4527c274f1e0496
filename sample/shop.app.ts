import type { INestApplication, LoggerService, LogLevel } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';
import { TraceTreeExporter } from './tracing/trace-tree.exporter.js';

export interface ShopAppOptions {
  /** Default 3000; 0 picks a free port. */
  port?: number;
  /** Default `127.0.0.1`; `0.0.0.0` to be reachable from other hosts. */
  host?: string;
  /** Print each trace to the console once it is complete. Default `false`. */
  printEachTrace?: boolean;
  /** Nest's `logger` option: a logger, log levels, or `false`. Default: Nest's. */
  logger?: LoggerService | LogLevel[] | false;
}

export interface ShopApp {
  app: INestApplication;
  /** e.g. `http://127.0.0.1:3000`. */
  url: string;
  /** Every span the app finished, for printing and checking. */
  traces: TraceTreeExporter;
}

/** Creates the shop app and listens. `app.close()` stops it and flushes every span. */
export async function startShopApp(options: ShopAppOptions = {}): Promise<ShopApp> {
  const traces = new TraceTreeExporter({ printEachTrace: options.printEachTrace ?? false });
  const app = await NestFactory.create(
    AppModule.forRoot({ traceExporter: traces }),
    options.logger === undefined ? {} : { logger: options.logger },
  );
  await app.listen(options.port ?? 3000, options.host ?? '127.0.0.1');
  const { port } = app.getHttpServer().address() as { port: number };
  return { app, url: `http://127.0.0.1:${port}`, traces };
}
