import { SpanStatusCode, type AttributeValue } from '@opentelemetry/api';
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace';
import type { RedactionOptions } from '../interfaces/otel-module-options.interface.js';
import { redactionFailed } from '../otel.messages.js';
import { diagLimited } from '../utils/diag-limited.js';
import { processGlobal } from '../utils/process-global.js';
import { resolveRedaction, validateRedactOption, type ResolvedRedaction } from './redaction-options.js';
import { DEFAULT_REDACTION_RULES, Redactor } from './redaction-rules.js';

/**
 * Masks secrets on every span before it is exported: attribute and event attribute values whose
 * key names a secret (`password`, `token`, `authorization`, `cookie`, ... matched on the key's
 * last segment or a word suffix of it: `app.user.password`, `http.request.header.authorization`),
 * the values of such query parameters in `url.full`, `url.query`, `http.url` and `http.target`
 * (the rest of the URL kept), and anywhere in a string value: bearer tokens, JWTs, AWS access key
 * ids, PEM private keys and Luhn-valid card numbers. The span's status message is checked for the
 * patterns too (exception events are event attributes: `exception.message`, `exception.stacktrace`).
 *
 * It works in `onEnding`, while the span can still be written (SDK 2.1+ / 3), so every processor's
 * `onEnd` (and every exporter) sees the redacted span; nothing frozen is mutated. OtelModule adds
 * it (on by default, `redact` changes it) right before the export processor. With your own SDK:
 * `new TracerProvider({ spanProcessors: [new RedactionSpanProcessor(), new BatchSpanProcessor(exporter)] })`.
 *
 * Cheap when nothing matches: a key check is a cached Map lookup, and each built-in pattern's
 * regex runs only on a string that passes a plain-string precheck. Never throws.
 *
 * @publicApi
 */
export class RedactionSpanProcessor implements SpanProcessor {
  private redactor: Redactor | undefined;
  private resolved: ResolvedRedaction;

  /** `options` as the `redact` option of OtelModule: default on with the built-in rules; `false` off. */
  constructor(options: boolean | RedactionOptions = true) {
    validateRedactOption(options);
    this.resolved = resolveRedaction(options);
    this.redactor = this.resolved.enabled ? new Redactor(this.resolved) : undefined;
  }

  /** Replaces the rules of a running processor (a provider started early gets them from `forRoot`). */
  configure(redaction: ResolvedRedaction): void {
    this.resolved = redaction;
    this.redactor = redaction.enabled ? new Redactor(redaction) : undefined;
  }

  /** The rules in force. */
  get redaction(): ResolvedRedaction {
    return this.resolved;
  }

  /** The compiled rules, undefined when off: what body capture masks JSON keys with. */
  get rules(): Redactor | undefined {
    return this.redactor;
  }

  onStart(): void {}

  onEnding(span: Span): void {
    const redactor = this.redactor;
    if (redactor === undefined) {
      return;
    }
    try {
      redactSpan(span, redactor);
    } catch (error) {
      diagLimited('warn', redactionFailed(), error);
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

/** Redacts a span that is ending (still writable): attributes, event attributes, status message. */
export function redactSpan(span: Span, redactor: Redactor): void {
  redactor.redactAttributes(span.attributes, (key: string, value: AttributeValue) => span.setAttribute(key, value));
  for (const event of span.events) {
    const attributes = event.attributes;
    if (attributes !== undefined) {
      // Events have no setter; their attribute objects are the span's own, not frozen, until it ends.
      redactor.redactAttributes(attributes, (key, value) => {
        attributes[key] = value;
      });
    }
  }
  const message = span.status.message;
  if (span.status.code === SpanStatusCode.ERROR && typeof message === 'string' && message !== '') {
    const redacted = redactor.redactString(message);
    if (redacted !== message) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: redacted });
    }
  }
}

/**
 * Where body and header capture find the rules in force: the redaction processor of the
 * otel-nest SDK running in this process (set by sdk-factory), else the built-in rules, so a
 * captured body is masked even under an SDK otel-nest did not build.
 */
const activeRedaction = processGlobal('redaction.active', () => ({ processor: undefined as RedactionSpanProcessor | undefined }));
const DEFAULT_REDACTOR = new Redactor(DEFAULT_REDACTION_RULES);

export function setActiveRedactionProcessor(processor: RedactionSpanProcessor | undefined): void {
  activeRedaction.processor = processor;
}

/** The rules captured bodies are masked with; undefined when redaction is off. */
export function activeRedactor(): Redactor | undefined {
  const processor = activeRedaction.processor;
  return processor === undefined ? DEFAULT_REDACTOR : processor.rules;
}
