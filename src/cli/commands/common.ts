/** The state dir when none is given: $SANDBOX_RUNNER_STATE_DIR or /var/lib/sandbox-runner. */
export function defaultStateDir(): string {
  return process.env.SANDBOX_RUNNER_STATE_DIR ?? '/var/lib/sandbox-runner';
}
