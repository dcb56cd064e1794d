import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { Header, Parser, type ReadEntry } from 'tar';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createFilesTool, filesTool, TarWriter } from '../../../src/tools/files/index.js';
import { storageName } from '../../../src/tools/files/workspace-checkpoint.js';
import type { ToolOutcome } from '../../../src/tools/tool.js';
import { callTool, hostWorkspace, makeToolContext, outcomeText, type TestToolContext } from '../../helpers/tool-context.js';

let ws: Awaited<ReturnType<typeof hostWorkspace>>;
let ctx: TestToolContext;

beforeEach(async () => {
  ws = await hostWorkspace();
  ctx = makeToolContext({ sandbox: ws });
});
afterEach(() => ws.cleanup());

/** A raw tar entry of any type, as a hostile client would build it. */
function rawEntry(p: string, type: string, opts: { body?: string; linkpath?: string } = {}): Buffer {
  const body = Buffer.from(opts.body ?? '');
  const block = Buffer.alloc(512);
  new Header({ path: p, type: type as 'File', mode: 0o644, size: body.length, mtime: new Date(0), linkpath: opts.linkpath }).encode(block, 0);
  const pad = Buffer.alloc((512 - (body.length % 512)) % 512);
  return Buffer.concat([block, body, pad]);
}
const archive = (...entries: Buffer[]): string => Buffer.concat([...entries, Buffer.alloc(1024)]).toString('base64');

async function listTar(b64: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const p = new Parser({ strict: true });
  const done = new Promise<void>((resolve, reject) => {
    p.on('close', resolve);
    p.on('error', reject);
  });
  p.on('entry', (e: ReadEntry) => {
    let text = '';
    e.on('data', (c: Buffer) => (text += c.toString()));
    e.on('end', () => (out[e.path] = e.type === 'SymbolicLink' ? `-> ${e.linkpath}` : e.type === 'Directory' ? 'dir' : text));
  });
  p.end(Buffer.from(b64, 'base64'));
  await done;
  return out;
}

const upload = (tarB64: string, p = '.') => callTool(filesTool, { action: 'upload', path: p, tar: tarB64 }, ctx);
const download = (p: string) => callTool(filesTool, { action: 'download', path: p }, ctx);
const tarOf = (o: ToolOutcome): string => (Array.isArray(o.content) ? (o.content[1]?.text ?? '') : '');

describe('upload', () => {
  it('extracts files and directories, also gzip-compressed', async () => {
    const w = new TarWriter();
    w.add({ path: 'src', type: 'Directory', mode: 0o755, mtime: new Date() });
    w.add({ path: 'src/main.py', type: 'File', mode: 0o755, mtime: new Date(), body: Buffer.from('print(1)\n') });
    w.add({ path: `deep/${'n'.repeat(120)}.txt`, type: 'File', mode: 0o644, mtime: new Date(), body: Buffer.from('long name') });
    const out = await upload(gzipSync(w.finish()).toString('base64'), '/workspace/proj');
    expect(out).toEqual({
      status: 'completed',
      isError: false,
      content: 'Uploaded 2 files (18 bytes) and 1 directories into /workspace/proj.',
    });
    expect(await readFile(path.join(ws.workspaceDir, 'proj/src/main.py'), 'utf8')).toBe('print(1)\n');
    expect((await stat(path.join(ws.workspaceDir, 'proj/src/main.py'))).mode & 0o777).toBe(0o755);
    expect(await readFile(path.join(ws.workspaceDir, `proj/deep/${'n'.repeat(120)}.txt`), 'utf8')).toBe('long name');
  });

  const hostile: [string, Buffer, string][] = [
    ['a symlink', rawEntry('link', 'SymbolicLink', { linkpath: '/etc/passwd' }), 'The archive entry link is a symbolic link (to /etc/passwd); links are refused, send the file itself.'],
    ['a hard link', rawEntry('hard', 'Link', { linkpath: '/etc/shadow' }), 'The archive entry hard is a hard link (to /etc/shadow); links are refused, send the file itself.'],
    ['a character device', rawEntry('null', 'CharacterDevice'), 'The archive entry null is a device node; only regular files and directories are accepted.'],
    ['a block device', rawEntry('sda', 'BlockDevice'), 'The archive entry sda is a device node; only regular files and directories are accepted.'],
    ['a FIFO', rawEntry('fifo', 'FIFO'), 'The archive entry fifo is a FIFO; only regular files and directories are accepted.'],
    ['an absolute path', rawEntry('/etc/cron.d/x', 'File', { body: 'x' }), 'The archive entry /etc/cron.d/x has an absolute path; rebuild the archive with relative paths (tar -C DIR -cf - .).'],
    ['a .. path', rawEntry('a/../../escape', 'File', { body: 'x' }), 'The archive entry a/../../escape contains "..", which could leave the workspace; rebuild the archive without it.'],
  ];
  for (const [what, entry, message] of hostile) {
    it(`refuses ${what} and writes nothing`, async () => {
      const out = await upload(archive(rawEntry('first.txt', 'File', { body: 'ok' }), entry));
      expect(out).toEqual({ status: 'failed', isError: true, content: message });
      expect(await readdir(ws.workspaceDir)).toEqual([]);
    });
  }

  it('says the size and entry limits', async () => {
    const small = createFilesTool({ maxBytes: 10, maxEntries: 2 });
    const big = await callTool(small, { action: 'upload', tar: archive(rawEntry('a', 'File', { body: 'x'.repeat(11) })) }, ctx);
    expect(outcomeText(big)).toBe('The archive unpacks to more than 10 bytes, the upload limit; split it into several uploads.');
    const many = await callTool(small, { action: 'upload', tar: archive(rawEntry('a', 'File'), rawEntry('b', 'File'), rawEntry('c', 'File')) }, ctx);
    expect(outcomeText(many)).toBe('The archive has more than 2 entries, the upload limit; split it into several uploads.');
    expect(await readdir(ws.workspaceDir)).toEqual([]);
  });

  it('refuses what is not a tar, and what is not base64', async () => {
    expect((await upload(Buffer.from('hello, not a tar at all'.repeat(40)).toString('base64'))).isError).toBe(true);
    expect(outcomeText(await upload('!!!'))).toBe('tar is not base64; send the archive base64-encoded (base64 -w0 archive.tar).');
  });

  it('does not write through a symlink planted in the workspace', async () => {
    const outside = await mkdtemp(path.join(tmpdir(), 'sr-outside-'));
    try {
      await symlink(outside, path.join(ws.workspaceDir, 'evil'));
      const out = await upload(archive(rawEntry('evil/planted', 'File', { body: 'x' })));
      expect(outcomeText(out)).toBe(
        `The path /workspace/evil is a symbolic link to ${outside}, outside the workspace; tools do not follow it. Give a path inside /workspace.`,
      );
      await symlink('/etc/passwd', path.join(ws.workspaceDir, 'pw'));
      expect(outcomeText(await upload(archive(rawEntry('pw', 'File', { body: 'x' }))))).toBe(
        '/workspace/pw is a symbolic link in the workspace; remove it first, files are never written through links.',
      );
      expect(await readdir(outside)).toEqual([]);
    } finally {
      await rm(outside, { recursive: true, force: true });
    }
  });
});

describe('download', () => {
  it('packs a directory; symlinks are stored as links, never followed', async () => {
    await mkdir(path.join(ws.workspaceDir, 'proj/sub'), { recursive: true });
    await writeFile(path.join(ws.workspaceDir, 'proj/a.txt'), 'A');
    await writeFile(path.join(ws.workspaceDir, 'proj/sub/b.txt'), 'B');
    await symlink('/etc/passwd', path.join(ws.workspaceDir, 'proj/pw'));
    execFileSync('mkfifo', [path.join(ws.workspaceDir, 'proj/fifo')]);
    const out = await download('/workspace/proj');
    expect(out.isError).toBe(false);
    expect(Array.isArray(out.content) && out.content[0]?.text).toMatch(
      /^Downloaded \/workspace\/proj: 2 files, 1 directories, 1 symlinks stored as links, 1 sockets\/FIFOs\/devices left out; tar of \d+ bytes, base64 in the next block\.$/,
    );
    expect(await listTar(tarOf(out))).toEqual({ 'a.txt': 'A', 'pw': '-> /etc/passwd', 'sub/': 'dir', 'sub/b.txt': 'B' });
  });

  it('packs one file under its own name, and round-trips through upload', async () => {
    await writeFile(path.join(ws.workspaceDir, 'data.csv'), 'x,y\n1,2\n');
    const out = await download('data.csv');
    expect(await listTar(tarOf(out))).toEqual({ 'data.csv': 'x,y\n1,2\n' });
    await upload(tarOf(out), 'copy');
    expect(await readFile(path.join(ws.workspaceDir, 'copy/data.csv'), 'utf8')).toBe('x,y\n1,2\n');
  });

  it('refuses a symlink to /etc/passwd and a symlinked parent pointing out', async () => {
    await symlink('/etc/passwd', path.join(ws.workspaceDir, 'pw'));
    const out = await download('pw');
    expect(out).toEqual({
      status: 'failed',
      isError: true,
      content: 'The path /workspace/pw is a symbolic link to /etc/passwd, outside the workspace; tools do not follow it. Give a path inside /workspace.',
    });
    await symlink('/etc', path.join(ws.workspaceDir, 'etc'));
    expect(outcomeText(await download('etc/passwd'))).toContain('is a symbolic link to /etc, outside the workspace');
    expect(outcomeText(await download('etc'))).toContain('is a symbolic link to /etc, outside the workspace');
    expect(outcomeText(await download('/etc/passwd'))).toBe('The path /etc/passwd is outside the workspace; give a path under /workspace or relative to it.');
  });

  it('says the download limit', async () => {
    await writeFile(path.join(ws.workspaceDir, 'big.bin'), Buffer.alloc(5000));
    const small = createFilesTool({ maxBytes: 4096 });
    expect(outcomeText(await callTool(small, { action: 'download', path: 'big.bin' }, ctx))).toBe(
      '/workspace/big.bin is larger than 4096 bytes, the download limit; download a subdirectory, or compress it with bash (tar czf) first.',
    );
  });
});

describe('checkpoint storage names', () => {
  it('are never . or .. or a path, and differ for different ids', () => {
    const ids = ['..', '.', '../x', 'a/b', 'a_b', 'a.b', 'a.2eb', 'sess_1', 'x'.repeat(200), 'é'.repeat(100), '.'.repeat(200)];
    const names = ids.map(storageName);
    for (const n of names) {
      expect(n).toMatch(/^[A-Za-z0-9_.-]{1,200}$/);
      expect(['.', '..']).not.toContain(n);
    }
    expect(new Set(names).size).toBe(ids.length);
    expect(storageName('sess_1')).toBe('sess_1');
  });
});
