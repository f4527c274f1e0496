import { propagation, type Context } from '@opentelemetry/api';
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace';
import { baggageCopyFailed, baggageKeysIgnored } from '../otel.messages.js';
import { diagLimited } from '../utils/diag-limited.js';

/**
 * Copies chosen baggage entries of the parent context onto every span when it starts, as
 * attributes named like the baggage key (`tenant.id` baggage -> `tenant.id` attribute), so that
 * spans can be searched by tenant or user in any backend.
 *
 * OtelModule adds it for `baggageToAttributes`. With your own SDK, add it yourself:
 * `new NodeSDK({ spanProcessors: [new BaggageAttributesSpanProcessor(['tenant.id']), ...] })`.
 *
 * Only listed keys are copied: baggage comes from the network, so copying everything would let
 * any caller write arbitrary attributes. Never throws.
 */
export class BaggageAttributesSpanProcessor implements SpanProcessor {
  private keys: readonly string[] = [];

  constructor(keys: readonly string[] = []) {
    this.setKeys(keys);
  }

  /**
   * Replaces the copied keys. A provider started early (by `otel-nest/register`) gets its keys
   * later, from `OtelModule.forRoot({ baggageToAttributes })`.
   */
  setKeys(keys: readonly string[]): void {
    const list: readonly unknown[] = Array.isArray(keys) ? keys : [];
    const valid = list.filter((key): key is string => typeof key === 'string' && key !== '');
    if (valid.length !== list.length || !Array.isArray(keys)) {
      diagLimited('warn', baggageKeysIgnored(keys));
    }
    this.keys = [...new Set(valid)];
  }

  /** The keys copied now. */
  getKeys(): readonly string[] {
    return this.keys;
  }

  onStart(span: Span, parentContext: Context): void {
    if (this.keys.length === 0) {
      return;
    }
    try {
      const baggage = propagation.getBaggage(parentContext);
      if (baggage === undefined) {
        return;
      }
      for (const key of this.keys) {
        const entry = baggage.getEntry(key);
        // An attribute given to startSpan() is the caller's explicit choice: it wins over baggage.
        if (entry !== undefined && span.attributes[key] === undefined) {
          span.setAttribute(key, entry.value);
        }
      }
    } catch (error) {
      diagLimited('warn', baggageCopyFailed(), error);
    }
  }

  onEnd(_span: ReadableSpan): void {}

  forceFlush(): Promise<void> {
    return Promise.resolve();
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}
