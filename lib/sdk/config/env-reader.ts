import type { Attributes } from '@opentelemetry/api';
import type { SamplerName } from '../../interfaces/otel-module-options.interface.js';
import {
  envInvalidBoolean,
  envInvalidHeader,
  envInvalidInteger,
  envInvalidResourceAttributes,
  envInvalidSamplerArg,
  envInvalidUrl,
  envPropagatorNoneCombined,
  envSeveralExporters,
  envUnknownSampler,
  envUnsupportedExporters,
  envUnsupportedPropagators,
} from '../../otel.messages.js';
import { isHttpUrl } from './guards.js';
import {
  EXPORTER_NAMES,
  PROPAGATOR_NAMES,
  SAMPLER_NAMES,
  SDK_DEFAULTS,
  type ExporterName,
  type KnownPropagatorName,
} from './sdk-config.js';

/** Reads `OTEL_*` variables; every problem becomes a warning and the variable counts as unset. */
export class EnvReader {
  readonly warnings: string[] = [];

  constructor(private readonly env: NodeJS.ProcessEnv) {}

  warn(message: string): void {
    if (!this.warnings.includes(message)) {
      this.warnings.push(message);
    }
  }

  /** Trimmed value; empty counts as unset, as the specification asks. */
  string(name: string): string | undefined {
    const value = this.env[name]?.trim();
    return value ? value : undefined;
  }

  /** Comma-separated, lower-cased (enum values are case-insensitive), blanks dropped. */
  list(name: string): string[] | undefined {
    const raw = this.string(name);
    if (raw === undefined) {
      return undefined;
    }
    const values = raw
      .split(',')
      .map((v) => v.trim().toLowerCase())
      .filter((v) => v !== '');
    return values.length > 0 ? [...new Set(values)] : undefined;
  }

  boolean(name: string): boolean | undefined {
    const raw = this.string(name);
    if (raw === undefined) {
      return undefined;
    }
    const lower = raw.toLowerCase();
    if (lower !== 'true' && lower !== 'false') {
      this.warn(envInvalidBoolean(name, raw));
    }
    return lower === 'true';
  }

  /** An integer >= `minimum`, else a warning naming `fallback` (what is used instead). */
  integer(name: string, minimum: 0 | 1, fallback: string): number | undefined {
    const raw = this.string(name);
    if (raw === undefined) {
      return undefined;
    }
    const value = Number(raw);
    if (!Number.isSafeInteger(value) || value < minimum) {
      this.warn(envInvalidInteger(name, raw, minimum, fallback));
      return undefined;
    }
    return value;
  }

  /**
   * The first of `variables` (highest priority first) that holds a valid integer, else `fallback`.
   * Read from the lowest priority up, so a warning can name the value actually used instead.
   */
  firstInteger(variables: readonly string[], minimum: 0 | 1, fallback: number): number {
    return variables.reduceRight<number>(
      (used, variable) => this.integer(variable, minimum, String(used)) ?? used,
      fallback,
    );
  }

  exporterName(): ExporterName {
    const raw = this.string('OTEL_TRACES_EXPORTER') ?? '';
    const values = this.list('OTEL_TRACES_EXPORTER') ?? [];
    const supported = values.filter((v): v is ExporterName => (EXPORTER_NAMES as readonly string[]).includes(v));
    const unsupported = values.filter((v) => !supported.includes(v as ExporterName));
    const used = supported[0] ?? 'otlp';
    if (unsupported.length > 0) {
      this.warn(envUnsupportedExporters(raw, unsupported, used));
    }
    if (supported.length > 1) {
      this.warn(envSeveralExporters(raw, used));
    }
    return used;
  }

  otlpTracesUrl(): string {
    const tracesEndpoint = this.string('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
    const endpoint = this.string('OTEL_EXPORTER_OTLP_ENDPOINT');
    const baseUrl = endpoint !== undefined && isHttpUrl(endpoint) ? appendTracesPath(endpoint) : undefined;
    const fallback = baseUrl ?? SDK_DEFAULTS.otlpTracesUrl;
    if (tracesEndpoint !== undefined) {
      if (isHttpUrl(tracesEndpoint)) {
        return tracesEndpoint;
      }
      this.warn(envInvalidUrl('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', tracesEndpoint, fallback));
    }
    if (endpoint !== undefined && baseUrl === undefined) {
      this.warn(envInvalidUrl('OTEL_EXPORTER_OTLP_ENDPOINT', endpoint, SDK_DEFAULTS.otlpTracesUrl));
    }
    return fallback;
  }

  /** `k=v,k2=v2`, percent-decoded. A bad entry is skipped (the others still authenticate). */
  headers(name: string): Record<string, string> {
    const raw = this.string(name);
    const headers: Record<string, string> = {};
    if (raw === undefined) {
      return headers;
    }
    raw.split(',').forEach((entry, index) => {
      if (entry.trim() === '') {
        return;
      }
      // Split at the first '=' only: base64 credentials end in unencoded '=' padding.
      const at = entry.indexOf('=');
      const rawKey = at > 0 ? entry.slice(0, at).trim() : undefined;
      try {
        if (rawKey === undefined || rawKey === '') {
          throw new Error('no key');
        }
        headers[decodeURIComponent(rawKey)] = decodeURIComponent(entry.slice(at + 1).trim());
      } catch {
        this.warn(envInvalidHeader(name, index, rawKey));
      }
    });
    return headers;
  }

  /** `OTEL_RESOURCE_ATTRIBUTES`; on any error the whole value is discarded, as the spec asks. */
  resourceAttributes(): Attributes {
    const raw = this.string('OTEL_RESOURCE_ATTRIBUTES');
    const attributes: Attributes = {};
    if (raw === undefined) {
      return attributes;
    }
    for (const entry of raw.split(',')) {
      if (entry.trim() === '') {
        continue;
      }
      const parts = entry.split('=');
      const key = parts[0]?.trim() ?? '';
      let decodedKey: string;
      let decodedValue: string;
      try {
        if (parts.length !== 2 || key === '') {
          throw new Error('not key=value');
        }
        decodedKey = decodeURIComponent(key);
        decodedValue = decodeURIComponent((parts[1] ?? '').trim());
      } catch {
        this.warn(envInvalidResourceAttributes(entry.trim()));
        return {};
      }
      attributes[decodedKey] = decodedValue;
    }
    return attributes;
  }

  samplerName(): SamplerName {
    const raw = this.string('OTEL_TRACES_SAMPLER');
    if (raw === undefined) {
      return SDK_DEFAULTS.sampler;
    }
    const name = raw.toLowerCase();
    if ((SAMPLER_NAMES as readonly string[]).includes(name)) {
      return name as SamplerName;
    }
    this.warn(envUnknownSampler(raw, SAMPLER_NAMES, SDK_DEFAULTS.sampler));
    return SDK_DEFAULTS.sampler;
  }

  samplerRatio(sampler: SamplerName): number {
    const raw = this.string('OTEL_TRACES_SAMPLER_ARG');
    if (raw === undefined) {
      return SDK_DEFAULTS.samplerRatio;
    }
    const ratio = Number(raw);
    if (!Number.isFinite(ratio) || ratio < 0 || ratio > 1) {
      this.warn(envInvalidSamplerArg(raw, sampler));
      return SDK_DEFAULTS.samplerRatio;
    }
    return ratio;
  }

  propagatorNames(): KnownPropagatorName[] {
    const values = this.list('OTEL_PROPAGATORS');
    if (values === undefined) {
      return [...SDK_DEFAULTS.propagators];
    }
    const raw = this.string('OTEL_PROPAGATORS') ?? '';
    // 'none' anywhere wins, as in the JavaScript SDK.
    if (values.includes('none')) {
      if (values.length > 1) {
        this.warn(envPropagatorNoneCombined(raw));
      }
      return [];
    }
    const known = values.filter((v): v is KnownPropagatorName => (PROPAGATOR_NAMES as readonly string[]).includes(v));
    const unknown = values.filter((v) => !known.includes(v as KnownPropagatorName));
    // Nothing usable left: the variable meant "propagate", so keep the default rather than nothing.
    const used = known.length > 0 ? known : [...SDK_DEFAULTS.propagators];
    if (unknown.length > 0) {
      this.warn(envUnsupportedPropagators(raw, unknown, used));
    }
    return used;
  }
}

/** `http://collector:4318` and `http://collector:4318/` both become `http://collector:4318/v1/traces`. */
function appendTracesPath(base: string): string {
  const url = new URL(base);
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/v1/traces`;
  return url.toString();
}

