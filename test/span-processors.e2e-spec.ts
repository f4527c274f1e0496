import 'reflect-metadata';
import { Controller, Get, Module, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { Attributes, Context } from '@opentelemetry/api';
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OtelModule, TraceService } from '../lib/index.js';
import { plainRequest } from './support/http-request.js';
import { startOtlpReceiver, type OtlpReceiver } from './support/otlp-receiver.js';

/**
 * The user's `spanProcessors` run before the processor that exports: what a redaction processor
 * changes is what reaches the collector. Checked on what a real OTLP receiver got, with
 * `batch: false` (the SimpleSpanProcessor exports in its own onEnd, so order is all that decides).
 */

const CARD = '4111111111111111';
const EMAIL = 'ada@example.com';
const REDACTED = '[redacted]';

@Controller('checkout')
class CheckoutController {
  constructor(private readonly traces: TraceService) {}

  @Get()
  checkout(): { ok: true } {
    this.traces.withSpan('charge card', (span) => {
      span.setAttributes({ 'payment.card.number': CARD, 'user.email': EMAIL, 'payment.amount': 42 });
    });
    return { ok: true };
  }
}

/** Redacts `key` in `onEnding`, while the span is still writable: the way the SDK offers. */
class EndingRedactor implements SpanProcessor {
  constructor(private readonly key: string) {}
  onStart(_span: Span, _parent: Context): void {}
  onEnding(span: Span): void {
    if (span.attributes[this.key] !== undefined) {
      span.setAttribute(this.key, REDACTED);
    }
  }
  onEnd(): void {}
  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * Redacts `key` in `onEnd`, on the ended span's attributes, as processors written before
 * `onEnding` existed do: it works only when it runs before the export processor's onEnd.
 */
class EndRedactor implements SpanProcessor {
  constructor(private readonly key: string) {}
  onStart(): void {}
  onEnd(span: ReadableSpan): void {
    if (span.attributes[this.key] !== undefined) {
      (span.attributes as Attributes)[this.key] = REDACTED;
    }
  }
  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

describe('spanProcessors: the user processors run before the export', () => {
  let receiver: OtlpReceiver;
  let app: INestApplication;
  let url: string;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    @Module({
      imports: [
        OtelModule.forRoot({
          serviceName: 'redaction',
          exporter: { url: receiver.url },
          batch: false,
          logSummary: false,
          spanProcessors: [new EndingRedactor('payment.card.number'), new EndRedactor('user.email')],
        }),
      ],
      controllers: [CheckoutController],
    })
    class AppModule {}
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
    app = moduleRef.createNestApplication();
    await app.listen(0, '127.0.0.1');
    url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  });

  afterAll(async () => {
    await app?.close();
    await receiver?.close();
  });

  it('the exported span carries the redacted values, never the originals', async () => {
    const response = await plainRequest(`${url}/checkout`);
    expect(response.status).toBe(200);
    const [charge] = await receiver.waitForSpans((span) => span.name === 'charge card');
    expect(charge!.service).toBe('redaction');
    expect(charge!.attributes['payment.amount']).toBe(42);
    // Redacted while the span was ending (onEnding) and once it had ended (onEnd).
    expect(charge!.attributes['payment.card.number']).toBe(REDACTED);
    expect(charge!.attributes['user.email']).toBe(REDACTED);
    // Nowhere in what the collector received.
    const body = receiver.requests.map((request) => request.body.toString('utf8')).join('\n');
    expect(body).not.toContain(CARD);
    expect(body).not.toContain(EMAIL);
  });
});
