import { readdirSync, readFileSync } from 'node:fs';

/**
 * CPU time of a process tree, read from /proc: user and system time of every
 * live process under `root` (and `root` itself), plus the time of the children
 * each of them has already reaped. Two readings around a measurement give the
 * CPU the whole stack spent in it: a process that exits in between moves its
 * time into its parent's reaped-children count, so it is neither lost nor
 * counted twice. Linux only; milliseconds, at the kernel's clock-tick
 * resolution (10 ms), so read it around many calls, not one.
 */
export function treeCpuMs(root: number): number {
  let total = 0;
  for (const pid of [root, ...descendants(root)]) total += processCpuMs(pid);
  return total;
}

/** The pids under `pid`, children before grandchildren; processes gone while walking are skipped. */
function descendants(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const task of tasks) {
    let children: string;
    try {
      children = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const child of children.split(' ').filter(Boolean).map(Number)) out.push(child, ...descendants(child));
  }
  return out;
}

// USER_HZ: 100 on every Linux architecture Node runs on.
const TICK_MS = 10;

function processCpuMs(pid: number): number {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return 0;
  }
  // Fields after the command name (which may hold spaces, hence the last ')'):
  // state is field 3, utime 14, stime 15, cutime 16, cstime 17.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const [utime, stime, cutime, cstime] = [11, 12, 13, 14].map((i) => Number(fields[i]));
  return (utime! + stime! + cutime! + cstime!) * TICK_MS;
}
