import { readFile } from 'node:fs/promises';
import { execa } from 'execa';
import type { Logger } from '../util/logger.js';
import { noopLogger } from '../util/logger.js';

/** The core-file size limit of a process (RLIMIT_CORE), in bytes. */
export interface CoreLimit {
  soft: number;
  hard: number;
  /** True when no core file can be written (soft limit 0). */
  disabled: boolean;
}

export interface DisableCoreDumpsOptions {
  logger?: Logger;
  signal?: AbortSignal;
  /** Process to limit; default this one. */
  pid?: number;
  /** The prlimit binary (util-linux); default `prlimit` on PATH. */
  prlimitPath?: string;
}

/**
 * Reads RLIMIT_CORE of a process from /proc/<pid>/limits.
 * @throws when /proc is not mounted or the line is missing.
 */
export async function readCoreLimit(pid: number | 'self' = 'self'): Promise<CoreLimit> {
  const text = await readFile(`/proc/${pid}/limits`, 'utf8');
  const line = text.split('\n').find((l) => l.startsWith('Max core file size'));
  if (!line) throw new Error(`/proc/${pid}/limits has no "Max core file size" line`);
  const [soft, hard] = line
    .slice('Max core file size'.length)
    .trim()
    .split(/\s+/)
    .map((v) => (v === 'unlimited' ? Number.POSITIVE_INFINITY : Number(v)));
  return { soft: soft ?? Number.NaN, hard: hard ?? Number.NaN, disabled: soft === 0 };
}

/**
 * Turns core dumps off for the daemon: a core file of the runner would hold
 * the opened credentials, the vault key and its private keys in clear.
 *
 * Node has no setrlimit, so this runs `prlimit --pid <pid> --core=0:0` (soft
 * and hard limit; lowering needs no privilege, and children such as sandboxes
 * inherit it), then reads /proc back. The systemd unit also sets `LimitCORE=0`,
 * which covers the window before this runs. When it cannot be done (no
 * prlimit, no /proc) it logs a warning and returns what it found: a missing
 * hardening measure should not stop a runner that is otherwise sound.
 */
export async function disableCoreDumps(options: DisableCoreDumpsOptions = {}): Promise<CoreLimit | undefined> {
  const logger = options.logger ?? noopLogger;
  const pid = options.pid ?? process.pid;
  const before = await readCoreLimit(pid).catch(() => undefined);
  if (before?.disabled && before.hard === 0) return before;
  try {
    await execa(options.prlimitPath ?? 'prlimit', ['--pid', String(pid), '--core=0:0'], {
      ...(options.signal ? { cancelSignal: options.signal } : {}),
      timeout: 10_000,
      stdin: 'ignore',
    });
  } catch (err) {
    const detail = (err as { stderr?: string }).stderr ?? String(err);
    logger.warn(
      { detail },
      'could not disable core dumps with prlimit; install util-linux or set LimitCORE=0 in the systemd unit (ulimit -c 0 elsewhere)',
    );
  }
  const after = await readCoreLimit(pid).catch(() => undefined);
  if (!after) {
    logger.warn('cannot read /proc/<pid>/limits to confirm that core dumps are off; set LimitCORE=0 in the systemd unit');
  } else if (!after.disabled) {
    logger.warn(
      { soft: after.soft, hard: after.hard },
      'core dumps are still enabled for the runner; set LimitCORE=0 in the systemd unit (ulimit -c 0 elsewhere)',
    );
  }
  return after;
}
