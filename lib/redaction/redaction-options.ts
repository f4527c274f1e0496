import type { RedactionOptions } from '../interfaces/otel-module-options.interface.js';
import { invalidOptionValue, OtelConfigError } from '../otel.messages.js';
import { rejectUnknownKeys } from '../sdk/config/suggest.js';
import {
  BUILTIN_REDACTION_PATTERNS,
  DEFAULT_REDACTED_KEYS,
  DEFAULT_REDACTED_QUERY_PARAMS,
  DEFAULT_REDACTION_REPLACEMENT,
  DEFAULT_REDACTION_RULES,
  type BuiltinRedactionPattern,
  type RedactionRules,
} from './redaction-rules.js';

/** `redact` resolved: off, or the rules to apply. */
export type ResolvedRedaction = { readonly enabled: false } | ({ readonly enabled: true } & RedactionRules);

export const REDACTION_OFF: ResolvedRedaction = Object.freeze({ enabled: false });
export const REDACTION_DEFAULT: ResolvedRedaction = Object.freeze({ enabled: true, ...DEFAULT_REDACTION_RULES });

const KNOWN_REDACTION_OPTIONS = ['keys', 'extraKeys', 'queryParams', 'patterns', 'replacement'] as const;

function fail(path: string, expected: string, example: string, got: unknown): never {
  throw new OtelConfigError(invalidOptionValue(path, expected, example, got));
}

function checkStringList(value: unknown, path: string, example: string): void {
  if (value === undefined) {
    return;
  }
  if (!Array.isArray(value)) {
    fail(path, 'an array of non-empty strings', example, value);
  }
  value.forEach((item: unknown, i) => {
    if (typeof item !== 'string' || item.trim() === '') {
      fail(`${path}[${i}]`, 'a non-empty string', example, item);
    }
  });
}

/** Throws {@link OtelConfigError} for a wrong `redact` option. */
export function validateRedactOption(value: unknown): void {
  if (value === undefined || typeof value === 'boolean') {
    return;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    fail('redact', 'a boolean or an options object', "{ redact: false } or { redact: { extraKeys: ['iban'] } }", value);
  }
  const object = value as Record<string, unknown>;
  rejectUnknownKeys(object, KNOWN_REDACTION_OPTIONS, '"redact"');
  checkStringList(object.keys, 'redact.keys', "{ redact: { keys: ['password', 'token'] } }");
  checkStringList(object.extraKeys, 'redact.extraKeys', "{ redact: { extraKeys: ['iban', 'date_of_birth'] } }");
  checkStringList(object.queryParams, 'redact.queryParams', "{ redact: { queryParams: ['token', 'sig'] } }");
  if (object.patterns !== undefined) {
    const example = "{ redact: { patterns: ['jwt', 'bearer', /\\bIBAN[0-9A-Z]{15,30}\\b/] } }";
    const expected = `an array of built-in pattern names (${BUILTIN_REDACTION_PATTERNS.map((n) => `'${n}'`).join(', ')}) or RegExps`;
    if (!Array.isArray(object.patterns)) {
      fail('redact.patterns', expected, example, object.patterns);
    }
    object.patterns.forEach((pattern: unknown, i) => {
      const builtin = typeof pattern === 'string' && (BUILTIN_REDACTION_PATTERNS as readonly string[]).includes(pattern);
      if (!builtin && !(pattern instanceof RegExp)) {
        fail(`redact.patterns[${i}]`, expected, example, pattern);
      } else if (pattern instanceof RegExp && pattern.test('')) {
        // A pattern that matches the empty string would insert the replacement between every character.
        fail(`redact.patterns[${i}]`, 'a RegExp that does not match the empty string', example, pattern);
      }
    });
  }
  if (object.replacement !== undefined && typeof object.replacement !== 'string') {
    fail('redact.replacement', 'a string', "{ redact: { replacement: '***' } }", object.replacement);
  }
}

/** `redact` resolved: `false` is off; `true`, undefined and an object are on, with the defaults filled in. */
export function resolveRedaction(option: boolean | RedactionOptions | undefined): ResolvedRedaction {
  if (option === false) {
    return REDACTION_OFF;
  }
  if (option === undefined || option === true) {
    return REDACTION_DEFAULT;
  }
  const keys = [...new Set([...(option.keys ?? DEFAULT_REDACTED_KEYS), ...(option.extraKeys ?? [])])];
  const queryParams =
    option.queryParams !== undefined
      ? [...new Set(option.queryParams)]
      : // Without an explicit list, every sensitive key is a sensitive parameter too.
        [...new Set([...DEFAULT_REDACTED_QUERY_PARAMS, ...keys])];
  return Object.freeze({
    enabled: true,
    keys,
    queryParams,
    patterns: dedupePatterns(option.patterns ?? BUILTIN_REDACTION_PATTERNS),
    replacement: option.replacement ?? DEFAULT_REDACTION_REPLACEMENT,
  });
}

function dedupePatterns(patterns: ReadonlyArray<BuiltinRedactionPattern | RegExp>): Array<BuiltinRedactionPattern | RegExp> {
  const seen = new Set<string>();
  return patterns.filter((pattern) => {
    const id = typeof pattern === 'string' ? pattern : `/${pattern.source}/${pattern.flags}`;
    if (seen.has(id)) {
      return false;
    }
    seen.add(id);
    return true;
  });
}

/**
 * The redaction of a provider shared by several applications (OtelModules in one process, or one
 * started by `otel-nest/register`): what any of them asks to mask is masked. On when any is on;
 * keys, parameters and patterns are the union of the ones that are on; the replacement is the
 * first one's.
 */
export function mergeRedactions(redactions: readonly ResolvedRedaction[]): ResolvedRedaction {
  const on = redactions.filter((r): r is Extract<ResolvedRedaction, { enabled: true }> => r.enabled);
  if (on.length === 0) {
    return redactions.length === 0 ? REDACTION_DEFAULT : REDACTION_OFF;
  }
  if (on.length === 1) {
    return on[0]!;
  }
  return Object.freeze({
    enabled: true,
    keys: [...new Set(on.flatMap((r) => r.keys))],
    queryParams: [...new Set(on.flatMap((r) => r.queryParams))],
    patterns: dedupePatterns(on.flatMap((r) => r.patterns)),
    replacement: on[0]!.replacement,
  });
}

/** For the startup summary: `on`, `on (custom)`, `off`. */
export function describeRedaction(redaction: ResolvedRedaction): string {
  if (!redaction.enabled) {
    return 'off';
  }
  return redaction === REDACTION_DEFAULT ? 'on' : 'on (custom)';
}
