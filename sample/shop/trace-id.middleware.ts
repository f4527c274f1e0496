import { Injectable, type NestMiddleware } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import { TraceService } from 'otel-nest';

/** Answers every request with its trace id in `x-trace-id`, so a caller can look the trace up. */
@Injectable()
export class TraceIdMiddleware implements NestMiddleware {
  constructor(private readonly traceService: TraceService) {}

  use(_request: unknown, response: ServerResponse, next: () => void): void {
    const traceId = this.traceService.getTraceId();
    if (traceId !== undefined) {
      response.setHeader('x-trace-id', traceId);
    }
    next();
  }
}
