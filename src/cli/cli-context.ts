import { RunnerError } from '../util/errors.js';

/** Exit codes of every command: 0 ok, 1 failure, 2 usage. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** Thrown by a command to end with a given exit code after printing its own output. */
export class CliExit extends Error {
  override readonly name = 'CliExit';
  constructor(readonly exitCode: number) {
    super(`exit ${exitCode}`);
  }
}

/** Maps an error to the documented exit code. */
export function exitCodeFor(err: unknown): number {
  if (err instanceof CliExit) return err.exitCode;
  if (err instanceof RunnerError && (err.code === 'usage' || err.code === 'config_invalid')) return EXIT_USAGE;
  return EXIT_FAILURE;
}

/** Writes a line to stdout (a command's output); logs go to stderr. */
export function out(line: string): void {
  process.stdout.write(line.endsWith('\n') ? line : `${line}\n`);
}
