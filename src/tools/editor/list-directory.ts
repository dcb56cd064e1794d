import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type { WorkspaceFs } from '../workspace-path.js';

/** Lines listed at most; a workspace with node_modules would otherwise flood the model. */
export const MAX_LISTED = 1000;

/**
 * The directory listing of `view`: the directory itself, then every entry up
 * to two levels deep, hidden ones (a leading dot) left out, as `find DIR
 * -maxdepth 2 -not -path '*\/.*'` prints it, but sorted. Symlinks are listed,
 * never followed; subdirectories are opened relative to their parent's fd.
 */
export async function listDirectory(ws: WorkspaceFs, dir: FileHandle, shown: string): Promise<string[]> {
  const out: string[] = [shown];
  let omitted = 0;
  const add = (line: string): void => {
    if (out.length <= MAX_LISTED) out.push(line);
    else omitted++;
  };
  for (const entry of await readSorted(dir)) {
    const childPath = `${shown}/${entry.name}`;
    add(childPath);
    if (!entry.isDirectory()) continue;
    const child = await ws.openChildDir(dir, entry.name);
    if (!child) continue;
    try {
      for (const grand of await readSorted(child)) add(`${childPath}/${grand.name}`);
    } finally {
      await child.close();
    }
  }
  if (omitted > 0) out.push(`[${omitted} more entries not listed; view a subdirectory to see them]`);
  return out;
}

async function readSorted(dir: FileHandle): Promise<import('node:fs').Dirent[]> {
  const entries = await fsp.readdir(`/proc/self/fd/${dir.fd}`, { withFileTypes: true });
  return entries.filter((e) => !e.name.startsWith('.')).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
