import { propagation, ROOT_CONTEXT, type Context } from '@opentelemetry/api';
import { W3CBaggagePropagator } from '@opentelemetry/core';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  applyInboundBaggagePolicy,
  compileBaggagePolicy,
  filterBaggage,
  installBaggagePolicy,
  uninstallBaggagePolicy,
} from './baggage-policy.js';
import { extractContext } from './carrier.js';

const members = (ctx: Context): Record<string, string> =>
  Object.fromEntries((propagation.getBaggage(ctx)?.getAllEntries() ?? []).map(([key, entry]) => [key, entry.value]));

const withBaggage = (entries: Record<string, string>): Context =>
  propagation.setBaggage(
    ROOT_CONTEXT,
    propagation.createBaggage(Object.fromEntries(Object.entries(entries).map(([key, value]) => [key, { value }]))),
  );

describe('inbound baggage policy', () => {
  const owner = {};
  beforeAll(() => {
    propagation.disable();
    propagation.setGlobalPropagator(new W3CBaggagePropagator());
  });
  afterEach(() => uninstallBaggagePolicy(owner));

  it('accepts every member by default, within the W3C limits', () => {
    const ctx = withBaggage({ 'tenant.id': 't1', 'user.id': 'u1' });
    expect(applyInboundBaggagePolicy(ctx, 'http')).toBe(ctx);
  });

  it('drops all inbound baggage with inbound: drop', () => {
    installBaggagePolicy(compileBaggagePolicy({ inbound: 'drop' }), owner);
    const ctx = applyInboundBaggagePolicy(withBaggage({ 'tenant.id': 't1' }), 'nats');
    expect(propagation.getBaggage(ctx)).toBeUndefined();
  });

  it('keeps only allowed keys: exact names, * wildcards and RegExps', () => {
    installBaggagePolicy(compileBaggagePolicy({ inbound: { allow: ['tenant.id', 'user.*', /^saga\.\w+$/] } }), owner);
    const ctx = applyInboundBaggagePolicy(
      withBaggage({ 'tenant.id': 't', 'tenant.idx': 'no', 'user.id': 'u', 'user.role': 'r', 'saga.id': 's', 'saga.a.b': 'no', secret: 'x' }),
      'http',
    );
    expect(members(ctx)).toEqual({ 'tenant.id': 't', 'user.id': 'u', 'user.role': 'r', 'saga.id': 's' });
  });

  it('a channel rule wins over inbound for that channel only', () => {
    installBaggagePolicy(compileBaggagePolicy({ inbound: 'accept', channels: { http: 'drop' } }), owner);
    const ctx = withBaggage({ 'tenant.id': 't' });
    expect(propagation.getBaggage(applyInboundBaggagePolicy(ctx, 'http'))).toBeUndefined();
    expect(members(applyInboundBaggagePolicy(ctx, 'kafka'))).toEqual({ 'tenant.id': 't' });
    expect(members(applyInboundBaggagePolicy(ctx))).toEqual({ 'tenant.id': 't' });
  });

  it('keeps at most maxMembers members, in the order sent', () => {
    const policy = compileBaggagePolicy({ maxMembers: 2 });
    const baggage = propagation.createBaggage({ a: { value: '1' }, b: { value: '2' }, c: { value: '3' } });
    expect(Object.keys(Object.fromEntries(filterBaggage(baggage, policy)!.getAllEntries()))).toEqual(['a', 'b']);
  });

  it('keeps members up to maxBytes of their key=value text, skipping one that does not fit', () => {
    const policy = compileBaggagePolicy({ maxBytes: 12 });
    // "a=12345" is 7 bytes, ",b=1234567" would make 17, ",c=1" makes 11.
    const baggage = propagation.createBaggage({ a: { value: '12345' }, b: { value: '1234567' }, c: { value: '1' } });
    expect(Object.keys(Object.fromEntries(filterBaggage(baggage, policy)!.getAllEntries()))).toEqual(['a', 'c']);
  });

  it('applies in extractContext with the channel, and to other extracts through the registered propagator with the inbound rule', async () => {
    const { ValidatingPropagator } = await import('./carrier.js');
    propagation.disable();
    propagation.setGlobalPropagator(new ValidatingPropagator(new W3CBaggagePropagator()));
    installBaggagePolicy(compileBaggagePolicy({ inbound: { allow: ['tenant.id'] }, channels: { grpc: 'accept' } }), owner);
    const headers = { baggage: 'tenant.id=t1,secret=s3cr3t' };
    expect(members(extractContext(headers, undefined, undefined, 'http'))).toEqual({ 'tenant.id': 't1' });
    expect(members(extractContext(headers, undefined, undefined, 'grpc'))).toEqual({ 'tenant.id': 't1', secret: 's3cr3t' });
    // An instrumentation's own extract (no channel known): the inbound rule.
    const other = propagation.extract(ROOT_CONTEXT, headers);
    expect(members(other)).toEqual({ 'tenant.id': 't1' });
    propagation.disable();
    propagation.setGlobalPropagator(new W3CBaggagePropagator());
  });

  it('never filters baggage the application sets itself', () => {
    installBaggagePolicy(compileBaggagePolicy({ inbound: 'drop' }), owner);
    const ctx = withBaggage({ 'tenant.id': 't' });
    // Outbound: inject writes the context's baggage as it is; the policy is applied on extract only.
    const carrier: Record<string, string> = {};
    propagation.inject(ctx, carrier);
    expect(carrier.baggage).toBe('tenant.id=t');
  });

  it('uninstall by another owner leaves the policy in place', () => {
    installBaggagePolicy(compileBaggagePolicy({ inbound: 'drop' }), owner);
    uninstallBaggagePolicy({});
    expect(propagation.getBaggage(applyInboundBaggagePolicy(withBaggage({ a: '1' }), 'http'))).toBeUndefined();
  });
});
