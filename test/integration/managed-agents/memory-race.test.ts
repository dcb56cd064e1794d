import { chmod, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createWorkerClient } from '../../../src/managed-agents/api-client.js';
import { MemoryMounts } from '../../../src/managed-agents/memory-mounts.js';
import { bashTool } from '../../../src/tools/bash/index.js';
import { FakeAnthropic } from '../../fakes/anthropic/fake-anthropic.js';
import { bwrapSandbox, callTool, makeToolContext, MemorySessionState, outcomeText } from '../../helpers/tool-context.js';

// Sandboxed code exchanges a regular file and a symlink to a host file in its
// memory folder (renameat2 RENAME_EXCHANGE) as fast as it can, while the
// runner (root) syncs the folder with the memory store.
const SWAPPER = `
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
os.chdir('/mnt/memory/notes')
end = time.time() + 60
while time.time() < end:
    try:
        if not os.path.lexists('s'):
            os.symlink(sys.argv[1], 's')
        if not os.path.lexists('f'):
            with open('f', 'w') as fh:
                fh.write('inside')
    except OSError:
        pass
    libc.renameat2(-100, b'f', -100, b's', 2)
`;

describe('memory folders in a live sandbox', () => {
  it('a sync never reads a host file through a symlink swapped in by sandboxed code (race), nor writes through a planted one', async () => {
    const fake = new FakeAnthropic();
    await fake.start();
    const root = await mkdtemp(path.join(os.tmpdir(), 'sr-ma-race-'));
    await chmod(root, 0o711);
    const secretDir = await mkdtemp(path.join(os.tmpdir(), 'sr-ma-secret-'));
    await writeFile(path.join(secretDir, 'secret'), 'HOST-CANARY-3');
    let box: Awaited<ReturnType<typeof bwrapSandbox>> | undefined;
    const state = new MemorySessionState();
    try {
      const { session } = fake.createSession({ memoryStores: [{ memory_store_id: 'memstore_1', name: 'notes' }] });
      const store = fake.memoryStores.get('memstore_1')!;
      const work = (await (
        await fetch(`${fake.url}/v1/environments/${fake.environmentId}/work/poll?block_ms=10`, {
          headers: { authorization: `Bearer ${fake.environmentKey}`, 'anthropic-beta': 'managed-agents-2026-04-01' },
        })
      ).json()) as { secret: string };
      const token = JSON.parse(Buffer.from(work.secret, 'base64url').toString()).sessions_token as string;
      const client = createWorkerClient({ baseUrl: fake.url, credential: token, helper: 'environments-worker' });
      const mounts = new MemoryMounts({ client, root, sessionKey: session.id, stores: [{ id: 'memstore_1', name: 'notes', mountPath: '/mnt/memory/notes', readOnly: false }], intervalMs: 0 });
      await mounts.mount(AbortSignal.timeout(10_000));
      box = await bwrapSandbox({}, { mounts: mounts.hostMounts() });
      const ctx = makeToolContext({ sandbox: box.sandbox, session: state });
      const bash = async (command: string) => outcomeText(await callTool(bashTool, { command }, ctx));
      await bash(`cat > /tmp/swap.py <<'PY'\n${SWAPPER}\nPY`);
      await bash(`(python3 /tmp/swap.py ${path.join(secretDir, 'secret')}) >/dev/null 2>&1 & echo $! > /tmp/swapper`);
      let leaked = false;
      let inside = 0;
      for (let i = 0; i < 200 && !leaked; i++) {
        await mounts.sync();
        const pushed = [...['/f', '/s']].map((p) => store.byPath(p)?.content ?? '');
        leaked = pushed.some((c) => c.includes('HOST-CANARY-3'));
        if (pushed.includes('inside')) inside++;
      }
      await bash('kill $(cat /tmp/swapper); wait 2>/dev/null; true');
      expect(leaked).toBe(false);
      // The sync did read the real file while it was being swapped.
      expect(inside).toBeGreaterThan(0);

      // No race needed: a folder the agent replaced by a symlink to a host folder, and a memory
      // under it changed in the store, must not be written through the link (it was, as root).
      await bash(`ln -s ${secretDir} /mnt/memory/notes/docs`);
      store.put('/docs/planted.md', 'from the store');
      await mounts.sync();
      expect(await readdir(secretDir)).toEqual(['secret']);
      expect(await bash('ls -l /mnt/memory/notes/docs | cut -c1')).toBe('l');
    } finally {
      await state.dispose();
      await box?.dispose();
      await fake.close();
      await rm(root, { recursive: true, force: true });
      await rm(secretDir, { recursive: true, force: true });
    }
  });
});
