import { propagation, type Baggage, type BaggageEntry, type Context } from '@opentelemetry/api';
import { processGlobal } from '../utils/process-global.js';
import { diagLimited } from '../utils/diag-limited.js';
import { inboundBaggageTrimmed } from '../otel.messages.js';

/**
 * Where a remote context enters the process. `http` is the HTTP server, the others are the traced
 * transport servers (and the gRPC server).
 */
export type BaggageChannel = 'http' | 'grpc' | 'nats' | 'rmq' | 'kafka' | 'tcp' | 'redis' | 'mqtt';

/**
 * What a channel keeps of the baggage a caller sends:
 * - `'accept'`: every member (within `maxMembers` / `maxBytes`);
 * - `'drop'`: none: the request runs with no inbound baggage;
 * - `{ allow }`: only members whose key is listed; `*` in a key matches any run of characters
 *   (`'user.*'`), a RegExp is tested against the key.
 */
export type InboundBaggageRule = 'accept' | 'drop' | { allow: Array<string | RegExp> };

/** The `baggage` option of `OtelModule.forRoot()`. */
export interface BaggagePolicyOptions {
  /** The rule for every channel without its own entry in `channels`. Default `'accept'`. */
  inbound?: InboundBaggageRule;
  /** Per-channel rules, e.g. `{ http: 'drop', nats: 'accept' }`, over `inbound`. Default none. */
  channels?: Partial<Record<BaggageChannel, InboundBaggageRule>>;
  /**
   * Members kept at most, in the order the caller sent them; the rest are dropped. Default 64
   * (what the W3C Baggage specification requires every platform to accept).
   */
  maxMembers?: number;
  /**
   * Bytes kept at most, counted as the `key=value;metadata` text of each kept member as it would
   * be sent; members beyond it are dropped. Default 8192 (the W3C Baggage limit).
   */
  maxBytes?: number;
}

export const BAGGAGE_CHANNELS: readonly BaggageChannel[] = ['http', 'grpc', 'nats', 'rmq', 'kafka', 'tcp', 'redis', 'mqtt'];
export const BAGGAGE_DEFAULTS = { maxMembers: 64, maxBytes: 8192 } as const;

type KeyTest = (key: string) => boolean;

interface CompiledRule {
  /** undefined: every key; null: none. */
  readonly allows: KeyTest | undefined | null;
}

/** A policy ready to apply: each rule's key test compiled once. */
export interface CompiledBaggagePolicy {
  readonly fallback: CompiledRule;
  readonly channels: ReadonlyMap<string, CompiledRule>;
  readonly maxMembers: number;
  readonly maxBytes: number;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
}

function compileRule(rule: InboundBaggageRule): CompiledRule {
  if (rule === 'accept') {
    return { allows: undefined };
  }
  if (rule === 'drop') {
    return { allows: null };
  }
  const exact = new Set<string>();
  const patterns: RegExp[] = [];
  for (const entry of rule.allow) {
    if (entry instanceof RegExp) {
      patterns.push(entry);
    } else if (entry.includes('*')) {
      patterns.push(new RegExp(`^${entry.split('*').map(escapeRegExp).join('.*')}$`));
    } else {
      exact.add(entry);
    }
  }
  return {
    allows: (key) => {
      if (exact.has(key)) {
        return true;
      }
      for (const pattern of patterns) {
        pattern.lastIndex = 0;
        if (pattern.test(key)) {
          return true;
        }
      }
      return false;
    },
  };
}

/** Compiles validated options (see validate-options) once, at bootstrap. */
export function compileBaggagePolicy(options: BaggagePolicyOptions = {}): CompiledBaggagePolicy {
  const fallback = compileRule(options.inbound ?? 'accept');
  const channels = new Map<string, CompiledRule>();
  for (const [channel, rule] of Object.entries(options.channels ?? {})) {
    if (rule !== undefined) {
      channels.set(channel, compileRule(rule));
    }
  }
  const maxMembers = options.maxMembers ?? BAGGAGE_DEFAULTS.maxMembers;
  const maxBytes = options.maxBytes ?? BAGGAGE_DEFAULTS.maxBytes;
  return { fallback, channels, maxMembers, maxBytes };
}

/** The size of a member as the W3C baggage propagator writes it (its encoding, approximately). */
function memberBytes(key: string, entry: BaggageEntry): number {
  let size = key.length + 1 + encodeURIComponent(entry.value).length;
  if (entry.metadata !== undefined) {
    size += 1 + entry.metadata.toString().length;
  }
  return size;
}

/**
 * `baggage` as `policy` lets it into the process through `channel`: the same object when nothing
 * is removed, `undefined` when nothing is left.
 */
export function filterBaggage(baggage: Baggage, policy: CompiledBaggagePolicy, channel?: string): Baggage | undefined {
  const rule = (channel !== undefined ? policy.channels.get(channel) : undefined) ?? policy.fallback;
  if (rule.allows === null) {
    return undefined;
  }
  const entries = baggage.getAllEntries();
  const kept: Array<[string, BaggageEntry]> = [];
  let bytes = 0;
  let overLimit = false;
  for (const [key, entry] of entries) {
    if (rule.allows !== undefined && !rule.allows(key)) {
      continue;
    }
    const size = memberBytes(key, entry) + (kept.length > 0 ? 1 : 0);
    if (kept.length >= policy.maxMembers || bytes + size > policy.maxBytes) {
      overLimit = true;
      continue;
    }
    bytes += size;
    kept.push([key, entry]);
  }
  if (kept.length === entries.length) {
    return baggage;
  }
  if (overLimit) {
    // What the rule filters out is the policy working; a caller over the limits is worth a note.
    diagLimited('info', inboundBaggageTrimmed(channel ?? 'an instrumentation', entries.length, kept.length));
  }
  return kept.length === 0 ? undefined : propagation.createBaggage(Object.fromEntries(kept));
}

const slot = processGlobal<{ policy?: CompiledBaggagePolicy; owner?: object }>('baggage-policy', () => ({}));

/** Makes `policy` the process's inbound policy; `owner` is what may remove it again. */
export function installBaggagePolicy(policy: CompiledBaggagePolicy, owner: object): void {
  slot.policy = policy;
  slot.owner = owner;
}

/** Removes the policy `owner` installed (none if another one was installed since). */
export function uninstallBaggagePolicy(owner: object): void {
  if (slot.owner === owner) {
    slot.policy = undefined;
    slot.owner = undefined;
  }
}

/**
 * `ctx`, a context just extracted from a caller's message or request, with its baggage trimmed to
 * what the installed policy lets in through `channel`. Without a policy (no `OtelModule` in the
 * process) the W3C limits still apply. Never throws.
 */
export function applyInboundBaggagePolicy(ctx: Context, channel?: string): Context {
  const baggage = propagation.getBaggage(ctx);
  if (baggage === undefined) {
    return ctx;
  }
  try {
    const kept = filterBaggage(baggage, slot.policy ?? DEFAULT_POLICY, channel);
    if (kept === baggage) {
      return ctx;
    }
    return kept === undefined ? propagation.deleteBaggage(ctx) : propagation.setBaggage(ctx, kept);
  } catch {
    // A baggage implementation that throws: keep none of it rather than all of it.
    return propagation.deleteBaggage(ctx);
  }
}

const DEFAULT_POLICY = compileBaggagePolicy();
