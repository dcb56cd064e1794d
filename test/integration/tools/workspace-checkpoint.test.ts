import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRunnerError } from '../../../src/util/errors.js';
import { bashTool } from '../../../src/tools/bash/index.js';
import { filesTool } from '../../../src/tools/files/index.js';
import { checkpointWorkspace, restoreWorkspace } from '../../../src/tools/files/workspace-checkpoint.js';
import { WorkspaceFs } from '../../../src/tools/workspace-path.js';
import { bwrapSandbox, callTool, makeToolContext, MemorySessionState, outcomeText, type TestBwrap } from '../../helpers/tool-context.js';

// Sandboxed code swaps directory `d` and symlink `s` (pointing at a host
// directory) with renameat2(RENAME_EXCHANGE) as fast as it can, for a bounded
// time, while the runner checkpoints or restores the workspace as root.
const SWAPPER = `
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
target, seconds, make = sys.argv[1], float(sys.argv[2]), sys.argv[3] == 'make'
os.chdir('/workspace')
end = time.time() + seconds
while time.time() < end:
    try:
        if not os.path.lexists('s'):
            os.symlink(target, 's')
        if make and not os.path.lexists('d'):
            os.mkdir('d')
            with open('d/secret', 'w') as f:
                f.write('inside')
    except OSError:
        pass
    libc.renameat2(-100, b'd', -100, b's', 2)
`;

describe('checkpoint and restore of a live session workspace', () => {
  let box: TestBwrap;
  let work: string;
  const session = new MemorySessionState();
  beforeAll(async () => {
    box = await bwrapSandbox();
    work = await mkdtemp(path.join(tmpdir(), 'sr-ckpt-'));
  });
  afterAll(async () => {
    await session.dispose();
    await box?.dispose();
    await rm(work, { recursive: true, force: true });
  });
  const ctx = () => makeToolContext({ sandbox: box.sandbox, session });
  const ws = () => WorkspaceFs.open(box.sandbox.workspaceDir);
  const limits = { maxBytes: 64 * 1024 * 1024 };
  const bash = async (command: string) => outcomeText(await callTool(bashTool, { command }, ctx()));
  const swap = async (target: string, seconds: number, make: boolean) => {
    await bash(`cat > /tmp/swap.py <<'PY'\n${SWAPPER}\nPY`);
    await bash(`(python3 /tmp/swap.py ${target} ${seconds} ${make ? 'make' : 'wait'}) >/dev/null 2>&1 & echo $! > /tmp/swapper`);
  };
  const stopSwap = () => bash('kill $(cat /tmp/swapper) 2>/dev/null; wait 2>/dev/null; rm -rf /workspace/*; true');

  it('a restore brings back files, directories, modes and symlinks as they were, and replaces what came since', async () => {
    const empty = path.join(work, 'empty.tar');
    // An empty workspace checkpoints too (node-tar's pack refused an empty list).
    await checkpointWorkspace(await ws(), empty, limits);
    await bash('mkdir -p src/deep/er && printf "a\\nb\\n" > src/deep/er/f.txt && chmod 750 src/deep && printf "#!/bin/sh\\n" > run.sh && chmod 755 run.sh && ln -s src/deep/er/f.txt link && ln -s /etc/passwd out && mkfifo pipe && ln src/deep/er/f.txt hard');
    const file = path.join(work, 'round.tar');
    await checkpointWorkspace(await ws(), file, limits);
    const before = await bash('find . -printf "%p %y %m %U %n %l\\n" | sort');
    await bash('rm -rf src && echo later > later.txt');
    await expect(restoreWorkspace(await ws(), path.join(work, 'nope.tar'), limits)).rejects.toThrow(/does not exist for this session/);
    expect(await bash('ls')).toContain('later.txt');
    await restoreWorkspace(await ws(), file, limits);
    // Everything but the FIFO, which a checkpoint leaves out.
    expect(await bash('find . -printf "%p %y %m %U %n %l\\n" | sort')).toBe(before.split('\n').filter((l) => !l.startsWith('./pipe ')).join('\n'));
    expect(await bash('cat link && ./run.sh && echo ran')).toBe('a\nb\nran');
    // The file with two names is one file again (a copy would take its space twice).
    expect(await bash('stat -c %i hard src/deep/er/f.txt | uniq | wc -l')).toBe('1');
    await restoreWorkspace(await ws(), empty, limits);
    expect(await bash('ls -A | wc -l')).toBe('0');
  });

  it('a tree thousands of levels deep holds no more than a bounded number of the runner\'s fds, and a restore still clears it', async () => {
    const empty = path.join(work, 'empty-deep.tar');
    await checkpointWorkspace(await ws(), empty, limits);
    await bash(`python3 -c "import os\nfor i in range(3000):\n  os.mkdir('a'); os.chdir('a')\nopen('f','w').write('deep')"`);
    // fds are shared by every session of the runner: sample how many this process holds meanwhile.
    const { readdirSync } = await import('node:fs');
    let most = 0;
    const sampler = setInterval(() => (most = Math.max(most, readdirSync('/proc/self/fd').length)), 10);
    const base = readdirSync('/proc/self/fd').length;
    let downloaded;
    try {
      downloaded = await callTool(filesTool, { action: 'download', path: '/workspace' }, ctx());
      await expect(checkpointWorkspace(await ws(), path.join(work, 'deep.tar'), limits)).rejects.toThrow(/more than 256 directories deep, the checkpoint limit/);
    } finally {
      clearInterval(sampler);
    }
    expect(outcomeText(downloaded)).toMatch(/more than 256 directories deep, the download limit/);
    expect(most - base).toBeLessThan(600);
    await restoreWorkspace(await ws(), empty, limits);
    expect(await bash('ls -A | wc -l')).toBe('0');
  });

  it('a checkpoint never reads a host directory through a swapped symlink (race)', async () => {
    const host = path.join(work, 'host-secret');
    await mkdir(host);
    await writeFile(path.join(host, 'secret'), 'HOST-CANARY-1');
    await swap(host, 60, true);
    let leaked = 0;
    let inside = 0;
    try {
      for (let i = 0; i < 100 && leaked === 0; i++) {
        const file = path.join(work, `c${i}.tar`);
        await checkpointWorkspace(await ws(), file, limits);
        const tar = await readFile(file);
        if (tar.includes('HOST-CANARY-1')) leaked++;
        if (tar.includes('inside')) inside++;
        await rm(file, { force: true });
      }
    } finally {
      await stopSwap();
    }
    expect(leaked).toBe(0);
    // The walk did meet the real directory while it was being swapped.
    expect(inside).toBeGreaterThan(0);
  });

  it('a restore never deletes host files through a swapped symlink (race)', async () => {
    const host = path.join(work, 'host-victim');
    await mkdir(host);
    const file = path.join(work, 'one.tar');
    await bash('echo kept > kept.txt');
    await checkpointWorkspace(await ws(), file, limits);
    await swap(host, 60, true);
    let deleted = 0;
    let restored = 0;
    try {
      for (let i = 0; i < 100 && deleted === 0; i++) {
        for (let j = 0; j < 20; j++) await writeFile(path.join(host, `keep-${j}`), 'x');
        await restoreWorkspace(await ws(), file, limits);
        restored++;
        deleted = 20 - (await readdir(host)).length;
      }
    } finally {
      await stopSwap();
    }
    expect(deleted).toBe(0);
    expect(restored).toBe(100);
  });

  it('a restore never writes into a host directory through a swapped symlink (race)', async () => {
    const host = path.join(work, 'host-target');
    await mkdir(host);
    await bash('mkdir -p d && for i in $(seq 1 50); do echo planted > d/f$i; done');
    const file = path.join(work, 'files.tar');
    await checkpointWorkspace(await ws(), file, limits);
    await bash('rm -rf d');
    await swap(host, 60, false);
    let planted: string[] = [];
    let refused = 0;
    try {
      for (let i = 0; i < 100 && planted.length === 0; i++) {
        await restoreWorkspace(await ws(), file, limits).catch((err: unknown) => {
          // The swap met: the runner saw a link (or a directory changing under it) and would not go on.
          if (isRunnerError(err, 'invalid_input')) refused++;
          else throw err;
        });
        planted = (await readdir(host)).filter((n) => n.startsWith('f'));
      }
    } finally {
      await stopSwap();
    }
    expect(planted).toEqual([]);
    expect(refused).toBeGreaterThan(0);
  });
});
