import { OtelConfigError, unknownOptions } from '../../otel.messages.js';

/** Words people type for an option that has another name. */
const OPTION_ALIASES: Readonly<Record<string, string>> = {
  name: 'serviceName',
  service: 'serviceName',
  version: 'serviceVersion',
  resource: 'resourceAttributes',
  attributes: 'resourceAttributes',
  propagator: 'propagators',
  processors: 'spanProcessors',
  endpoint: 'url',
  timeout: 'timeoutMillis',
};

/**
 * Throws {@link OtelConfigError} naming the keys of `value` that are not in `known`, each with the
 * option probably meant (see {@link suggestOption}). `where` is the option path as shown to the user,
 * e.g. `'"sampler"'`.
 */
export function rejectUnknownKeys(value: Record<string, unknown>, known: readonly string[], where: string): void {
  const unknown = Object.keys(value).filter((key) => !known.includes(key));
  if (unknown.length === 0) {
    return;
  }
  const suggestions = new Map<string, string>();
  for (const key of unknown) {
    const guess = suggestOption(key, known);
    if (guess !== undefined) {
      suggestions.set(key, guess);
    }
  }
  throw new OtelConfigError(unknownOptions(where, unknown, known, suggestions));
}

/** The option probably meant by an unknown `key`: known aliases, case slips, distance-2 typos. */
export function suggestOption(key: string, known: readonly string[]): string | undefined {
  const alias = OPTION_ALIASES[key];
  if (alias !== undefined && known.includes(alias)) {
    return alias;
  }
  const lower = key.toLowerCase();
  let best: { name: string; distance: number } | undefined;
  for (const name of known) {
    const distance = name.toLowerCase() === lower ? 0 : editDistance(lower, name.toLowerCase());
    if (distance <= 2 && (best === undefined || distance < best.distance)) {
      best = { name, distance };
    }
  }
  return best?.name;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + cost);
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}
