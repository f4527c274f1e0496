import type { Redactor } from '../redaction/redaction-rules.js';

/**
 * Header allow-lists and body capture, shared by the HTTP server and the messaging transports:
 * what to record is decided here; redaction still runs on the span before export.
 */

/** An allow-list of header names: exact names, `*` wildcards, `!` exclusions. */
export interface HeaderAllowList {
  /** Nothing is captured. */
  readonly empty: boolean;
  /**
   * The names to read one by one, when the list has neither wildcards nor exclusions (the header
   * object is then never iterated); undefined otherwise.
   */
  readonly exact: readonly string[] | undefined;
  /** Whether a (lower-case) header name is captured. */
  matches(name: string): boolean;
}

const NOTHING: HeaderAllowList = Object.freeze({ empty: true, exact: [], matches: () => false });

function globToRegExp(glob: string): RegExp {
  const escaped = glob.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
  return new RegExp(`^${escaped}$`);
}

/**
 * Compiles an allow-list: names are lower-cased; `'x-*'` matches every name starting with `x-`;
 * `'!x-internal-*'` excludes what it matches, whatever its place in the list. Decisions are cached
 * per name (header names repeat).
 */
export function compileHeaderAllowList(list: readonly string[] | undefined): HeaderAllowList {
  const names = (list ?? []).map((name) => name.trim().toLowerCase()).filter((name) => name !== '' && name !== '!');
  const include = names.filter((name) => !name.startsWith('!'));
  const exclude = names.filter((name) => name.startsWith('!')).map((name) => name.slice(1));
  if (include.length === 0) {
    return NOTHING;
  }
  if (exclude.length === 0 && include.every((name) => !name.includes('*'))) {
    const exact = [...new Set(include)];
    const set = new Set(exact);
    return { empty: false, exact, matches: (name) => set.has(name.toLowerCase()) };
  }
  const toTest = (patterns: string[]) => {
    const plain = new Set(patterns.filter((p) => !p.includes('*')));
    const globs = patterns.filter((p) => p.includes('*')).map(globToRegExp);
    return (name: string) => plain.has(name) || globs.some((glob) => glob.test(name));
  };
  const included = toTest(include);
  const excluded = toTest(exclude);
  const cache = new Map<string, boolean>();
  return {
    empty: false,
    exact: undefined,
    matches(name) {
      const lower = name.toLowerCase();
      let hit = cache.get(lower);
      if (hit === undefined) {
        hit = included(lower) && !excluded(lower);
        if (cache.size >= 1024) {
          cache.clear();
        }
        cache.set(lower, hit);
      }
      return hit;
    },
  };
}

/** A header value as an attribute: always a string array, as the HTTP conventions record headers. */
export function headerValue(value: unknown): string[] | undefined {
  if (value === undefined || value === null) {
    return undefined;
  }
  if (Array.isArray(value)) {
    return value.map(String);
  }
  if (value instanceof Uint8Array) {
    return [Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('utf8')];
  }
  return [String(value)];
}

/** Content types (`application/json`, `text/*`), without parameters. */
export interface ContentTypeMatcher {
  matches(contentType: string | undefined): boolean;
}

export function compileContentTypes(types: readonly string[]): ContentTypeMatcher {
  const exact = new Set<string>();
  const prefixes: string[] = [];
  for (const type of types) {
    const lower = type.trim().toLowerCase();
    if (lower.endsWith('/*')) {
      prefixes.push(lower.slice(0, -1));
    } else if (lower === '*') {
      prefixes.push('');
    } else {
      exact.add(lower);
    }
  }
  return {
    matches(contentType) {
      if (!contentType) {
        return false;
      }
      const semi = contentType.indexOf(';');
      const bare = (semi < 0 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
      return exact.has(bare) || prefixes.some((prefix) => bare.startsWith(prefix));
    },
  };
}

/** The default text content types whose bodies may be captured. */
export const DEFAULT_BODY_CONTENT_TYPES: readonly string[] = ['application/json', 'text/*', 'application/x-www-form-urlencoded'];
export const DEFAULT_BODY_MAX_BYTES = 2048;

/** A captured body: its text (at most the byte budget) and whether it was cut. */
export interface CapturedBody {
  readonly text: string;
  readonly truncated: boolean;
}

/** Binary payloads are never captured: Buffers, typed arrays, ArrayBuffers, streams, Blobs. */
export function isBinaryPayload(value: unknown): boolean {
  if (value instanceof Uint8Array || ArrayBuffer.isView(value) || value instanceof ArrayBuffer) {
    return true;
  }
  if (value !== null && typeof value === 'object') {
    const candidate = value as { pipe?: unknown; getStream?: unknown; arrayBuffer?: unknown; type?: unknown };
    // Node streams, Nest's StreamableFile, Blob.
    return typeof candidate.pipe === 'function' || typeof candidate.getStream === 'function' || typeof candidate.arrayBuffer === 'function';
  }
  return false;
}

/**
 * `text` cut to at most `maxBytes` UTF-8 bytes, on a character boundary (a surrogate pair is
 * never split). Cheap for the common case: a string of at most `maxBytes / 3` characters fits.
 */
export function truncateUtf8(text: string, maxBytes: number): CapturedBody {
  if (text.length * 3 <= maxBytes || Buffer.byteLength(text, 'utf8') <= maxBytes) {
    return { text, truncated: false };
  }
  let bytes = 0;
  let end = 0;
  while (end < text.length) {
    const code = text.codePointAt(end)!;
    const size = code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
    if (bytes + size > maxBytes) {
      break;
    }
    bytes += size;
    end += code >= 0x10000 ? 2 : 1;
  }
  return { text: text.slice(0, end), truncated: true };
}

/**
 * The text to record of a body: `undefined` for nothing or binary; a string as it is (a form
 * body's sensitive fields masked); anything else as JSON with the values of sensitive keys masked
 * at any depth (`{"password":"[REDACTED]"}`). `redactor` undefined (redaction off) masks nothing.
 * Cut to `maxBytes`.
 */
export function captureBodyText(
  value: unknown,
  maxBytes: number,
  redactor: Redactor | undefined,
  form = false,
): CapturedBody | undefined {
  if (value === undefined || value === null || isBinaryPayload(value)) {
    return undefined;
  }
  let text: string | undefined;
  if (typeof value === 'string') {
    text = !redactor ? value : form ? redactor.redactQuery(value) : maskJsonText(value, redactor);
  } else if (typeof value === 'object' || typeof value === 'number' || typeof value === 'boolean') {
    text = redactor ? redactor.stringifyMasked(value) : safeStringify(value);
  }
  if (text === undefined || text === '') {
    return undefined;
  }
  return truncateUtf8(text, maxBytes);
}

function safeStringify(value: unknown): string | undefined {
  try {
    const text = JSON.stringify(value);
    return typeof text === 'string' ? text : undefined;
  } catch {
    return undefined;
  }
}

/** JSON text with its sensitive keys masked; other text (or invalid JSON) as it is. */
function maskJsonText(text: string, redactor: Redactor): string {
  const first = text.charCodeAt(0);
  if (first !== 123 && first !== 91) {
    return text; // Neither '{' nor '['.
  }
  try {
    return redactor.stringifyMasked(JSON.parse(text)) ?? text;
  } catch {
    return text;
  }
}
