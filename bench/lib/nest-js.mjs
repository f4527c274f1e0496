// Nest decorators applied by hand, so that the benchmark apps stay plain .mjs (no build step).
import 'reflect-metadata';

/** Applies method decorators to `Class.prototype[method]`. */
export function decorateMethod(Class, method, decorators) {
  const proto = Class.prototype;
  const descriptor = Object.getOwnPropertyDescriptor(proto, method);
  const result = Reflect.decorate(decorators, proto, method, descriptor) ?? descriptor;
  Object.defineProperty(proto, method, result);
}

/** Applies parameter decorators: `params[i]` is the decorator of argument `i` (or undefined). */
export function decorateParams(Class, method, params) {
  params.forEach((decorator, index) => decorator?.(Class.prototype, method, index));
}

/** Applies class decorators (last first, as TypeScript does). */
export function decorateClass(Class, decorators) {
  return Reflect.decorate(decorators, Class);
}

/** A little per-request work: a small object built, summed and serialised by the framework. */
export function work(id) {
  const items = [];
  let total = 0;
  for (let i = 0; i < 10; i++) {
    const price = ((i + 1) * 7919 + id.length * 31) % 1000;
    total += price;
    items.push({ sku: `sku-${id}-${i}`, qty: (i % 3) + 1, price });
  }
  return { id, items, total, status: total % 2 === 0 ? 'open' : 'paid' };
}
