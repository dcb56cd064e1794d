import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BwrapDriver } from '../../../src/sandbox/bwrap/bwrap-driver.js';
import { hostProcessesHolding, IMAGES_DIR, sandboxId, spec, tempDir } from './helpers.js';

// A sandbox's environment holds credentials: bwrap reads it from a pipe
// (`--args FD`), so no value is on any host command line, which every local
// user can read in /proc.
describe('bwrap environment', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let driver: BwrapDriver;

  beforeAll(async () => {
    work = await tempDir('sr-bwrap-env-');
    driver = new BwrapDriver({ imagesDir: IMAGES_DIR, workRoot: path.join(work.dir, 'sandboxes'), cgroupParent: `sandbox-runner-test-${process.pid}-env` });
  });

  afterAll(async () => {
    await driver?.cleanupOrphans({ parentToo: true });
    await work?.remove();
  });

  it('reaches the program exactly, and no value is on a host command line while it runs', async () => {
    const sessionSecret = 'session-secret-Vx83kq';
    const runSecret = 'run-secret-Pq19zz';
    const sb = await driver.create(spec(sandboxId('env'), { env: { PATH: '/usr/bin:/bin', SESSION_TOKEN: sessionSecret, SPACED: 'a b\nc "d"' } }));
    try {
      const seen: number[][] = [];
      const r = await sb.run({
        argv: ['/bin/sh', '-c', 'echo ready; sleep 0.5; printf "%s|%s|%s" "$SESSION_TOKEN" "$RUN_TOKEN" "$SPACED"'],
        env: { RUN_TOKEN: runSecret },
        onOutput: async (_stream, chunk) => {
          if (!chunk.toString().includes('ready')) return;
          seen.push(await hostProcessesHolding(sessionSecret, 'cmdline'), await hostProcessesHolding(runSecret, 'cmdline'));
        },
      });
      expect(r.exitCode).toBe(0);
      expect(r.stdout.toString()).toBe(`ready\n${sessionSecret}|${runSecret}|a b\nc "d"`);
      // Looked while the sandbox ran: its wrapper, setpriv, bwrap and the program were all there.
      expect(seen).toEqual([[], []]);
    } finally {
      await sb.dispose();
    }
  });
});
