import type { AttributeValue, Attributes } from '@opentelemetry/api';

/** The value patterns built into the redaction, by the names `redact.patterns` takes. */
export type BuiltinRedactionPattern = 'bearer' | 'jwt' | 'aws-access-key' | 'private-key' | 'card-number';

export const BUILTIN_REDACTION_PATTERNS: readonly BuiltinRedactionPattern[] = [
  'bearer',
  'jwt',
  'aws-access-key',
  'private-key',
  'card-number',
];

/** What replaces a redacted value by default. */
export const DEFAULT_REDACTION_REPLACEMENT = '[REDACTED]';

/**
 * Attribute keys whose values are always masked, compared with the key's last `.` segment and
 * each of that segment's word suffixes (see {@link KeyMatcher}).
 */
export const DEFAULT_REDACTED_KEYS: readonly string[] = [
  'password',
  'passwd',
  'pwd',
  'secret',
  'token',
  'access_token',
  'refresh_token',
  'id_token',
  'api_key',
  'apikey',
  'x-api-key',
  'authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
  'credit_card',
  'card_number',
  'cvv',
  'cvc',
  'ssn',
  'private_key',
  'client_secret',
  'session_id',
];

/**
 * Query parameters whose values are masked in `url.full`, `url.query`, `http.url` and `http.target`:
 * the keys above, plus the signature parameters the HTTP conventions name (AWS, Google signed URLs).
 */
export const DEFAULT_REDACTED_QUERY_PARAMS: readonly string[] = [
  ...DEFAULT_REDACTED_KEYS,
  'sig',
  'signature',
  'awsaccesskeyid',
  'x-amz-credential',
  'x-amz-security-token',
  'x-amz-signature',
  'x-goog-signature',
];

/** The attributes holding a URL whose query is checked by parameter name. */
const URL_ATTRIBUTES: ReadonlySet<string> = new Set(['url.full', 'http.url', 'http.target']);
const QUERY_ATTRIBUTE = 'url.query';

/** Key decisions remembered per key: attribute keys are few and repeat on every span. */
const MAX_CACHED_KEYS = 4096;

/** Lower case without separators: `X-Api-Key`, `api_key` and `apiKey` all become `apikey`. */
function compact(word: string): string {
  let out = '';
  for (let i = 0; i < word.length; i++) {
    const c = word.charCodeAt(i);
    if (c === 45 || c === 95) {
      continue; // '-' and '_'
    }
    out += c >= 65 && c <= 90 ? String.fromCharCode(c + 32) : word[i];
  }
  return out;
}

/**
 * Whether an attribute key (or a JSON or query key) names a secret: the whole key, its last `.`
 * segment, or a word suffix of that segment is in the list, compared without case and without
 * `-`/`_` (words start after `-`, `_`, or at a lower-to-upper case change). So `password` matches
 * `app.user.password`, `user_password`, `userPassword` and `http.request.header.x-password`, and
 * `token` matches `x-auth-token`, but not `prompt_tokens` or `tokenizer`. Each key is computed
 * once, then it is one Map lookup.
 */
export class KeyMatcher {
  private readonly keys: ReadonlySet<string>;
  private readonly cache = new Map<string, boolean>();

  constructor(keys: Iterable<string>) {
    this.keys = new Set([...keys].map(compact).filter((key) => key !== ''));
  }

  get size(): number {
    return this.keys.size;
  }

  matches(key: string): boolean {
    let hit = this.cache.get(key);
    if (hit === undefined) {
      hit = this.compute(key);
      if (this.cache.size >= MAX_CACHED_KEYS) {
        this.cache.clear();
      }
      this.cache.set(key, hit);
    }
    return hit;
  }

  private compute(key: string): boolean {
    if (this.keys.size === 0) {
      return false;
    }
    if (this.keys.has(compact(key))) {
      return true;
    }
    const segment = key.slice(key.lastIndexOf('.') + 1);
    for (let i = 0; i < segment.length; i++) {
      const c = segment.charCodeAt(i);
      const wordStart =
        i === 0 ||
        c === 45 ||
        c === 95 ||
        (c >= 65 && c <= 90 && isLowerOrDigit(segment.charCodeAt(i - 1)));
      if (wordStart && this.keys.has(compact(segment.slice(i)))) {
        return true;
      }
    }
    return false;
  }
}

function isLowerOrDigit(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 48 && c <= 57);
}

/** A value pattern: a cheap precheck that must pass before its regex runs, and the replacement. */
interface ValuePattern {
  readonly precheck: (value: string) => boolean;
  readonly apply: (value: string, replacement: string) => string;
}

const BEARER = /\b(bearer)\s+[A-Za-z0-9\-._~+/]{8,}=*/gi;
const JWT = /\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g;
const AWS_ACCESS_KEY = /\b(?:AKIA|ASIA)[A-Z0-9]{16}\b/g;
// To the END line, or to the end of the value when it was cut (a length limit, a truncated body).
const PRIVATE_KEY = /-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END[A-Z0-9 ]*PRIVATE KEY-----|$)/g;
const CARD_CANDIDATE = /(?<![\d.])\d(?:[ -]?\d){12,18}(?![\d.])/g;

function isRunChar(c: number): boolean {
  return (c >= 48 && c <= 57) || c === 32 || c === 45;
}

/**
 * Whether `value` has a run of at least 13 digits, spaces and dashes not breaking it: the precheck
 * of card numbers, without a regex. Such a run is at least 13 characters long, so it contains one
 * of every 12th character: only those are looked at, and the run around one is measured only when
 * it is a digit, a space or a dash. A user agent or a version list has digits, but no such run.
 */
function hasThirteenDigitRun(value: string): boolean {
  const length = value.length;
  let i = 0;
  while (i < length) {
    if (!isRunChar(value.charCodeAt(i))) {
      i += 12;
      continue;
    }
    let at = i;
    while (at > 0 && isRunChar(value.charCodeAt(at - 1))) {
      at--;
    }
    let digits = 0;
    for (; at < length; at++) {
      const c = value.charCodeAt(at);
      if (c >= 48 && c <= 57) {
        if (++digits >= 13) {
          return true;
        }
      } else if (c !== 32 && c !== 45) {
        break;
      }
    }
    // The next sampled position after this run.
    i = Math.max(i + 12, at + 1);
  }
  return false;
}

/**
 * A card number: 13 to 19 digits, Luhn-valid, first digit 2 to 6 (the issuer ranges of Visa,
 * Mastercard, Amex, Discover, JCB, Diners, UnionPay). The first-digit rule keeps millisecond
 * timestamps (`1718000000000`) and most numeric ids, which start with 1, unmasked.
 */
export function isCardNumber(candidate: string): boolean {
  let sum = 0;
  let count = 0;
  let double = false;
  for (let i = candidate.length - 1; i >= 0; i--) {
    const c = candidate.charCodeAt(i);
    if (c < 48 || c > 57) {
      continue;
    }
    let digit = c - 48;
    if (double) {
      digit *= 2;
      if (digit > 9) {
        digit -= 9;
      }
    }
    sum += digit;
    double = !double;
    count++;
  }
  const first = candidate.charCodeAt(0) - 48;
  return count >= 13 && count <= 19 && first >= 2 && first <= 6 && sum % 10 === 0;
}

const PATTERNS: Readonly<Record<BuiltinRedactionPattern, ValuePattern>> = {
  bearer: {
    precheck: (v) => v.includes('earer') || v.includes('EARER'),
    apply: (v, r) => v.replace(BEARER, (_match, word: string) => `${word} ${r}`),
  },
  jwt: {
    precheck: (v) => {
      const at = v.indexOf('eyJ');
      if (at < 0) {
        return false;
      }
      const dot = v.indexOf('.', at);
      return dot >= 0 && v.indexOf('.', dot + 1) >= 0;
    },
    apply: (v, r) => v.replace(JWT, r),
  },
  'aws-access-key': {
    precheck: (v) => v.includes('AKIA') || v.includes('ASIA'),
    apply: (v, r) => v.replace(AWS_ACCESS_KEY, r),
  },
  'private-key': {
    precheck: (v) => v.includes('-----BEGIN'),
    apply: (v, r) => v.replace(PRIVATE_KEY, r),
  },
  'card-number': {
    precheck: hasThirteenDigitRun,
    apply: (v, r) => v.replace(CARD_CANDIDATE, (match) => (isCardNumber(match) ? r : match)),
  },
};

/** A query parameter name as the application reads it (`+` and `%xx` decoded); as sent when malformed. */
function decodeName(name: string): string {
  if (name.indexOf('%') < 0 && name.indexOf('+') < 0) {
    return name;
  }
  try {
    return decodeURIComponent(name.replaceAll('+', ' '));
  } catch {
    return name;
  }
}

/** The shortest value a built-in pattern can match (a Luhn-valid 13-digit number). */
const SHORTEST_BUILTIN_MATCH = 13;

/** Redaction rules, compiled once (see {@link compileRedaction}). */
export interface RedactionRules {
  readonly keys: readonly string[];
  readonly queryParams: readonly string[];
  readonly patterns: ReadonlyArray<BuiltinRedactionPattern | RegExp>;
  readonly replacement: string;
}

/**
 * The compiled rules: a key check is a cached Map lookup, a URL attribute is parsed only when it
 * has a query, and the built-in value patterns run only on strings that pass their precheck
 * (`eyJ` and two dots for a JWT, 13 digits for a card number, ...). RegExps given by the user have
 * no precheck: each runs on every string value.
 */
export class Redactor {
  readonly replacement: string;
  private readonly keys: KeyMatcher;
  private readonly queryParams: KeyMatcher;
  private readonly builtins: readonly ValuePattern[];
  private readonly custom: readonly RegExp[];

  constructor(rules: RedactionRules) {
    this.replacement = rules.replacement;
    this.keys = new KeyMatcher(rules.keys);
    this.queryParams = new KeyMatcher(rules.queryParams);
    const names = new Set(rules.patterns.filter((p): p is BuiltinRedactionPattern => typeof p === 'string'));
    this.builtins = BUILTIN_REDACTION_PATTERNS.filter((name) => names.has(name)).map((name) => PATTERNS[name]);
    // A global copy: replace() must see every match, and lastIndex must not carry over between values.
    this.custom = rules.patterns
      .filter((p): p is RegExp => p instanceof RegExp)
      .map((p) => new RegExp(p.source, p.flags.includes('g') ? p.flags : `${p.flags}g`));
  }

  /** Whether the values of `key` are masked whatever they are. */
  isSensitiveKey(key: string): boolean {
    return this.keys.matches(key);
  }

  /** `value` with every pattern match replaced; the same string when nothing matched. */
  redactString(value: string): string {
    let out = value;
    if (value.length >= SHORTEST_BUILTIN_MATCH) {
      for (const pattern of this.builtins) {
        if (pattern.precheck(out)) {
          out = pattern.apply(out, this.replacement);
        }
      }
    }
    for (const pattern of this.custom) {
      pattern.lastIndex = 0;
      out = out.replace(pattern, this.replacement);
    }
    return out;
  }

  /** The value to record for `key`: masked, with its query parameters or pattern matches replaced, or `value` itself. */
  redactAttribute(key: string, value: AttributeValue | undefined): AttributeValue | undefined {
    if (value === undefined || value === null) {
      return value;
    }
    if (this.keys.matches(key)) {
      return Array.isArray(value) ? value.map(() => this.replacement) : this.replacement;
    }
    if (typeof value === 'string') {
      let out = value;
      if (URL_ATTRIBUTES.has(key)) {
        out = this.redactUrlQuery(out);
      } else if (key === QUERY_ATTRIBUTE) {
        out = this.redactQuery(out);
      }
      return this.redactString(out);
    }
    if (Array.isArray(value)) {
      let changed = false;
      const out = value.map((item) => {
        if (typeof item !== 'string') {
          return item;
        }
        const redacted = this.redactString(item);
        changed ||= redacted !== item;
        return redacted;
      });
      return changed ? (out as AttributeValue) : value;
    }
    return value;
  }

  /**
   * Redacts `attributes` in place, calling `set` for each value that changes (a live span's
   * `setAttribute`, or a plain assignment for event attributes). Returns how many changed.
   */
  redactAttributes(attributes: Attributes, set: (key: string, value: AttributeValue) => void): number {
    let changed = 0;
    for (const key in attributes) {
      const value = attributes[key];
      const redacted = this.redactAttribute(key, value);
      if (redacted !== value && redacted !== undefined) {
        set(key, redacted);
        changed++;
      }
    }
    return changed;
  }

  /** A URL (absolute, or a path with a query) with the listed parameters' values replaced; the rest kept as sent. */
  redactUrlQuery(url: string): string {
    const queryAt = url.indexOf('?');
    if (queryAt < 0 || this.queryParams.size === 0) {
      return url;
    }
    const hashAt = url.indexOf('#', queryAt);
    const query = hashAt < 0 ? url.slice(queryAt + 1) : url.slice(queryAt + 1, hashAt);
    const redacted = this.redactQuery(query);
    if (redacted === query) {
      return url;
    }
    return url.slice(0, queryAt + 1) + redacted + (hashAt < 0 ? '' : url.slice(hashAt));
  }

  /** A query string (`a=1&b=2`, also a form body) with the listed parameters' values replaced. */
  redactQuery(query: string): string {
    if (!query || this.queryParams.size === 0 || query.indexOf('=') < 0) {
      return query;
    }
    // One pass with indexOf, no split: the common query has nothing to mask and allocates nothing.
    let out: string | undefined;
    let copied = 0;
    let at = 0;
    while (at <= query.length) {
      let next = query.indexOf('&', at);
      if (next < 0) {
        next = query.length;
      }
      const eq = query.indexOf('=', at);
      if (eq > at && eq < next && this.queryParams.matches(decodeName(query.slice(at, eq)))) {
        const value = query.slice(eq + 1, next);
        // `REDACTED` is what the HTTP conventions write for signature parameters: already masked.
        if (value !== 'REDACTED' && value !== this.replacement) {
          out = (out ?? '') + query.slice(copied, eq + 1) + this.replacement;
          copied = next;
        }
      }
      at = next + 1;
    }
    return out === undefined ? query : out + query.slice(copied);
  }

  /**
   * A JSON-compatible value (a parsed body, a message payload) as JSON text, with the values of
   * sensitive keys replaced at any depth. Returns undefined when it cannot be serialized.
   */
  stringifyMasked(value: unknown): string | undefined {
    try {
      const text = JSON.stringify(value, (key, item: unknown) => (key !== '' && this.keys.matches(key) ? this.replacement : item));
      return typeof text === 'string' ? text : undefined;
    } catch {
      return undefined;
    }
  }
}

/** The rules of `redact: true` (the default). */
export const DEFAULT_REDACTION_RULES: RedactionRules = Object.freeze({
  keys: DEFAULT_REDACTED_KEYS,
  queryParams: DEFAULT_REDACTED_QUERY_PARAMS,
  patterns: BUILTIN_REDACTION_PATTERNS,
  replacement: DEFAULT_REDACTION_REPLACEMENT,
});
