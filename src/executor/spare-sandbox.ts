import type { Sandbox } from '../sandbox/driver.js';
import { describeError } from '../util/errors.js';
import { noopLogger, type Logger } from '../util/logger.js';
import type { SessionSpec } from './session-manager.js';

/**
 * One never-used fresh sandbox made ahead for the next call without a session,
 * as the isolate pool keeps a spare isolate: creating a bwrap sandbox (tmpfs
 * workspace, cgroups, folders) then happens between calls instead of inside one.
 *
 * A spare is made exactly as a call's own sandbox would be (the same driver
 * create() with the same spec), so it is as isolated and limited; it is handed
 * to at most one call and only when that call's spec (driver, image, limits,
 * network, environment) is the one it was made for, and never when the call
 * brings files or mounts. The call that takes it owns it and disposes it like
 * any fresh sandbox. dispose() removes an untaken spare (runner shutdown).
 *
 * Where the driver can, the spare also pre-starts its first process (bwrap: a
 * hardened bwrap process waiting for its spec, see
 * sandbox/bwrap/waiting-process.ts), so the taking call's first run costs one
 * exec. The waiter is part of the sandbox: disposing it kills the waiter.
 */
export interface SpareSandboxOptions {
  /** Makes a sandbox for `spec` (the session manager's path, so metrics and audit see it). */
  make: (spec: SessionSpec) => Promise<Sandbox>;
  /** Disposes a sandbox the spare made but nobody took. */
  discard: (sandbox: Sandbox) => Promise<void>;
  logger?: Logger;
}

interface Slot {
  key: string;
  sandbox: Promise<Sandbox>;
}

export class SpareSandbox {
  private slot: Slot | undefined;
  private closed = false;
  private disposing: Promise<void> | undefined;
  private readonly logger: Logger;

  constructor(private readonly options: SpareSandboxOptions) {
    this.logger = options.logger ?? noopLogger;
  }

  /** The key a spec must match for the spare to serve it, or undefined when no spare may serve it. */
  static keyOf(spec: SessionSpec): string | undefined {
    if (spec.files?.length || spec.mounts?.length || spec.onDispose) return undefined;
    const sorted = (o: object) => Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return JSON.stringify([spec.driver, spec.image, sorted(spec.limits), spec.network, sorted(spec.env)]);
  }

  /**
   * Hands the spare over when it was made for `spec`; the caller owns it from
   * here (disposes it). Undefined when there is none or it does not fit.
   */
  take(spec: SessionSpec): Promise<Sandbox> | undefined {
    const key = SpareSandbox.keyOf(spec);
    if (this.closed || key === undefined || this.slot?.key !== key) return undefined;
    const { sandbox } = this.slot;
    this.slot = undefined;
    return sandbox;
  }

  /** Starts making a spare for `spec` unless one is there (or being made) or the spare is closed. */
  prepare(spec: SessionSpec): void {
    const key = SpareSandbox.keyOf(spec);
    if (this.closed || key === undefined || this.slot) return;
    const slot: Slot = { key, sandbox: this.options.make(spec).then((sb) => this.prestart(sb)) };
    this.slot = slot;
    slot.sandbox.catch((err: unknown) => {
      // Calls then make their own; the next call's end tries again.
      if (this.slot === slot) this.slot = undefined;
      this.logger.warn({ err: describeError(err) }, 'making a spare sandbox failed');
    });
  }

  /**
   * Pre-starts the spare's first process too, where the driver can (bwrap: the
   * whole sandbox setup happens now, the call only execs). Without it the
   * spare still serves, so a failure is only logged.
   */
  private async prestart(sandbox: Sandbox): Promise<Sandbox> {
    await sandbox.prestart?.().catch((err: unknown) => this.logger.warn({ err: describeError(err) }, 'pre-starting the spare sandbox failed'));
    return sandbox;
  }

  /** Stops making spares and removes an untaken one. Idempotent: every caller waits for the same removal. */
  dispose(): Promise<void> {
    this.disposing ??= (async () => {
      this.closed = true;
      const slot = this.slot;
      this.slot = undefined;
      if (!slot) return;
      const sandbox = await slot.sandbox.catch(() => undefined);
      if (sandbox) await this.options.discard(sandbox);
    })();
    return this.disposing;
  }
}
