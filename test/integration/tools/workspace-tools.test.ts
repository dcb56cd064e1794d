import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bashTool } from '../../../src/tools/bash/index.js';
import { createEditorTool, editorTool } from '../../../src/tools/editor/index.js';
import { filesTool } from '../../../src/tools/files/index.js';
import { bwrapSandbox, callTool, makeToolContext, MemorySessionState, outcomeText, type TestBwrap } from '../../helpers/tool-context.js';

// The host-side tools (editor, files) and the sandbox's own processes share one
// workspace: what one writes the other sees, and what sandboxed code plants
// (symlinks out, in any path component) is never followed by the host side.
/** Bytes this process has read so far (rchar: every read syscall, thread pool included). */
async function bytesRead(): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  return Number(/rchar: (\d+)/.exec(await readFile('/proc/self/io', 'utf8'))?.[1]);
}

describe('editor and files on a real bwrap session workspace', () => {
  let box: TestBwrap;
  const session = new MemorySessionState();
  beforeAll(async () => {
    box = await bwrapSandbox();
  });
  afterAll(async () => {
    await session.dispose();
    await box?.dispose();
  });
  const ctx = () => makeToolContext({ sandbox: box.sandbox, session });
  const bash = async (command: string) => outcomeText(await callTool(bashTool, { command }, ctx()));
  const edit = (input: Record<string, unknown>) => callTool(editorTool, input, ctx());

  it('files made by the editor are the sandbox user\'s to change, and bash edits show in view', async () => {
    await edit({ command: 'create', path: '/workspace/app/main.py', file_text: 'print("hi")\n' });
    expect(await bash('echo "print(2)" >> app/main.py && id -u && stat -c %u app/main.py app')).toBe('1000\n1000\n1000');
    expect(outcomeText(await edit({ command: 'view', path: 'app/main.py' }))).toBe(
      "Here's the result of running `cat -n` on /workspace/app/main.py:\n     1\tprint(\"hi\")\n     2\tprint(2)\n",
    );
  });

  it('a symlink to /etc/passwd planted by sandboxed code is readable through neither view nor download', async () => {
    await bash('ln -s /etc/passwd pw && mkdir -p d && ln -s /etc d/etc && ln -s ../../.. up');
    for (const p of ['pw', 'd/etc/passwd', 'up/etc/passwd']) {
      const viewed = await edit({ command: 'view', path: p });
      expect(viewed.isError).toBe(true);
      expect(outcomeText(viewed)).toMatch(/is a symbolic link to .*, outside the workspace; tools do not follow it/);
      const downloaded = await callTool(filesTool, { action: 'download', path: p }, ctx());
      expect(downloaded.isError).toBe(true);
      expect(outcomeText(downloaded)).not.toContain('root:x:0:0');
    }
    const whole = await callTool(filesTool, { action: 'download', path: '/workspace' }, ctx());
    expect(whole.isError).toBe(false);
    const tar = Buffer.from(Array.isArray(whole.content) ? (whole.content[1]?.text ?? '') : '', 'base64');
    expect(tar.includes('root:x:0:0')).toBe(false);
  });

  it('a component swapped for a symlink out while the editor works is never followed (race)', async () => {
    // Sandboxed code flips `race` between a real directory and a symlink to /etc as fast as it can;
    // on the host, /etc is the host's. Views and creates race it: none may reach the host's /etc.
    await bash('(while :; do rm -rf race; mkdir race; echo inside > race/passwd; rm -rf race; ln -s /etc race; done) >/dev/null 2>&1 & echo $! > /tmp/flipper');
    const seen = new Set<string>();
    // At least 300 rounds, and on until both sides of the flip were met (bounded).
    for (let i = 0; i < 300 || (!(seen.has('refused link') && seen.has('read inside')) && i < 20_000); i++) {
      const viewed = outcomeText(await edit({ command: 'view', path: 'race/passwd' }));
      expect(viewed).not.toContain('root:x:0:0');
      seen.add(viewed.startsWith("Here's") ? 'read inside' : viewed.includes('symbolic link to /etc') ? 'refused link' : 'other');
      await edit({ command: 'create', path: `race/planted-${i}`, file_text: 'x' });
    }
    await bash('kill $(cat /tmp/flipper); wait 2>/dev/null; true');
    expect(seen.has('refused link') && seen.has('read inside')).toBe(true);
    const { readdir } = await import('node:fs/promises');
    expect((await readdir('/etc')).filter((n) => n.startsWith('planted-'))).toEqual([]);
  });

  it('a file grown (sparse) between the size check and the read is never read past the limit (race)', async () => {
    // Sandboxed code flips `grow` between a short text and a 200 MB sparse file (free on tmpfs):
    // a read sized by a second fstat would take all 200 MB into the runner's memory.
    await bash('(while :; do echo hi > grow; truncate -s 200M grow; sleep 0.01; done) >/dev/null 2>&1 & echo $! > /tmp/grower');
    const small = createEditorTool({ maxFileBytes: 64 * 1024 });
    const seen = new Set<string>();
    let most = 0;
    try {
      for (let i = 0; i < 1000 && most < 100 * 1024 * 1024; i++) {
        const before = await bytesRead();
        const viewed = outcomeText(await callTool(small, { command: 'view', path: 'grow' }, ctx()));
        most = Math.max(most, (await bytesRead()) - before);
        seen.add(viewed.startsWith("Here's") ? 'read' : /editor's limit/.test(viewed) ? 'too large' : 'other');
      }
    } finally {
      await bash('kill $(cat /tmp/grower); wait 2>/dev/null; rm -f grow; true');
    }
    expect(seen.has('read') && seen.has('too large')).toBe(true);
    // No view read more than the editor's limit of 64 KiB (with slack for the runner's other reads).
    expect(most).toBeLessThan(1024 * 1024);
  });

  it('sandboxed code cannot hard-link a file from outside its workspace, and FIFOs with a live peer block no tool', async () => {
    // A hard link would make the host-side writes of the editor and upload land in the outside file;
    // the workspace is its own file system (a tmpfs), so link(2) from anywhere else is EXDEV.
    expect(await bash('ln /etc/passwd hl1 2>&1; echo x > /tmp/t; ln /tmp/t hl2 2>&1; ls hl1 hl2 2>/dev/null | wc -l')).toMatch(
      /Invalid cross-device link[\s\S]*Invalid cross-device link[\s\S]*\n0$/,
    );
    // A FIFO held open at both ends by sandboxed code (so opens succeed) is refused, never read or written.
    await bash('mkfifo live; (exec 3<>live; exec sleep 60) >/dev/null 2>&1 & echo $! > /tmp/holder; until [ -e /proc/$!/fd/3 ]; do sleep 0.01; done');
    try {
      expect(outcomeText(await edit({ command: 'view', path: 'live' }))).toMatch(/not a regular file or directory/);
      expect(outcomeText(await edit({ command: 'str_replace', path: 'live', old_str: 'a', new_str: 'b' }))).toMatch(/not a regular file/);
      const b64 = await bash('mkdir -p /tmp/up && echo data > /tmp/up/live && tar -C /tmp/up -cf - live | base64 -w0');
      expect(outcomeText(await callTool(filesTool, { action: 'upload', path: '/workspace', tar: b64 }, ctx()))).toMatch(/not a regular file in the workspace/);
      expect(outcomeText(await callTool(filesTool, { action: 'download', path: 'live' }, ctx()))).toMatch(/not a regular file or directory/);
    } finally {
      await bash('kill $(cat /tmp/holder); wait 2>/dev/null; rm -f live hl1 hl2; true');
    }
  });

  it('chains of links through a deep tree cost a bounded number of steps to resolve, not minutes of the runner\'s time', async () => {
    // Each link sends the walk back to the root and through 500 directories again: 38 links in the
    // directories of the path and 38 at its end made one view take 130 s of opens before the bound.
    await bash(`python3 - <<'PY'
import os
D, H = 500, 38
deep = '/'.join(['d'] * D)
os.makedirs(deep)
top = '/workspace/' + deep
for i in range(H):
    os.symlink(f'{top}/M{i+1}', f'{deep}/M{i}')
os.mkdir(f'{deep}/M{H}')
for j in range(H):
    os.symlink(f'{top}/M0/x{j+1}', f'{deep}/M{H}/x{j}')
open(f'{deep}/M{H}/x{H}', 'w').write('end')
os.symlink(f'{top}/M0/x0', 'trap')
PY`);
    try {
      const viewed = await edit({ command: 'view', path: 'trap' });
      expect(viewed.isError).toBe(true);
      expect(outcomeText(viewed)).toMatch(/takes more than 4096 directory steps to resolve/);
      // Without the link chains, the same deep file is reached directly.
      expect(outcomeText(await edit({ command: 'view', path: `${Array(500).fill('d').join('/')}/M38/x38` }))).toMatch(/1\tend/);
    } finally {
      await bash('rm -rf d trap');
    }
  });

  it('a view of a directory of 200 000 subdirectories lists the first entries without opening the rest', async () => {
    // Opening every subdirectory of such a listing (to count their entries) took 78 s of the runner's time for 300 000.
    const made = Number(await bash(`python3 -c "import os\nos.mkdir('many')\nfor i in range(200000): os.mkdir('many/d%07d' % i)"; ls many | wc -l`));
    expect(made).toBeGreaterThan(100_000);
    try {
      const listing = outcomeText(await edit({ command: 'view', path: 'many' }));
      const lines = listing.split('\n');
      expect(lines.slice(1, 4)).toEqual(['/workspace/many', '/workspace/many/d0000000', '/workspace/many/d0000001']);
      expect(lines).toContain('/workspace/many/d0000999');
      expect(lines).not.toContain('/workspace/many/d0001000');
      expect(listing).toContain(`[at least ${made - 1000} more entries not listed; view a subdirectory to see them]`);
    } finally {
      await bash('rm -rf many');
    }
  });

  it('an upload racing a directory swapped for a symlink to a host directory never writes there (race)', async () => {
    const { mkdtemp, readdir, rm } = await import('node:fs/promises');
    const host = await mkdtemp('/tmp/sr-upload-target-');
    // The archive: up/f1 … up/f20, made by the sandbox's own tar.
    const b64 = await bash('mkdir -p /tmp/arc/up && for i in $(seq 1 20); do echo x > /tmp/arc/up/f$i; done && tar -C /tmp/arc -cf - up | base64 -w0');
    await bash(`(while :; do rm -rf up; mkdir up; rm -rf up; ln -s ${host} up; done) >/dev/null 2>&1 & echo $! > /tmp/upflip`);
    const seen = new Set<string>();
    try {
      for (let i = 0; i < 200 || (!(seen.has('uploaded') && seen.has('refused')) && i < 5000); i++) {
        const out = await callTool(filesTool, { action: 'upload', path: '/workspace', tar: b64 }, ctx());
        seen.add(out.isError ? 'refused' : 'uploaded');
        expect(await readdir(host)).toEqual([]);
      }
    } finally {
      await bash('kill $(cat /tmp/upflip); wait 2>/dev/null; rm -rf up; true');
      await rm(host, { recursive: true, force: true });
    }
    expect(seen.has('uploaded') && seen.has('refused')).toBe(true);
  });

  it('a download racing a directory swapped for a symlink to a host directory never packs the host files (race)', async () => {
    const { mkdtemp, rm, writeFile } = await import('node:fs/promises');
    const host = await mkdtemp('/tmp/sr-download-source-');
    await writeFile(`${host}/secret`, 'HOST-CANARY-2');
    await bash(`(while :; do rm -rf dl; mkdir dl; echo inside > dl/secret; rm -rf dl; ln -s ${host} dl; done) >/dev/null 2>&1 & echo $! > /tmp/dlflip`);
    const seen = new Set<string>();
    try {
      for (let i = 0; i < 200 || (!(seen.has('inside') && seen.has('link')) && i < 5000); i++) {
        const out = await callTool(filesTool, { action: 'download', path: '/workspace' }, ctx());
        const tar = Buffer.from(Array.isArray(out.content) ? (out.content[1]?.text ?? '') : '', 'base64');
        expect(tar.includes('HOST-CANARY-2')).toBe(false);
        if (tar.includes('inside')) seen.add('inside');
        if (tar.includes(host)) seen.add('link');
      }
    } finally {
      await bash('kill $(cat /tmp/dlflip); wait 2>/dev/null; rm -rf dl; true');
      await rm(host, { recursive: true, force: true });
    }
    expect(seen.has('inside') && seen.has('link')).toBe(true);
  });

  it('an upload lands where bash sees it', async () => {
    await bash('mkdir -p /tmp/src/sub && echo payload > /tmp/src/sub/f.txt');
    // Made by the sandbox's own tar, so the archive is what a client would send.
    const b64 = await bash('tar -C /tmp/src -cf - . | base64 -w0');
    const up = await callTool(filesTool, { action: 'upload', path: 'incoming', tar: b64 }, ctx());
    expect(up).toEqual({ status: 'completed', isError: false, content: 'Uploaded 1 files (8 bytes) and 1 directories into /workspace/incoming.' });
    expect(await bash('cat incoming/sub/f.txt && touch incoming/sub/new && echo writable')).toBe('payload\nwritable');
  });
});
