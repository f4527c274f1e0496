import { diag, DiagLogLevel } from '@opentelemetry/api';
import { afterEach, beforeEach } from 'vitest';

/**
 * Every `diag` error of each test in the calling `describe` (the SDK reports a second `end()` on a
 * span there, so asserting on these catches it). Installs the logger before each test and removes
 * it after; the array is emptied per test.
 */
export function recordDiagErrors(): string[] {
  const errors: string[] = [];
  beforeEach(() => {
    errors.length = 0;
    const ignore = (): void => undefined;
    diag.setLogger({ error: (msg: string) => void errors.push(msg), warn: ignore, info: ignore, debug: ignore, verbose: ignore }, DiagLogLevel.ERROR);
  });
  afterEach(() => {
    diag.disable();
  });
  return errors;
}
