import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * Starting a process inside a sandbox's cgroups without a wrapper program: the
 * calling process moves itself into them, forks, and moves itself back, all
 * in one synchronous turn (see {@link spawnInCgroups}). Used by the sandbox
 * spawner helper (spawner-helper.ts), a single-purpose process; imports
 * nothing from the runner, so that helper starts fast.
 */

/** Where a process goes to join a sandbox's cgroups, as the runner describes it to the spawner. */
export interface CgroupTarget {
  /** Files to write, one a hierarchy: `cgroup.procs` (v2) or each controller's `tasks` (v1). */
  files: string[];
  /** `pid`: the process's pid (v2 `cgroup.procs`); `current-thread`: `0`, the writing thread (v1 `tasks`). */
  write: 'pid' | 'current-thread';
  /** The v1 controller of each file (same order), or `''` for the v2 hierarchy. */
  controllers: string[];
  /** Mount point of the cgroup filesystems, e.g. `/sys/fs/cgroup`. */
  mountRoot: string;
}

/** The move into the sandbox's cgroups failed before anything was spawned; the caller may use another way. */
export class CgroupJoinError extends Error {
  override name = 'CgroupJoinError';
}

/**
 * The files that put the calling process back where it is now, one for each
 * of `target.files`, from the `/proc/self/cgroup` text `selfCgroup`.
 * Undefined when a hierarchy of the target is not listed there.
 */
export function homeFiles(target: CgroupTarget, selfCgroup: string): string[] | undefined {
  const v1 = new Map<string, string>();
  let v2: string | undefined;
  for (const line of selfCgroup.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === '0' && m[2] === '') v2 = m[3];
    else for (const c of m[2]!.split(',')) v1.set(c, m[3]!);
  }
  const homes: string[] = [];
  for (const controller of target.controllers) {
    const rel = controller === '' ? v2 : v1.get(controller);
    if (rel === undefined) return undefined;
    const dir = controller === '' ? path.join(target.mountRoot, rel) : path.join(target.mountRoot, controller, rel);
    homes.push(path.join(dir, target.write === 'pid' ? 'cgroup.procs' : 'tasks'));
  }
  return homes;
}

/**
 * Runs `spawn` (a synchronous fork + exec, e.g. child_process.spawn) with the
 * calling process inside the cgroups of `target`, then puts it back into
 * `homes` before returning: the child is born in the sandbox's cgroups, as the
 * `/bin/sh` wrapper's exec of bwrap was, without that program.
 *
 * Why this is safe for the caller (the spawner helper, nothing else):
 * - Both moves and the fork happen in one synchronous JS turn of a process
 *   that does nothing else, so no other work of it runs inside the sandbox's
 *   cgroups; on v1 only the writing (main) thread moves, and libuv forks from
 *   that thread, so the child inherits exactly the sandbox's cgroups.
 * - Memory the caller was charged before stays charged to its own cgroup (a
 *   move does not carry charges: memory.move_charge_at_immigrate is off by
 *   default and v2 has none); what is charged to the sandbox meanwhile is the
 *   fork's own (the child's page tables and copied pages), which is the
 *   child's anyway. The sandbox's pids count holds the caller for those
 *   microseconds: one process more than bwrap's own two, never more.
 * - The sandbox cannot act on the caller meanwhile: nothing of the sandbox
 *   runs yet (its cgroup is new and empty until this fork).
 *
 * Throws CgroupJoinError (having moved back) when the move in fails: nothing
 * was spawned. When the move back fails, `onStuck` is called after the spawn
 * (the caller must not stay: the sandbox's cleanup kills every process in its
 * cgroup).
 */
export function spawnInCgroups<T>(target: CgroupTarget, homes: string[], spawn: () => T, onStuck: (err: Error) => void): T {
  const value = target.write === 'pid' ? String(process.pid) : '0';
  let moved = 0;
  const back = (): Error | undefined => {
    let failed: Error | undefined;
    for (let i = 0; i < moved; i++) {
      try {
        writeFileSync(homes[i]!, value);
      } catch (err) {
        failed ??= err as Error;
      }
    }
    return failed;
  };
  try {
    for (const file of target.files) {
      writeFileSync(file, value);
      moved++;
    }
  } catch (err) {
    const stuck = back();
    if (stuck) onStuck(stuck);
    throw new CgroupJoinError(`could not join the sandbox's cgroup: ${(err as Error).message}`);
  }
  try {
    return spawn();
  } finally {
    const stuck = back();
    if (stuck) onStuck(stuck);
  }
}

/**
 * Checks that the caller can move itself back home: writes its own place
 * into each home file (a move to where it is). Throws when it cannot.
 */
export function checkHome(target: CgroupTarget, homes: string[]): void {
  const value = target.write === 'pid' ? String(process.pid) : '0';
  for (const h of homes) writeFileSync(h, value);
}

/** The calling thread's `/proc/.../cgroup` text (v1 moves are per thread). */
export function selfCgroupText(): string {
  return readFileSync('/proc/thread-self/cgroup', 'utf8');
}
