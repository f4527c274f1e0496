import { SpanStatusCode, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { afterEach, describe, expect, it } from 'vitest';
import { OtelConfigError } from '../otel.messages.js';
import { validateOptions } from '../sdk/config/validate-options.js';
import { mergeRedactions, resolveRedaction } from './redaction-options.js';
import { RedactionSpanProcessor } from './redaction.processor.js';
import { DEFAULT_REDACTION_RULES, isCardNumber, KeyMatcher, Redactor } from './redaction-rules.js';

const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U';
const redactor = new Redactor(DEFAULT_REDACTION_RULES);

describe('KeyMatcher', () => {
  const keys = new KeyMatcher(DEFAULT_REDACTION_RULES.keys);
  it.each([
    'password',
    'app.user.password',
    'user_password',
    'userPassword',
    'http.request.header.authorization',
    'http.request.header.x-api-key',
    'http.request.header.x-auth-token',
    'nestjs.message.header.cookie',
    'apiKey',
    'accessToken',
    'card_number',
    'user.token',
  ])('matches %s', (key) => expect(keys.matches(key)).toBe(true));
  it.each(['prompt_tokens', 'tokenizer', 'http.request.method', 'messaging.kafka.message.key', 'url.full', 'user.id', 'passwordless'])(
    'does not match %s',
    (key) => expect(keys.matches(key)).toBe(false),
  );
});

describe('Redactor', () => {
  it('masks the whole value of a sensitive key, arrays element by element', () => {
    expect(redactor.redactAttribute('app.password', 'hunter2')).toBe('[REDACTED]');
    expect(redactor.redactAttribute('http.request.header.authorization', ['Basic abc'])).toEqual(['[REDACTED]']);
    expect(redactor.redactAttribute('payment.cvv', 123)).toBe('[REDACTED]');
  });

  it('masks listed query parameters in url.full, url.query and http.url and keeps the rest', () => {
    expect(redactor.redactAttribute('url.full', 'http://h/x?token=abc&page=2#top')).toBe('http://h/x?token=[REDACTED]&page=2#top');
    expect(redactor.redactAttribute('url.query', 'page=2&api_key=k&X-Amz-Signature=s')).toBe('page=2&api_key=[REDACTED]&X-Amz-Signature=[REDACTED]');
    expect(redactor.redactAttribute('http.url', 'http://h/x?q=1')).toBe('http://h/x?q=1');
    // Only URL attributes are parsed as URLs.
    expect(redactor.redactAttribute('app.note', 'see ?token=abc')).toBe('see ?token=abc');
  });

  it('masks the built-in patterns inside any string and leaves other text as it is', () => {
    expect(redactor.redactString(`invalid token ${JWT} given`)).toBe('invalid token [REDACTED] given');
    expect(redactor.redactString('Authorization: Bearer abcdefgh12345')).toBe('Authorization: Bearer [REDACTED]');
    expect(redactor.redactString('key AKIAIOSFODNN7EXAMPLE used')).toBe('key [REDACTED] used');
    expect(redactor.redactString('a -----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY----- b')).toBe('a [REDACTED] b');
    expect(redactor.redactString('cut -----BEGIN PRIVATE KEY-----\nMIIE')).toBe('cut [REDACTED]');
    expect(redactor.redactString('card 4111 1111 1111 1111 ok')).toBe('card [REDACTED] ok');
    expect(redactor.redactString('order 4111111111111112 (not Luhn)')).toBe('order 4111111111111112 (not Luhn)');
    expect(redactor.redactString('at 1718000000000 ms')).toBe('at 1718000000000 ms');
    const plain = 'GET /orders/:id';
    expect(redactor.redactString(plain)).toBe(plain);
  });

  it('checks Luhn and issuer digits', () => {
    expect(isCardNumber('4111111111111111')).toBe(true);
    expect(isCardNumber('5500-0000-0000-0004')).toBe(true);
    expect(isCardNumber('378282246310005')).toBe(true);
    expect(isCardNumber('4111111111111112')).toBe(false);
  });

  it('uses custom keys, patterns and replacement', () => {
    const custom = new Redactor(resolveRedaction({ keys: ['iban'], patterns: [/\bACME-\d+\b/], replacement: '***' }) as never);
    expect(custom.redactAttribute('bank.iban', 'DE00')).toBe('***');
    expect(custom.redactAttribute('app.password', 'x')).toBe('x');
    expect(custom.redactString('ref ACME-42 and ACME-43')).toBe('ref *** and ***');
    expect(custom.redactString(JWT)).toBe(JWT);
  });

  it('masks sensitive keys of JSON at any depth', () => {
    expect(redactor.stringifyMasked({ user: { name: 'ada', password: 'x' }, items: [{ token: 't' }] })).toBe(
      '{"user":{"name":"ada","password":"[REDACTED]"},"items":[{"token":"[REDACTED]"}]}',
    );
  });
});

describe('RedactionSpanProcessor', () => {
  const exporter = new InMemorySpanExporter();
  afterEach(() => exporter.reset());

  function provider(processor: RedactionSpanProcessor): TracerProvider {
    return new TracerProvider({ spanProcessors: [processor, new SimpleSpanProcessor({ exporter })] });
  }

  it('redacts attributes, event attributes and the status message in onEnding, before any onEnd', () => {
    const tracer = provider(new RedactionSpanProcessor()).getTracer('t');
    const span = tracer.startSpan('s', { attributes: { 'app.password': 'p', 'app.page': 2 } });
    span.setAttribute('url.full', 'http://h/?token=abc&page=2');
    span.recordException(new Error(`bad ${JWT}`));
    span.addEvent('login', { 'user.token': 'tok', 'user.name': 'ada' });
    span.setStatus({ code: SpanStatusCode.ERROR, message: `bad ${JWT}` });
    span.end();
    const [ended] = exporter.getFinishedSpans();
    expect(ended!.attributes).toEqual({ 'app.password': '[REDACTED]', 'app.page': 2, 'url.full': 'http://h/?token=[REDACTED]&page=2' });
    expect(ended!.events[0]!.attributes!['exception.message']).toBe('bad [REDACTED]');
    expect(String(ended!.events[0]!.attributes!['exception.stacktrace'])).not.toContain(JWT);
    expect(ended!.events[1]!.attributes).toEqual({ 'user.token': '[REDACTED]', 'user.name': 'ada' });
    expect(ended!.status).toEqual({ code: SpanStatusCode.ERROR, message: 'bad [REDACTED]' });
  });

  it('does nothing with false, and can be reconfigured while it runs', () => {
    const processor = new RedactionSpanProcessor(false);
    const tracer = provider(processor).getTracer('t');
    tracer.startSpan('a', { attributes: { 'app.password': 'p' } }).end();
    processor.configure(resolveRedaction({ extraKeys: ['iban'] }));
    tracer.startSpan('b', { attributes: { 'app.password': 'p', iban: 'DE00' } }).end();
    const [a, b] = exporter.getFinishedSpans();
    expect(a!.attributes['app.password']).toBe('p');
    expect(b!.attributes).toEqual({ 'app.password': '[REDACTED]', iban: '[REDACTED]' });
    expect(trace).toBeDefined();
  });
});

describe('redact option', () => {
  it.each([
    [{ redact: 'yes' }, /"redact" must be a boolean or an options object/],
    [{ redact: { extrakeys: ['x'] } }, /unknown option "extrakeys" \(did you mean "extraKeys"\?\)/],
    [{ redact: { keys: 'password' } }, /"redact.keys" must be an array of non-empty strings/],
    [{ redact: { patterns: ['jwt', 'ssn'] } }, /"redact.patterns\[1\]" must be an array of built-in pattern names/],
    [{ redact: { patterns: [/x*/] } }, /must be a RegExp that does not match the empty string/],
    [{ redact: { replacement: 1 } }, /"redact.replacement" must be a string/],
  ])('rejects %j', (options, message) => {
    expect(() => validateOptions(options as never)).toThrow(OtelConfigError);
    expect(() => validateOptions(options as never)).toThrow(message);
  });

  it('merges shared-provider redactions: on when any is on, the union of their rules', () => {
    const merged = mergeRedactions([resolveRedaction(false), resolveRedaction({ keys: ['a'] }), resolveRedaction({ keys: ['b'], patterns: [] })]);
    expect(merged.enabled && [...merged.keys].sort()).toEqual(['a', 'b']);
    expect(mergeRedactions([resolveRedaction(false)]).enabled).toBe(false);
  });
});

describe('redaction of a shared SDK', () => {
  it('a module configures an SDK the preload started; the preload default comes back when it leaves', async () => {
    const { acquireSdk } = await import('../sdk/sdk-handle.js');
    const { resolveSdkConfig } = await import('../sdk/config/resolve-config.js');
    const { activeRedactor } = await import('./redaction.processor.js');
    const preload = acquireSdk(resolveSdkConfig({ exporter: 'none', logSummary: false }, {}), undefined, 'preload');
    try {
      expect(activeRedactor()?.isSensitiveKey('app.password')).toBe(true);
      const module = acquireSdk(resolveSdkConfig({ exporter: 'none', redact: false }, {}));
      expect(activeRedactor()).toBeUndefined();
      await module.shutdown();
      expect(activeRedactor()?.isSensitiveKey('app.password')).toBe(true);
    } finally {
      await preload.shutdown();
    }
  });
});

describe('startup summary', () => {
  it('says when redaction is off or custom, and nothing for the default', async () => {
    const { describeStartup } = await import('../sdk/config/summary.js');
    const { resolveSdkConfig } = await import('../sdk/config/resolve-config.js');
    const line = (redact: boolean | object | undefined) =>
      describeStartup(
        { disabled: false, disabledReason: undefined, owned: true, reused: false, serviceName: 's', running: resolveSdkConfig({ redact } as never, {}) },
        [],
        [],
      );
    expect(line(false)).toContain(', redaction off;');
    expect(line({ extraKeys: ['iban'] })).toContain(', redaction on (custom);');
    expect(line(undefined)).not.toContain('redaction');
  });
});
