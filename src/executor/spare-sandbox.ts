import type { Sandbox } from '../sandbox/driver.js';
import { describeError } from '../util/errors.js';
import { noopLogger, type Logger } from '../util/logger.js';
import type { SessionSpec } from './session-manager.js';

/**
 * Never-used fresh sandboxes (`size`, default one) made ahead for the next
 * calls without a session, as the isolate pool keeps a spare isolate: creating a bwrap sandbox (tmpfs
 * workspace, cgroups, folders) then happens between calls instead of inside one.
 *
 * A spare is made exactly as a call's own sandbox would be (the same driver
 * create() with the same spec), so it is as isolated and limited; it is handed
 * to at most one call and only when that call's spec (driver, image, limits,
 * network, environment) is the one it was made for, and never when the call
 * brings files or mounts. The call that takes it owns it and disposes it like
 * any fresh sandbox. dispose() removes the untaken spares (runner shutdown).
 *
 * Where the driver can, the spare also pre-starts its first process (bwrap: a
 * hardened bwrap process waiting for its spec, see
 * sandbox/bwrap/waiting-process.ts), so the taking call's first run costs one
 * exec. The waiter is part of the sandbox: disposing it kills the waiter. It
 * is started as soon as the spare is made, also while a call runs: bwrap
 * starts it through its spawner helper (sandbox/bwrap/sandbox-spawner.ts),
 * which forks instead of the runner, so the running call's event loop never
 * stalls for it.
 */
export interface SpareSandboxOptions {
  /** Makes a sandbox for `spec` (the session manager's path, so metrics and audit see it). */
  make: (spec: SessionSpec) => Promise<Sandbox>;
  /** Disposes a sandbox the spare made but nobody took. */
  discard: (sandbox: Sandbox) => Promise<void>;
  /**
   * How many spares are kept (made or being made). Default 1. Two let calls
   * that come back to back find one ready: a spare then has about two calls'
   * time to be made and pre-started instead of one.
   */
  size?: number;
  logger?: Logger;
}

interface Slot {
  key: string;
  sandbox: Promise<Sandbox>;
}

export class SpareSandbox {
  /** Oldest first: the one most likely ready is handed out first. */
  private slots: Slot[] = [];
  private closed = false;
  private disposing: Promise<void> | undefined;
  private readonly logger: Logger;
  private readonly size: number;
  /** Removals of spares made for a spec no longer asked for; dispose() waits for them. */
  private readonly dropping = new Set<Promise<void>>();

  constructor(private readonly options: SpareSandboxOptions) {
    this.logger = options.logger ?? noopLogger;
    this.size = Math.max(1, Math.floor(options.size ?? 1));
  }

  /** The key a spec must match for the spare to serve it, or undefined when no spare may serve it. */
  static keyOf(spec: SessionSpec): string | undefined {
    if (spec.files?.length || spec.mounts?.length || spec.onDispose) return undefined;
    const sorted = (o: object) => Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return JSON.stringify([spec.driver, spec.image, sorted(spec.limits), spec.network, sorted(spec.env)]);
  }

  /**
   * Hands a spare over when one was made for `spec`; the caller owns it from
   * here (disposes it). Undefined when there is none or none fits.
   */
  take(spec: SessionSpec): Promise<Sandbox> | undefined {
    const key = SpareSandbox.keyOf(spec);
    if (this.closed || key === undefined) return undefined;
    const i = this.slots.findIndex((s) => s.key === key);
    if (i < 0) return undefined;
    const [slot] = this.slots.splice(i, 1);
    return slot!.sandbox;
  }

  /**
   * Starts making spares for `spec` until `size` are there (or being made),
   * unless the spare is closed. Spares made for another spec are discarded
   * first: the default spec changed (a config reload), and they would never fit.
   */
  prepare(spec: SessionSpec): void {
    const key = SpareSandbox.keyOf(spec);
    if (this.closed || key === undefined) return;
    for (const stale of this.slots.filter((s) => s.key !== key)) this.drop(stale);
    while (this.slots.length < this.size) {
      const slot: Slot = {
        key,
        // Handed out as soon as it is made: a call that takes it while its
        // first process still starts waits for that process (BwrapSandbox.spawn).
        sandbox: this.options.make(spec).then((sb) => {
          void this.prestart(sb);
          return sb;
        }),
      };
      this.slots.push(slot);
      slot.sandbox.catch((err: unknown) => {
        // Calls then make their own; the next call tries again.
        this.slots = this.slots.filter((s) => s !== slot);
        this.logger.warn({ err: describeError(err) }, 'making a spare sandbox failed');
      });
    }
  }

  /** Removes one untaken spare in the background. */
  private drop(slot: Slot): void {
    this.slots = this.slots.filter((s) => s !== slot);
    const removal = slot.sandbox
      .then((sb) => this.options.discard(sb))
      .catch((err: unknown) => this.logger.warn({ err: describeError(err) }, 'removing a spare sandbox failed'));
    this.dropping.add(removal);
    void removal.finally(() => this.dropping.delete(removal));
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

  /** Stops making spares and removes the untaken ones. Idempotent: every caller waits for the same removal. */
  dispose(): Promise<void> {
    this.disposing ??= (async () => {
      this.closed = true;
      const slots = this.slots;
      this.slots = [];
      await Promise.all([
        ...slots.map(async (slot) => {
          const sandbox = await slot.sandbox.catch(() => undefined);
          if (sandbox) await this.options.discard(sandbox);
        }),
        ...this.dropping,
      ]);
    })();
    return this.disposing;
  }
}
