import { stat } from 'node:fs/promises';
import path from 'node:path';
import { RunnerError } from '../../util/errors.js';
import type { SandboxSpec } from '../driver.js';

/** A host directory bound into a sandbox (SandboxSpec.mounts), as the process drivers take it. */
export interface HostMount {
  hostPath: string;
  path: string;
  readOnly: boolean;
}

/** Places a mount may not go: over the workspace, the kernel's views, or the image's system folders. */
const FORBIDDEN = ['/', '/workspace', '/proc', '/dev', '/sys', '/tmp', '/usr', '/etc', '/bin', '/sbin', '/lib', '/lib64', '/var', '/run/sandbox-egress'];

/**
 * The validated host mounts of a spec (Managed Agents memory stores and the
 * like). Read defensively: the field is optional and newer than the drivers.
 * @throws RunnerError `invalid_input` naming the mount that is not allowed.
 */
export async function hostMounts(spec: SandboxSpec): Promise<HostMount[]> {
  const raw = (spec as { mounts?: HostMount[] }).mounts ?? [];
  const out: HostMount[] = [];
  for (const m of raw) {
    const inside = path.posix.normalize(m.path);
    if (!path.posix.isAbsolute(inside) || inside.includes('\0') || /[,=]/.test(inside) || /[,=]/.test(m.hostPath)) {
      throw new RunnerError('invalid_input', `mount path ${JSON.stringify(m.path)} must be an absolute path without commas or equals signs`);
    }
    for (const f of FORBIDDEN) {
      if (inside === f || (f !== '/' && inside.startsWith(`${f}/`)) || (f !== '/' && f.startsWith(`${inside}/`))) {
        throw new RunnerError('invalid_input', `mount path ${inside} would cover ${f}; mount under /mnt instead`);
      }
    }
    const st = await stat(m.hostPath).catch(() => undefined);
    if (!st?.isDirectory()) throw new RunnerError('invalid_input', `mount source ${m.hostPath} is not a directory; create it before the sandbox`);
    out.push({ hostPath: path.resolve(m.hostPath), path: inside, readOnly: m.readOnly });
  }
  return out;
}
