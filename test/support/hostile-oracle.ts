/**
 * What the hostile-input tests expect, written from the W3C specifications (Trace Context Level 2,
 * Baggage) and the limits otel-nest documents, independently of lib/propagation: which parent an
 * application must continue given the headers it received, and whether headers it sends are
 * well-formed. Nothing here imports lib/, so a parser bug there cannot hide behind the same bug here.
 */

/** Headers as an application received them: name and raw value (string, bytes, array, other). */
export type DeliveredHeaders = ReadonlyArray<readonly [string, unknown]>;

export const LIMITS = {
  traceparent: 512,
  tracestate: 32 * 513 + 31,
  /** What may be sent: a longer valid tracestate is shortened. */
  tracestateSend: 512,
  baggageBytes: 8192,
  baggageMembers: 180,
  baggageMemberBytes: 4096,
} as const;

/** Visible ASCII, space and tab only. */
export const isSafeText = (text: string): boolean => /^[\t\x20-\x7e]*$/.test(text);

const asText = (value: unknown): string | undefined => {
  if (typeof value === 'string') {
    return value;
  }
  if (value instanceof Uint8Array) {
    return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('latin1');
  }
  return undefined;
};

/**
 * Every value of `field` (names compared case-insensitively, an array is a repeated header).
 * `undefined` when absent; `null` when some value is not text or bytes (then the field is unusable).
 */
export function fieldValues(headers: DeliveredHeaders, field: string): string[] | null | undefined {
  const values: string[] = [];
  let unusable = false;
  for (const [name, raw] of headers) {
    if (name.toLowerCase() !== field) {
      continue;
    }
    for (const item of Array.isArray(raw) ? raw : [raw]) {
      const text = asText(item);
      if (text === undefined) {
        unusable = true;
      } else {
        values.push(text);
      }
    }
  }
  if (unusable) {
    return null;
  }
  return values.length === 0 ? undefined : values;
}

/** A field's values combined as HTTP combines a repeated list header, or undefined (absent, unusable, unsafe, too long). */
function combinedField(headers: DeliveredHeaders, field: 'tracestate' | 'baggage'): string | undefined {
  const values = fieldValues(headers, field);
  if (!values) {
    return undefined;
  }
  const combined = values.join(',');
  const limit = field === 'baggage' ? LIMITS.baggageBytes : LIMITS.tracestate;
  return combined.length <= limit && isSafeText(combined) ? combined : undefined;
}

export interface ExpectedParent {
  traceId: string;
  spanId: string;
  sampled: boolean;
  random: boolean;
}

const OWS = /^[ \t]+|[ \t]+$/g;

/** The parent a valid `traceparent` names (W3C Trace Context Level 2), or undefined. */
export function parseTraceparentOracle(value: string): ExpectedParent | undefined {
  if (value.length > LIMITS.traceparent || !isSafeText(value)) {
    return undefined;
  }
  const text = value.replace(OWS, '');
  const match = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(.*)$/.exec(text);
  if (!match) {
    return undefined;
  }
  const [, version, traceId, spanId, flags, rest] = match as unknown as [string, string, string, string, string, string];
  if (version === 'ff' || (version === '00' && rest !== '') || (rest !== '' && !rest.startsWith('-'))) {
    return undefined;
  }
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) {
    return undefined;
  }
  const bits = Number.parseInt(flags, 16);
  return { traceId, spanId, sampled: (bits & 1) === 1, random: (bits & 2) === 2 };
}

/** The parent an application must continue: exactly one `traceparent`, valid. */
export function expectedParent(headers: DeliveredHeaders): ExpectedParent | undefined {
  const values = fieldValues(headers, 'traceparent');
  return values && values.length === 1 ? parseTraceparentOracle(values[0]!) : undefined;
}

/** Every 32-hex-digit run in the received traceparent values: a fresh root must not reuse one. */
export function traceIdCandidates(headers: DeliveredHeaders): Set<string> {
  const found = new Set<string>();
  for (const [name, raw] of headers) {
    if (name.toLowerCase() !== 'traceparent') {
      continue;
    }
    for (const item of Array.isArray(raw) ? raw : [raw]) {
      const text = asText(item) ?? (typeof item === 'object' && item !== null ? JSON.stringify(item) : String(item));
      for (const match of text.matchAll(/[0-9a-fA-F]{32}/g)) {
        found.add(match[0].toLowerCase());
      }
    }
  }
  return found;
}

// tracestate (Level 2)
const STATE_KEY = /^(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})$/;
const STATE_VALUE = /^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;

/** The members of a valid tracestate, or undefined when it must be discarded as a whole. */
export function parseTracestateOracle(value: string): string[] | undefined {
  const members: string[] = [];
  const keys = new Set<string>();
  for (const raw of value.split(',')) {
    const member = raw.replace(OWS, '');
    if (member === '') {
      continue;
    }
    const eq = member.indexOf('=');
    const key = eq > 0 ? member.slice(0, eq) : '';
    if (eq <= 0 || !STATE_KEY.test(key) || !STATE_VALUE.test(member.slice(eq + 1)) || keys.has(key)) {
      return undefined;
    }
    keys.add(key);
    members.push(member);
  }
  return members.length > 0 && members.length <= 32 ? members : undefined;
}

/** The received tracestate members an application may forward, or undefined. */
export function inboundTracestate(headers: DeliveredHeaders): string[] | undefined {
  const combined = combinedField(headers, 'tracestate');
  return combined === undefined ? undefined : parseTracestateOracle(combined);
}

// baggage
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAGGAGE_VALUE = /^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*$/;

export interface BaggageMemberOracle {
  key: string;
  /** Percent-decoded as UTF-8 (invalid sequences as U+FFFD). */
  value: string;
  /** Valid properties, normalized (`key` or `key=value`). */
  properties: string[];
}

function decodePercent(value: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const hexPair = value.slice(i + 1, i + 3);
    if (value[i] === '%' && /^[0-9a-fA-F]{2}$/.test(hexPair)) {
      bytes.push(Number.parseInt(hexPair, 16));
      i += 2;
    } else {
      bytes.push(value.charCodeAt(i));
    }
  }
  return new TextDecoder().decode(Uint8Array.from(bytes));
}

function parseProperty(raw: string): string | undefined | null {
  const text = raw.replace(OWS, '');
  if (text === '') {
    return null;
  }
  const eq = text.indexOf('=');
  if (eq === -1) {
    return TOKEN.test(text) ? text : undefined;
  }
  const key = text.slice(0, eq).replace(OWS, '');
  const value = text.slice(eq + 1).replace(OWS, '');
  return TOKEN.test(key) && BAGGAGE_VALUE.test(value) ? `${key}=${value}` : undefined;
}

/** One baggage list member, or undefined when it is not valid (its properties may be). */
function parseMember(raw: string, strictProperties: boolean): BaggageMemberOracle | undefined {
  const [pair, ...rawProperties] = raw.split(';');
  const eq = pair!.indexOf('=');
  if (eq === -1) {
    return undefined;
  }
  const key = pair!.slice(0, eq).replace(OWS, '');
  const value = pair!.slice(eq + 1).replace(OWS, '');
  if (!TOKEN.test(key) || !BAGGAGE_VALUE.test(value)) {
    return undefined;
  }
  const properties: string[] = [];
  for (const rawProperty of rawProperties) {
    const property = parseProperty(rawProperty);
    if (property === undefined || (property === null && strictProperties)) {
      if (strictProperties) {
        return undefined;
      }
      continue;
    }
    if (property !== null) {
      properties.push(property);
    }
  }
  return { key, value: decodePercent(value), properties };
}

export interface InboundBaggage {
  /** Valid members in order (the first 180 valid ones; members over 4096 bytes left out). */
  members: BaggageMemberOracle[];
  /** Small, nothing repeated: every valid member must come out again, with its value. */
  mustForwardAll: boolean;
}

/** What of the received baggage an application may forward; undefined when the header is unusable as a whole. */
export function inboundBaggage(headers: DeliveredHeaders): InboundBaggage | undefined {
  const combined = combinedField(headers, 'baggage');
  if (combined === undefined) {
    return undefined;
  }
  const members: BaggageMemberOracle[] = [];
  for (const raw of combined.split(',')) {
    if (members.length >= LIMITS.baggageMembers) {
      break;
    }
    if (raw.replace(OWS, '') === '' || Buffer.byteLength(raw) > LIMITS.baggageMemberBytes) {
      continue;
    }
    const member = parseMember(raw, false);
    if (member) {
      members.push(member);
    }
  }
  const keys = new Set(members.map((member) => member.key));
  return { members, mustForwardAll: combined.length <= 1024 && keys.size === members.length };
}

// ---------------------------------------------------------------------------------------------
// Checks of what an application sends

export interface OutgoingExpectation {
  /** Trace id and span id the outgoing `traceparent` must carry (span id: undefined when any is fine). */
  traceId: string;
  spanId?: string;
  sampled: boolean;
  random: boolean;
  /** Members the outgoing tracestate may carry (undefined: none must be sent). */
  tracestate?: string[];
  /** The inbound baggage (undefined: no baggage must be sent). */
  baggage?: InboundBaggage;
}

/**
 * Violations in headers an application sent (an outgoing fetch, a reply): every value text of
 * safe characters, exactly one Level 2 `traceparent` naming the expected trace, tracestate and
 * baggage within their limits, well-formed, and carrying only what came in valid.
 */
export function checkOutgoingHeaders(
  where: string,
  headers: ReadonlyArray<readonly [string, unknown]>,
  expected: OutgoingExpectation,
  options: { ignoreValueSafetyOf?: ReadonlySet<string> } = {},
): string[] {
  const problems: string[] = [];
  for (const [name, value] of headers) {
    const text = asText(value);
    if (!isSafeText(name) || /[\s:]/.test(name)) {
      problems.push(`${where}: header name ${JSON.stringify(name)} is not a token`);
    }
    if (options.ignoreValueSafetyOf?.has(name.toLowerCase())) {
      continue;
    }
    if (text === undefined) {
      problems.push(`${where}: header ${name} is not text (${typeof value})`);
    } else if (!isSafeText(text)) {
      problems.push(`${where}: header ${name} has a control or non-ASCII character: ${JSON.stringify(text.slice(0, 200))}`);
    }
  }

  const traceparents = fieldValues(headers, 'traceparent') ?? [];
  if (traceparents.length !== 1) {
    problems.push(`${where}: ${traceparents.length} traceparent headers (expected exactly one)`);
  } else {
    const tp = traceparents[0]!;
    const match = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(tp);
    const parsed = parseTraceparentOracle(tp);
    if (!match || !parsed) {
      problems.push(`${where}: traceparent ${JSON.stringify(tp)} does not match the Level 2 grammar for version 00`);
    } else {
      const flags = Number.parseInt(match[3]!, 16);
      if (flags & ~0x03) {
        problems.push(`${where}: traceparent ${tp} sets unknown flags`);
      }
      if (parsed.traceId !== expected.traceId) {
        problems.push(`${where}: traceparent ${tp} has trace id ${parsed.traceId}, expected ${expected.traceId}`);
      }
      if (expected.spanId !== undefined && parsed.spanId !== expected.spanId) {
        problems.push(`${where}: traceparent ${tp} has span id ${parsed.spanId}, expected ${expected.spanId}`);
      }
      if (parsed.sampled !== expected.sampled) {
        problems.push(`${where}: traceparent ${tp} sampled=${parsed.sampled}, expected ${expected.sampled}`);
      }
      if (parsed.random !== expected.random) {
        problems.push(`${where}: traceparent ${tp} random=${parsed.random}, expected ${expected.random}`);
      }
    }
  }

  const tracestates = fieldValues(headers, 'tracestate') ?? [];
  if (tracestates.length > 1) {
    problems.push(`${where}: ${tracestates.length} tracestate headers`);
  }
  for (const ts of tracestates) {
    const members = parseTracestateOracle(ts);
    if (ts === '') {
      problems.push(`${where}: empty tracestate header`);
    } else if (ts.length > LIMITS.tracestateSend) {
      problems.push(`${where}: tracestate of ${ts.length} characters (limit ${LIMITS.tracestateSend})`);
    } else if (!members) {
      problems.push(`${where}: tracestate ${JSON.stringify(ts.slice(0, 200))} is not valid`);
    } else if (!expected.tracestate) {
      problems.push(`${where}: tracestate ${JSON.stringify(ts.slice(0, 200))} sent, but none came in valid with a valid parent`);
    } else {
      const allowed = expected.tracestate;
      let cursor = 0;
      for (const member of members) {
        const at = allowed.indexOf(member, cursor);
        if (at === -1) {
          problems.push(`${where}: tracestate member ${JSON.stringify(member.slice(0, 100))} did not come in (or is out of order)`);
          break;
        }
        cursor = at + 1;
      }
      const inboundLength = allowed.join(',').length;
      if (inboundLength <= LIMITS.tracestateSend && members.join(',') !== allowed.join(',')) {
        problems.push(`${where}: tracestate ${JSON.stringify(ts)} differs from the valid inbound ${JSON.stringify(allowed.join(','))}`);
      }
    }
  }
  if (tracestates.length === 0 && expected.tracestate && expected.tracestate.join(',').length <= LIMITS.tracestateSend) {
    problems.push(`${where}: the valid inbound tracestate ${JSON.stringify(expected.tracestate.join(','))} was not forwarded`);
  }

  const baggages = fieldValues(headers, 'baggage') ?? [];
  if (baggages.length > 1) {
    problems.push(`${where}: ${baggages.length} baggage headers`);
  }
  const sent = new Map<string, BaggageMemberOracle>();
  for (const bg of baggages) {
    const bytes = Buffer.byteLength(bg);
    if (bg === '') {
      problems.push(`${where}: empty baggage header`);
      continue;
    }
    if (bytes > LIMITS.baggageBytes) {
      problems.push(`${where}: baggage of ${bytes} bytes (limit ${LIMITS.baggageBytes})`);
    }
    const rawMembers = bg.split(',');
    if (rawMembers.length > LIMITS.baggageMembers) {
      problems.push(`${where}: baggage with ${rawMembers.length} members (limit ${LIMITS.baggageMembers})`);
    }
    for (const raw of rawMembers) {
      const member = parseMember(raw, true);
      if (!member) {
        problems.push(`${where}: baggage member ${JSON.stringify(raw.slice(0, 200))} is not valid W3C baggage`);
        continue;
      }
      sent.set(member.key, member);
    }
  }
  if (sent.size > 0 && !expected.baggage) {
    problems.push(`${where}: baggage ${JSON.stringify(baggages[0]!.slice(0, 200))} sent, but none came in usable`);
  }
  if (expected.baggage) {
    const inbound = new Map<string, BaggageMemberOracle>();
    for (const member of expected.baggage.members) {
      inbound.set(member.key, member);
    }
    for (const [key, member] of sent) {
      const source = inbound.get(key);
      if (!source) {
        problems.push(`${where}: baggage key ${JSON.stringify(key)} did not come in as a valid member`);
        continue;
      }
      if (source.value !== member.value) {
        problems.push(`${where}: baggage ${key} is ${JSON.stringify(member.value.slice(0, 80))}, came in as ${JSON.stringify(source.value.slice(0, 80))}`);
      }
      for (const property of member.properties) {
        if (!source.properties.includes(property)) {
          problems.push(`${where}: baggage ${key} property ${JSON.stringify(property)} did not come in valid`);
        }
      }
    }
    if (expected.baggage.mustForwardAll) {
      for (const key of inbound.keys()) {
        if (!sent.has(key)) {
          problems.push(`${where}: valid baggage member ${JSON.stringify(key)} was not forwarded`);
        }
      }
    }
  }
  return problems;
}
