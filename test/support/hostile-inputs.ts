import fc from 'fast-check';

/**
 * Hostile trace-context headers for the end-to-end property tests (test/hostile-input.e2e-spec.ts)
 * and `npm run fuzz`: `traceparent`, `tracestate` and `baggage` values with control bytes, CR/LF,
 * NUL, DEL, non-ASCII, oversized (over the limits and just under), repeated, spelled in other
 * cases, as bytes, numbers, arrays and AMQP tables, with percent-encoding errors, valid-looking
 * values with one bad character, and valid values mixed in so that continuation is exercised.
 *
 * An input is a list of headers as a peer would write them; each channel turns it into what its
 * wire can carry (`headerLines`, `driverHeaderPairs`, `amqpHeaders`, `kafkaHeaders`). Generation
 * is seeded: the same seed and count give the same inputs.
 */

/** A header value as a peer hands it to its driver. */
export type RawValue = string | Buffer | number | boolean | null | RawValue[] | { [key: string]: RawValue };

export interface HostileHeader {
  name: string;
  value: RawValue;
}

export interface HostileInput {
  id: number;
  /** `message` (request-reply) or `event`; HTTP inputs are all requests. */
  kind: 'message' | 'event';
  headers: HostileHeader[];
  /** What went into it, for reports. */
  tags: string[];
}

// ---------------------------------------------------------------------------------------------
// Building blocks

const HEX = [...'0123456789abcdef'];
const hex = (length: number): fc.Arbitrary<string> =>
  fc.string({ unit: fc.constantFrom(...HEX), minLength: length, maxLength: length });
const nonZeroHex = (length: number): fc.Arbitrary<string> => hex(length).filter((text) => !/^0+$/.test(text));

/** Characters that must never travel in a header: C0 controls, CR, LF, NUL, DEL. */
const CONTROL = fc.oneof(
  fc.constantFrom('\r', '\n', '\r\n', '\u0000', '\u007f', '\u0001', '\u000b', '\u000c', '\u001b', '\u001f'),
  fc.integer({ min: 0, max: 0x1f }).filter((code) => code !== 0x09).map((code) => String.fromCharCode(code)),
);
/** Non-ASCII: Latin-1, a multi-byte character, a line separator, an emoji, a lone surrogate's replacement. */
const NON_ASCII = fc.constantFrom('é', '\u00a0', '\u00ff', '\u0080', '\u2028', '\u200b', '日本', '😀', '\ufeff', '\ufffd');
const BAD_CHAR = fc.oneof(CONTROL, NON_ASCII);

/** `text` with `insert` at a position chosen by `at` (0..1). */
const insertAt = (text: string, insert: string, at: number): string => {
  const index = Math.floor(at * (text.length + 1));
  return text.slice(0, index) + insert + text.slice(index);
};
const replaceAt = (text: string, replacement: string, at: number): string => {
  if (text.length === 0) {
    return replacement;
  }
  const index = Math.min(text.length - 1, Math.floor(at * text.length));
  return text.slice(0, index) + replacement + text.slice(index + 1);
};
const position = fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true });

/** Tagged value: the text and the names of the generators that made it. */
interface Tagged {
  text: string;
  tags: string[];
}
const tagged = (tag: string) => (text: string): Tagged => ({ text, tags: [tag] });

/** One valid-looking value spoiled by a bad character, an upper-case digit, a cut or an extension. */
function spoiled(valid: fc.Arbitrary<string>, prefix: string): fc.Arbitrary<Tagged> {
  return fc.oneof(
    fc.tuple(valid, BAD_CHAR, position).map(([text, bad, at]) => ({ text: insertAt(text, bad, at), tags: [`${prefix}:bad-char`] })),
    fc.tuple(valid, BAD_CHAR, position).map(([text, bad, at]) => ({ text: replaceAt(text, bad, at), tags: [`${prefix}:replaced-char`] })),
    fc.tuple(valid, position).map(([text, at]) => ({ text: text.slice(0, Math.floor(at * text.length)), tags: [`${prefix}:cut`] })),
    fc.tuple(valid, fc.constantFrom(' ', '\t', ' \t')).map(([text, ws]) => ({ text: `${ws}${text}${ws}`, tags: [`${prefix}:ows`] })),
    fc.tuple(valid, fc.constantFrom('%', '%G1', '%C3', '%FF%FE', '%0D%0A', '%00', '%E2%80')).map(([text, bad]) => ({
      text: text + bad,
      tags: [`${prefix}:percent`],
    })),
  );
}

/** Filler of a given size, for values over and just under a limit. */
const repeatTo = (unit: string, length: number): string => unit.repeat(Math.max(0, Math.ceil(length / unit.length))).slice(0, Math.max(0, length));

// ---------------------------------------------------------------------------------------------
// traceparent

export const validTraceparent: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(nonZeroHex(32), nonZeroHex(16), fc.constantFrom('00', '01', '02', '03')).map(([t, s, f]) => `00-${t}-${s}-${f}`) },
  // A later version: parsed by its first 55 characters when what follows starts with `-`.
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom('01', '7f', 'cc', 'fe'), nonZeroHex(32), nonZeroHex(16), fc.constantFrom('01', '03', '09'), fc.constantFrom('', '-xyz', '-00-ab'))
      .map(([v, t, s, f, rest]) => `${v}-${t}-${s}-${f}${rest}`),
  },
);

const traceparent: fc.Arbitrary<Tagged> = fc.oneof(
  { weight: 5, arbitrary: validTraceparent.map(tagged('tp:valid')) },
  { weight: 5, arbitrary: spoiled(validTraceparent, 'tp') },
  {
    weight: 3,
    arbitrary: fc.oneof(
      fc.tuple(nonZeroHex(32), nonZeroHex(16)).map(([t, s]) => `00-${t.toUpperCase()}-${s}-01`),
      fc.tuple(nonZeroHex(16)).map(([s]) => `00-${'0'.repeat(32)}-${s}-01`),
      fc.tuple(nonZeroHex(32)).map(([t]) => `00-${t}-${'0'.repeat(16)}-01`),
      fc.tuple(nonZeroHex(32), nonZeroHex(16)).map(([t, s]) => `ff-${t}-${s}-01`),
      fc.tuple(nonZeroHex(32), nonZeroHex(16)).map(([t, s]) => `00-${t}-${s}-01-extra`),
      fc.tuple(nonZeroHex(32), nonZeroHex(16)).map(([t, s]) => `00-${t}-${s}-1`),
      fc.tuple(nonZeroHex(32), nonZeroHex(16)).map(([t, s]) => `00_${t}_${s}_01`),
      fc.tuple(nonZeroHex(32), nonZeroHex(16)).map(([t, s]) => `00%2D${t}%2D${s}%2D01`),
      fc.tuple(nonZeroHex(32), nonZeroHex(16)).map(([t, s]) => `cc-${t}-${s}-01x`),
      fc.constantFrom('', ' ', '-', '00', 'null', 'undefined', '00-', '[object Object]'),
    ).map(tagged('tp:invalid')),
  },
  {
    weight: 1,
    arbitrary: fc.oneof(
      fc.tuple(validTraceparent, fc.integer({ min: 513, max: 20_000 })).map(([tp, length]) => tp + repeatTo('-ab', length)),
      fc.integer({ min: 56, max: 600 }).map((length) => repeatTo('0af7651916cd43dd8448eb211c80319c-', length)),
    ).map(tagged('tp:oversized')),
  },
);

// ---------------------------------------------------------------------------------------------
// tracestate

const simpleKey = fc
  .tuple(fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz'), fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789_-*/'), maxLength: 12 }))
  .map(([first, rest]) => first + rest);
const tenantKey = fc.tuple(fc.string({ unit: fc.constantFrom(...'abcdef0123456789'), minLength: 1, maxLength: 8 }), simpleKey).map(([t, s]) => `${t}@${s.slice(0, 14)}`);
const stateValueChar = fc.constantFrom(...'abcXYZ019!"#$%&\'()*+-./:;<>?@[\\]^_`{|}~');
const stateValue = fc
  .tuple(fc.string({ unit: fc.oneof(stateValueChar, fc.constant(' ')), maxLength: 20 }), stateValueChar)
  .map(([body, last]) => body + last);
const stateMember = fc.tuple(fc.oneof(simpleKey, tenantKey), stateValue).map(([key, value]) => `${key}=${value}`);
/** Valid members with distinct keys. */
const stateMembers = (min: number, max: number): fc.Arbitrary<string[]> =>
  fc.uniqueArray(stateMember, { minLength: min, maxLength: max, selector: (member) => member.slice(0, member.indexOf('=')) });

export const validTracestate: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: stateMembers(1, 6).map((members) => members.join(',')) },
  { weight: 1, arbitrary: stateMembers(1, 4).map((members) => members.join(' ,\t')) },
  { weight: 1, arbitrary: stateMembers(2, 4).map((members) => members.join(',,')) },
);

const tracestate: fc.Arbitrary<Tagged> = fc.oneof(
  { weight: 4, arbitrary: validTracestate.map(tagged('ts:valid')) },
  { weight: 4, arbitrary: spoiled(validTracestate, 'ts') },
  {
    weight: 3,
    arbitrary: fc.oneof(
      stateMembers(1, 3).map((members) => [...members, 'Upper=1'].join(',')),
      stateMembers(1, 3).map((members) => [...members, 'k=a=b'].join(',')),
      stateMembers(1, 3).map((members) => [...members, 'k=trailing '].join(',')),
      stateMember.map((member) => `${member},${member}`),
      stateMembers(33, 40).map((members) => members.join(',')),
      fc.constantFrom('', ',', ',,,', ' ', '=', 'k=', '=v', 'k'),
    ).map(tagged('ts:invalid')),
  },
  {
    weight: 2,
    arbitrary: fc.oneof(
      // Valid, over 512 characters: shortened before it is sent.
      fc.integer({ min: 3, max: 32 }).map((count) =>
        Array.from({ length: count }, (_, i) => `k${i}=${repeatTo('v', 200)}`).join(','),
      ),
      // Valid, just under 512: two members of 258 and 239 to 251 characters.
      fc.integer({ min: 500, max: 512 }).map((length) => `a=${repeatTo('x', 256)},b=${repeatTo('y', length - 261)}`),
      fc.integer({ min: 16_448, max: 40_000 }).map((length) => repeatTo('k=v,', length)),
    ).map(tagged('ts:large')),
  },
);

// ---------------------------------------------------------------------------------------------
// baggage

const TCHAR = [...'!#$%&\'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'];
const BAGGAGE_OCTET = [...'!#$%&\'()*+-./0123456789:<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`abcdefghijklmnopqrstuvwxyz{|}~'];
const token = fc.string({ unit: fc.constantFrom(...TCHAR), minLength: 1, maxLength: 12 });
const baggageValue = fc.oneof(
  fc.string({ unit: fc.constantFrom(...BAGGAGE_OCTET), maxLength: 16 }),
  fc.string({ unit: 'grapheme', maxLength: 6 }).map((text) => encodeURIComponent(text)),
);
const property = fc.oneof(token, fc.tuple(token, baggageValue).map(([k, v]) => `${k}=${v}`));
const baggageMember = fc
  .tuple(token, baggageValue, fc.array(property, { maxLength: 3 }), fc.constantFrom('', ' ', '\t'))
  .map(([key, value, properties, ws]) => `${ws}${key}${ws}=${ws}${value}${properties.map((p) => `${ws};${ws}${p}`).join('')}${ws}`);

export const validBaggage: fc.Arbitrary<string> = fc.array(baggageMember, { minLength: 1, maxLength: 8 }).map((members) => members.join(','));

const baggage: fc.Arbitrary<Tagged> = fc.oneof(
  { weight: 4, arbitrary: validBaggage.map(tagged('bg:valid')) },
  { weight: 4, arbitrary: spoiled(validBaggage, 'bg') },
  {
    weight: 4,
    arbitrary: fc.oneof(
      // Properties that are not W3C: the defects the layer fixes.
      fc.tuple(validBaggage, fc.constantFrom(';;;;', ';p\u0001', ';p=\r\nInjected: 1', ';bad key', ';=v', ';p=v v', ';p\u0000', ';é')).map(
        ([valid, props]) => `k=v${props},${valid}`,
      ),
      fc.tuple(validBaggage, fc.constantFrom('%', '%zz', '%C3', '%FF%FE', '%E2%82', '%%%', '%0D%0A', '%00')).map(([valid, bad]) => `${valid},p=${bad}`),
      fc.tuple(validBaggage, fc.constantFrom('bad key=1', '=1', 'novalue', 'k=a b', 'k="x"', 'k=a\\b', 'k=a,', ',,,')).map(([valid, bad]) => `${bad},${valid}`),
      fc.constantFrom('', ' ', ',', ';', '=', 'k=v;', 'k=v;;;;', 'a=b;;;;'),
    ).map(tagged('bg:invalid')),
  },
  {
    weight: 2,
    arbitrary: fc.oneof(
      // Over 8192 bytes: ignored as a whole.
      fc.integer({ min: 8193, max: 14_000 }).map((length) => `big=${repeatTo('x', length - 4)}`),
      fc.integer({ min: 8193, max: 12_000 }).map((length) => repeatTo('k=v,', length)),
      // Just under: members of at most 4000 bytes, 8000 to 8192 bytes in all.
      fc.integer({ min: 8000, max: 8192 }).map((length) => {
        const a = `a=${repeatTo('x', 3988)}`;
        const b = `b=${repeatTo('y', 3988)}`;
        return `${a},${b},c=${repeatTo('z', length - a.length - b.length - 4)}`;
      }),
      // A member over 4096 bytes next to a small one.
      fc.constant(`huge=${repeatTo('z', 4200)},small=1`),
      // More than 180 members.
      fc.integer({ min: 181, max: 260 }).map((count) => Array.from({ length: count }, (_, i) => `m${i}=${i}`).join(',')),
    ).map(tagged('bg:large')),
  },
);

// ---------------------------------------------------------------------------------------------
// Representation: how a value goes out (string, bytes, number, array, table, ...)

const caseVariant = (name: string): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 6, arbitrary: fc.constant(name) },
    { weight: 2, arbitrary: fc.constant(name[0]!.toUpperCase() + name.slice(1)) },
    { weight: 1, arbitrary: fc.constant(name.toUpperCase()) },
    { weight: 1, arbitrary: fc.array(fc.boolean(), { minLength: name.length, maxLength: name.length }).map((up) => [...name].map((c, i) => (up[i] ? c.toUpperCase() : c)).join('')) },
  );

type Represented = { value: RawValue; tags: string[] };

function represented(value: Tagged): fc.Arbitrary<Represented> {
  const as = (raw: RawValue, tag: string): Represented => ({ value: raw, tags: [...value.tags, tag] });
  const weighted = (weight: number, arbitrary: fc.Arbitrary<Represented>): fc.WeightedArbitrary<Represented> => ({ weight, arbitrary });
  const otherType = fc.oneof(
    fc.integer().map((n): RawValue => n),
    // Within what AMQP can encode (amqplib writes an integral double as int64).
    fc.double({ min: -1e12, max: 1e12, noNaN: true }).map((n): RawValue => n),
    fc.boolean().map((b): RawValue => b),
    fc.constant<RawValue>(null),
    fc.constant<RawValue>({ traceparent: value.text }),
    fc.constant<RawValue>([[value.text]]),
    fc.constant<RawValue>([]),
  );
  return fc.oneof(
    weighted(12, fc.constant<Represented>({ value: value.text, tags: value.tags })),
    weighted(2, fc.constant(as(Buffer.from(value.text, 'utf8'), 'as:utf8-bytes'))),
    weighted(1, fc.constant(as(Buffer.from(value.text, 'latin1'), 'as:latin1-bytes'))),
    weighted(1, fc.uint8Array({ minLength: 0, maxLength: 80 }).map((bytes): Represented => ({ value: Buffer.from(bytes), tags: ['as:random-bytes'] }))),
    weighted(1, fc.constant(as([value.text], 'as:array-of-one'))),
    weighted(1, fc.constant(as([value.text, value.text], 'as:array-twice'))),
    weighted(1, otherType.map((other): Represented => ({ value: other, tags: ['as:other-type'] }))),
  );
}

/** 0 to 3 occurrences of one field, each in a case variant and a representation. */
function occurrences(name: string, values: fc.Arbitrary<Tagged>, weights: [number, number, number, number]): fc.Arbitrary<{ headers: HostileHeader[]; tags: string[] }> {
  const one = fc.tuple(caseVariant(name), values.chain(represented)).map(([headerName, v]) => ({ header: { name: headerName, value: v.value }, tags: v.tags }));
  return fc
    .oneof(
      { weight: weights[0], arbitrary: fc.constant([]) },
      { weight: weights[1], arbitrary: fc.array(one, { minLength: 1, maxLength: 1 }) },
      { weight: weights[2], arbitrary: fc.array(one, { minLength: 2, maxLength: 2 }) },
      { weight: weights[3], arbitrary: fc.array(one, { minLength: 3, maxLength: 3 }) },
    )
    .map((list) => ({
      headers: list.map((item) => item.header),
      tags: [...list.flatMap((item) => item.tags), ...(list.length > 1 ? [`${name}:x${list.length}`] : [])],
    }));
}

/** Headers that are not trace context, with hostile bytes of their own (they must not matter). */
const noise: fc.Arbitrary<HostileHeader[]> = fc.array(
  fc.tuple(fc.constantFrom('x-noise', 'x-request-id', 'Content-Language'), fc.oneof(fc.string({ maxLength: 20 }), BAD_CHAR)).map(([name, value]) => ({ name, value })),
  { maxLength: 2 },
);

/** A fully valid set: one traceparent, maybe a tracestate and a baggage, all valid. */
const validSet: fc.Arbitrary<{ headers: HostileHeader[]; tags: string[] }> = fc
  .tuple(validTraceparent, fc.option(validTracestate, { nil: undefined }), fc.option(validBaggage, { nil: undefined }))
  .map(([tp, ts, bg]) => ({
    headers: [
      { name: 'traceparent', value: tp },
      ...(ts === undefined ? [] : [{ name: 'tracestate', value: ts }]),
      ...(bg === undefined ? [] : [{ name: 'baggage', value: bg }]),
    ],
    tags: ['all-valid'],
  }));

/** A hostile set: any number of each field, in any case and representation, plus noise. */
const hostileSet: fc.Arbitrary<{ headers: HostileHeader[]; tags: string[] }> = fc
  .tuple(
    occurrences('traceparent', traceparent, [2, 8, 2, 1]),
    occurrences('tracestate', tracestate, [4, 6, 1, 1]),
    occurrences('baggage', baggage, [3, 7, 2, 1]),
    noise,
    fc.boolean(),
  )
  .map(([tp, ts, bg, extra, shuffle]) => {
    const headers = [...tp.headers, ...ts.headers, ...bg.headers, ...extra];
    return { headers: shuffle ? headers.reverse() : headers, tags: [...tp.tags, ...ts.tags, ...bg.tags] };
  });

/**
 * Inputs: a quarter fully valid (continuations), the rest hostile (where a valid traceparent
 * still turns up now and then, next to hostile tracestate and baggage). `eventShare`: roughly the
 * part sent as events (fast-check biases small integers, so a bit more in practice).
 */
export function hostileInputArbitrary(eventShare: number): fc.Arbitrary<Omit<HostileInput, 'id'>> {
  const eventWeight = Math.round(eventShare * 100);
  return fc
    .tuple(fc.oneof({ weight: 1, arbitrary: validSet }, { weight: 3, arbitrary: hostileSet }), fc.integer({ min: 0, max: 99 }))
    .map(([set, roll]) => ({ kind: roll < eventWeight ? 'event' : 'message', headers: set.headers, tags: set.tags }));
}

/**
 * `count` seeded inputs, ids `0..count-1`. `eventShare`: the part sent as events (no reply),
 * the rest request-reply. Same seed and count, same inputs.
 */
export function hostileInputs(count: number, seed: number, eventShare = 0.3): HostileInput[] {
  if (count <= 0) {
    return [];
  }
  return fc.sample(hostileInputArbitrary(eventShare), { seed, numRuns: count }).map((input, id) => ({ id, ...input }));
}

// ---------------------------------------------------------------------------------------------
// Wire representations

/** A value as text bytes on a line-based wire (HTTP, NATS): strings as UTF-8, bytes as they are. */
export function headerValueBytes(value: RawValue): Buffer[] {
  if (Array.isArray(value)) {
    return value.flatMap((item) => headerValueBytes(item));
  }
  if (Buffer.isBuffer(value)) {
    return [value];
  }
  if (value === null) {
    return [Buffer.alloc(0)];
  }
  if (typeof value === 'object') {
    return [Buffer.from(JSON.stringify(value), 'utf8')];
  }
  return [Buffer.from(String(value), 'utf8')];
}

/** `name: value` lines (CRLF-terminated) for HTTP and NATS header blocks; arrays become repeated lines. */
export function headerLines(headers: readonly HostileHeader[]): Buffer {
  const lines: Buffer[] = [];
  for (const header of headers) {
    for (const bytes of headerValueBytes(header.value)) {
      lines.push(Buffer.from(`${header.name}: `, 'latin1'), bytes, Buffer.from('\r\n'));
    }
  }
  return Buffer.concat(lines);
}

/** The values a NATS driver could send: strings without CR or LF (arrays: repeated headers). `undefined` when it cannot. */
export function driverHeaderPairs(headers: readonly HostileHeader[]): Array<[string, string]> | undefined {
  const pairs: Array<[string, string]> = [];
  for (const header of headers) {
    const values = Array.isArray(header.value) ? header.value : [header.value];
    for (const value of values) {
      if (typeof value !== 'string' || /[\r\n]/.test(value)) {
        return undefined;
      }
      pairs.push([header.name, value]);
    }
  }
  return pairs;
}

/** AMQP `properties.headers`: values as they are (amqplib encodes strings, bytes, numbers, arrays, tables); a repeated name becomes an array. */
export function amqpHeaders(headers: readonly HostileHeader[]): Record<string, unknown> {
  const table: Record<string, unknown> = {};
  for (const header of headers) {
    if (Object.hasOwn(table, header.name)) {
      const previous = table[header.name];
      table[header.name] = [...(Array.isArray(previous) ? previous : [previous]), header.value];
    } else {
      table[header.name] = header.value;
    }
  }
  return table;
}

/** Kafka record headers (kafkajs): strings and Buffers; a repeated key is an array (one record header per value). */
export function kafkaHeaders(headers: readonly HostileHeader[]): Record<string, string | Buffer | Array<string | Buffer>> {
  const out: Record<string, string | Buffer | Array<string | Buffer>> = {};
  const asKafka = (value: RawValue): Array<string | Buffer> => {
    if (Array.isArray(value)) {
      return value.flatMap(asKafka);
    }
    if (Buffer.isBuffer(value) || typeof value === 'string') {
      return [value];
    }
    return [value === null ? '' : typeof value === 'object' ? JSON.stringify(value) : String(value)];
  };
  for (const header of headers) {
    const values = asKafka(header.value);
    const previous = out[header.name];
    const all = previous === undefined ? values : [...(Array.isArray(previous) ? previous : [previous]), ...values];
    out[header.name] = all.length === 1 ? all[0]! : all;
  }
  return out;
}

/** A short printable description of an input, for failure reports (bytes escaped, long values cut). */
export function describeInput(input: HostileInput): string {
  const show = (value: RawValue): string => {
    if (Buffer.isBuffer(value)) {
      return `<bytes ${JSON.stringify(value.toString('latin1').slice(0, 120))}${value.length > 120 ? `…(${value.length})` : ''}>`;
    }
    if (typeof value === 'string') {
      return `${JSON.stringify(value.slice(0, 120))}${value.length > 120 ? `…(${value.length})` : ''}`;
    }
    if (Array.isArray(value)) {
      return `[${value.map(show).join(', ')}]`;
    }
    return JSON.stringify(value);
  };
  return `#${input.id} ${input.kind} {${input.headers.map((h) => `${h.name}: ${show(h.value)}`).join('; ')}} [${input.tags.join(' ')}]`;
}
