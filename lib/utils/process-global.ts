/**
 * Process-wide state of otel-nest, kept on `globalThis` under `Symbol.for('otel-nest.<name>')`
 * rather than in module variables. A process can load this package twice: its CommonJS build
 * through `require` and its ESM build through `import` (an ESM file in a CommonJS app, a preload
 * of the other format), or two installed versions. Every copy then shares the same SDK, the same
 * instrumentation registrations and the same bookkeeping, as every copy of `@opentelemetry/api`
 * shares its globals.
 */
export function processGlobal<T>(name: string, create: () => T): T {
  const slots = globalThis as unknown as Record<symbol, T | undefined>;
  const key = Symbol.for(`otel-nest.${name}`);
  return (slots[key] ??= create());
}
