import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Whether host process `pid` is gone or a zombie (it has ended; only its
 * parent's reaping is left), read synchronously from /proc.
 */
export function isGone(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return true;
  }
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state === 'Z' || state === 'X';
}

/**
 * Resolves once host process `pid` is gone or a zombie; bounded at ~2 s, after
 * which a stuck process is left to the sandbox's dispose() (cgroup kill).
 * Synchronous reads, as cgroup events are: a procfs read must not queue
 * behind other sandboxes' removals.
 */
export async function waitGone(pid: number): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (isGone(pid)) return;
    await sleep(i < 20 ? 1 : 5);
  }
}
