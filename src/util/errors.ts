/**
 * Local errors. Two kinds: the operator's mistakes (`usage`, `config`, ...) that a
 * person fixes, and the system's (`internal`, `io`, ...) that are reported with
 * detail. Messages are sentences that say what to do; raw third-party output
 * (stderr of bwrap, docker) goes in `detail`, never a secret.
 */
export type RunnerErrorCode =
  | 'usage'
  | 'config_invalid'
  | 'config_missing'
  | 'state_insecure'
  | 'state_missing'
  | 'pairing_failed'
  | 'unreachable'
  | 'driver_unavailable'
  | 'sandbox_failed'
  | 'limit_exceeded'
  | 'timed_out'
  | 'cancelled'
  | 'invalid_input'
  | 'policy_denied'
  | 'credential_invalid'
  | 'signature_invalid'
  | 'audit_failed'
  | 'io'
  | 'internal';

export class RunnerError extends Error {
  override readonly name = 'RunnerError';
  readonly code: RunnerErrorCode;
  /** Raw output of a third-party tool, for logs; never shown as the message. */
  readonly detail: string | undefined;

  constructor(code: RunnerErrorCode, message: string, options: { cause?: unknown; detail?: string } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.detail = options.detail;
  }
}

/** True when `err` is a RunnerError, optionally of one of `codes`. */
export function isRunnerError(err: unknown, ...codes: RunnerErrorCode[]): err is RunnerError {
  return err instanceof RunnerError && (codes.length === 0 || codes.includes(err.code));
}

/** A short, safe description of any thrown value for logs and wire errors. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
