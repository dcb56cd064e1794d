import { type Dirent, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type { WorkspaceFs } from '../workspace-path.js';

/** Lines listed at most; a workspace with node_modules would otherwise flood the model. */
export const MAX_LISTED = 1000;

/**
 * The directory listing of `view`: the directory itself, then every entry up
 * to two levels deep, hidden ones (a leading dot) left out, as `find DIR
 * -maxdepth 2 -not -path '*\/.*'` prints it, but sorted. Symlinks are listed,
 * never followed; subdirectories are opened relative to their parent's fd.
 *
 * Bounded by what is shown, not by what sandboxed code made: each directory
 * is read as a stream keeping only its smallest names that can still be
 * shown, and no subdirectory is opened once the listing is full (a view of a
 * directory of 300 000 subdirectories opened every one of them: 78 s).
 * Entries under subdirectories that were not opened are not counted, and the
 * note then says "at least".
 */
export async function listDirectory(ws: WorkspaceFs, dir: FileHandle, shown: string): Promise<string[]> {
  const out: string[] = [shown];
  const room = (): number => MAX_LISTED + 1 - out.length;
  const top = await readSmallest(dir, MAX_LISTED);
  let omitted = top.total - top.kept.length;
  let uncounted = omitted > 0;
  for (const entry of top.kept) {
    const childPath = `${shown}/${entry.name}`;
    if (room() <= 0) {
      omitted++;
      uncounted ||= entry.isDirectory();
      continue;
    }
    out.push(childPath);
    if (!entry.isDirectory()) continue;
    if (room() <= 0) {
      uncounted = true;
      continue;
    }
    const child = await ws.openChildDir(dir, entry.name);
    if (!child) continue;
    try {
      const sub = await readSmallest(child, room());
      for (const grand of sub.kept) out.push(`${childPath}/${grand.name}`);
      omitted += sub.total - sub.kept.length;
    } finally {
      await child.close();
    }
  }
  if (omitted > 0 || uncounted) {
    out.push(`[${uncounted ? 'at least ' : ''}${omitted} more entries not listed; view a subdirectory to see them]`);
  }
  return out;
}

/** The `k` smallest non-hidden entries of `dir`, sorted, and how many non-hidden entries it has. */
async function readSmallest(dir: FileHandle, k: number): Promise<{ kept: Dirent[]; total: number }> {
  let kept: Dirent[] = [];
  let total = 0;
  const byName = (a: Dirent, b: Dirent): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  const listing = await fsp.opendir(`/proc/self/fd/${dir.fd}`);
  try {
    for await (const entry of listing) {
      if (entry.name.startsWith('.')) continue;
      total++;
      kept.push(entry);
      // Sorted and cut in batches: O(n log k) for n entries, at most 2k + 1 held.
      if (kept.length > 2 * k) kept = kept.sort(byName).slice(0, k);
    }
  } finally {
    await listing.close().catch(() => undefined);
  }
  return { kept: kept.sort(byName).slice(0, k), total };
}
