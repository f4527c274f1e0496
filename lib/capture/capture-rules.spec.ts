import { describe, expect, it } from 'vitest';
import { captureBodyText, compileContentTypes, compileHeaderAllowList, isBinaryPayload, truncateUtf8 } from './capture-rules.js';
import { DEFAULT_REDACTION_RULES, Redactor } from '../redaction/redaction-rules.js';

describe('header allow-lists', () => {
  it('reads exact names directly, without iterating the headers', () => {
    const list = compileHeaderAllowList(['X-Request-Id', 'x-tenant']);
    expect(list.exact).toEqual(['x-request-id', 'x-tenant']);
    expect(list.matches('X-TENANT')).toBe(true);
  });

  it('matches globs, and exclusions win whatever their place', () => {
    const list = compileHeaderAllowList(['!x-internal-*', 'x-*', 'authorization']);
    expect(list.exact).toBeUndefined();
    expect(['x-tenant', 'x-internal-cost', 'authorization', 'cookie'].filter((name) => list.matches(name))).toEqual(['x-tenant', 'authorization']);
    expect(compileHeaderAllowList([]).empty).toBe(true);
  });
});

describe('bodies', () => {
  const redactor = new Redactor(DEFAULT_REDACTION_RULES);

  it('matches content types without parameters, with type/* wildcards', () => {
    const types = compileContentTypes(['application/json', 'text/*']);
    expect(types.matches('application/json; charset=utf-8')).toBe(true);
    expect(types.matches('text/plain')).toBe(true);
    expect(types.matches('application/octet-stream')).toBe(false);
    expect(types.matches(undefined)).toBe(false);
  });

  it('cuts on a character boundary, never inside a surrogate pair', () => {
    expect(truncateUtf8('aé😀b', 4)).toEqual({ text: 'aé', truncated: true });
    expect(truncateUtf8('aé😀b', 7)).toEqual({ text: 'aé😀', truncated: true });
    expect(truncateUtf8('short', 2048)).toEqual({ text: 'short', truncated: false });
  });

  it('masks sensitive keys of objects, JSON text and form bodies; never binary', () => {
    expect(captureBodyText({ user: 'ada', password: 'x' }, 100, redactor)?.text).toBe('{"user":"ada","password":"[REDACTED]"}');
    expect(captureBodyText('{"token":"t","a":1}', 100, redactor)?.text).toBe('{"token":"[REDACTED]","a":1}');
    expect(captureBodyText('user=ada&password=x', 100, redactor, true)?.text).toBe('user=ada&password=[REDACTED]');
    expect(captureBodyText({ password: 'x' }, 100, undefined)?.text).toBe('{"password":"x"}');
    expect(captureBodyText(Buffer.from('{}'), 100, redactor)).toBeUndefined();
    expect(isBinaryPayload(new Uint8Array(2))).toBe(true);
  });
});
