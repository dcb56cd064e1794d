import { access, lstat, mkdir, readlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { RootEntry } from './bwrap-args.js';

/**
 * The root used when no sandbox image is built: the host's /usr read-only (and
 * /bin, /lib, /lib64, /sbin as the host has them), and a synthesized minimal
 * /etc. Nothing else of the host is visible: not /root, /home, /var, the
 * runner's state.
 */
export async function hostFallbackRoot(): Promise<RootEntry[]> {
  const out: RootEntry[] = [{ name: 'usr', hostPath: '/usr' }];
  for (const name of ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32']) {
    const p = `/${name}`;
    const st = await lstat(p).catch(() => undefined);
    if (!st) continue;
    out.push(st.isSymbolicLink() ? { name, symlink: await readlink(p) } : { name, hostPath: p });
  }
  return out;
}

/** Host /etc entries a program needs to run (dynamic linker cache, TLS roots, alternatives). */
const HOST_ETC = ['ld.so.cache', 'ld.so.conf', 'ld.so.conf.d', 'alternatives', 'ssl', 'ca-certificates', 'localtime'];

/**
 * Writes a minimal /etc into `dir` (passwd and group naming only the sandbox
 * user, hostname, hosts, nsswitch.conf) with mount points for the host entries
 * bound over them read-only. Returns the dir and those binds.
 */
export async function writeFallbackEtc(dir: string): Promise<{ dir: string; binds: Array<[string, string]> }> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const files: Record<string, string> = {
    passwd: 'root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:1000:1000:sandbox:/workspace:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n',
    group: 'root:x:0:\nsandbox:x:1000:\nnogroup:x:65534:\n',
    hostname: 'sandbox\n',
    hosts: '127.0.0.1 localhost sandbox\n::1 localhost\n',
    'nsswitch.conf': 'passwd: files\ngroup: files\nhosts: files dns\n',
  };
  for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, name), text, { mode: 0o644 });
  const binds: Array<[string, string]> = [];
  for (const name of HOST_ETC) {
    const host = path.join('/etc', name);
    const ok = await access(host).then(() => true, () => false);
    if (!ok) continue;
    const st = await lstat(host);
    // The mount point must exist in the read-only /etc before bwrap binds over it.
    if (st.isDirectory()) await mkdir(path.join(dir, name), { recursive: true });
    else await writeFile(path.join(dir, name), '');
    binds.push([host, `/etc/${name}`]);
  }
  return { dir, binds };
}
