import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { CgroupEvents } from './cgroups.js';

/**
 * Reads the limit counters of the cgroup some other manager made (Docker's
 * container cgroup), found through `/proc/<pid>/cgroup` of a process in it.
 * Works when the engine runs on this host and its cgroups are visible here;
 * returns undefined otherwise (a remote or rootless engine), and the caller
 * then reports only what the exit status says.
 */
export async function cgroupEventsOfPid(pid: number, mountRoot = '/sys/fs/cgroup'): Promise<(() => Promise<CgroupEvents>) | undefined> {
  const text = await readFile(`/proc/${pid}/cgroup`, 'utf8').catch(() => undefined);
  if (!text) return undefined;
  let memFile: string | undefined;
  let pidsFile: string | undefined;
  let oomKey = 'oom_kill';
  for (const line of text.split('\n')) {
    const [, controllers, rel] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
    if (rel === undefined || controllers === undefined) continue;
    const list = controllers.split(',');
    if (list.includes('memory')) memFile = path.join(mountRoot, 'memory', rel, 'memory.oom_control');
    if (list.includes('pids')) pidsFile = path.join(mountRoot, 'pids', rel, 'pids.events');
    if (controllers === '' && memFile === undefined) {
      // cgroup v2: one hierarchy, the same folder for both.
      const v2 = path.join(mountRoot, rel);
      if (await access(path.join(v2, 'memory.events')).then(() => true, () => false)) {
        memFile = path.join(v2, 'memory.events');
        pidsFile = path.join(v2, 'pids.events');
        oomKey = 'oom_kill';
      }
    }
  }
  if (!memFile && !pidsFile) return undefined;
  const field = async (file: string | undefined, key: string): Promise<number> => {
    if (!file) return 0;
    const t = await readFile(file, 'utf8').catch(() => '');
    const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(t);
    return m ? Number(m[1]) : 0;
  };
  return async () => ({ oomKills: await field(memFile, oomKey), pidsMax: await field(pidsFile, 'max') });
}
