import type { Redactor } from './redactor.js';

/**
 * The `redact(line)` option of `createLogger` (src/util/logger.ts): masks the
 * secrets currently held by `redactor` in every log line. The daemon owns one
 * Redactor for the process, adds each call's secrets when the call starts and
 * removes them when it ends; lines logged in between are masked. Pino writes
 * strings JSON-escaped, which is one of the forms the redactor knows.
 */
export function createLogRedaction(redactor: Redactor): (line: string) => string {
  return (line) => (redactor.size === 0 ? line : redactor.redact(line));
}
