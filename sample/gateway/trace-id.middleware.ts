import { Injectable, type NestMiddleware } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { TraceService } from 'otel-nest';

/** Names the request's trace in an `x-trace-id` response header, so a caller can look it up. */
@Injectable()
export class TraceIdMiddleware implements NestMiddleware {
  constructor(private readonly trace: TraceService) {}

  use(_request: IncomingMessage, response: ServerResponse, next: () => void): void {
    const traceId = this.trace.getTraceId();
    if (traceId !== undefined) {
      response.setHeader('x-trace-id', traceId);
    }
    next();
  }
}
