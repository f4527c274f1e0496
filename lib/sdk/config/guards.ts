import type { AttributeValue } from '@opentelemetry/api';
import type { Sampler, SpanExporter } from '@opentelemetry/sdk-trace';

/** Shape checks shared by validation (which rejects) and resolution (which picks a branch). */

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function hasMethods(value: object, ...names: string[]): boolean {
  return names.every((name) => typeof (value as Record<string, unknown>)[name] === 'function');
}

export function isSpanExporter(value: object): value is SpanExporter {
  return hasMethods(value, 'export');
}

export function isSampler(value: object): value is Sampler {
  return hasMethods(value, 'shouldSample');
}

export function isNonEmptyString(value: unknown): value is string {
  return typeof value === 'string' && value.trim() !== '';
}

export function isPositiveInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0;
}

export function isAttributeValue(value: unknown): value is AttributeValue {
  const primitive = (v: unknown): boolean =>
    typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && !Number.isNaN(v));
  if (Array.isArray(value)) {
    // Homogeneous arrays only (null/undefined holes are allowed by the API).
    const types = new Set(value.filter((v) => v !== null && v !== undefined).map((v) => typeof v));
    return types.size <= 1 && value.every((v) => v === null || v === undefined || primitive(v));
  }
  return primitive(value);
}

export function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '';
  } catch {
    return false;
  }
}
