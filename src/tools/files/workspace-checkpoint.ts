import path from 'node:path';
import { readdir, rm } from 'node:fs/promises';
import * as tar from 'tar';

/** Packs the session workspace at `workspaceDir` into tar file `file`. */
export async function checkpointWorkspace(workspaceDir: string, file: string): Promise<void> {
  const entries = await readdir(workspaceDir);
  await tar.c({ cwd: workspaceDir, file, portable: true, follow: false }, entries.length ? entries : []);
}

/** Empties the workspace and unpacks checkpoint `file` into it. */
export async function restoreWorkspace(workspaceDir: string, file: string): Promise<void> {
  for (const e of await readdir(workspaceDir)) await rm(path.join(workspaceDir, e), { recursive: true, force: true });
  await tar.x({ cwd: workspaceDir, file, strict: true, preservePaths: false });
}
