import { execa } from 'execa';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BwrapDriver } from '../../../src/sandbox/bwrap/bwrap-driver.js';
import type { BwrapSandbox } from '../../../src/sandbox/bwrap/bwrap-sandbox.js';
import { SandboxSpawner } from '../../../src/sandbox/bwrap/sandbox-spawner.js';
import { captureLogger, IMAGES_DIR, sandboxId, spec, tempDir } from './helpers.js';

// A spare's pre-started waiter is a bash script. An image without bash must
// still serve calls: the spare starts nothing ahead and the run starts bwrap
// itself. (Before, the waiter was started anyway and a call handed to it
// failed with bwrap's "execvp /bin/bash: No such file or directory".)
describe('a spare sandbox whose image has no bash', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let outDir: string;
  let spawner: SandboxSpawner;
  let driver: BwrapDriver;
  const { logger, lines } = captureLogger();

  beforeAll(async () => {
    work = await tempDir('sr-nobash-');
    // The base image's tree as hard links (same file system, no copy of the
    // data), with bash removed from this copy only.
    outDir = path.join(IMAGES_DIR, 'out', `.test-nobash-${process.pid}`);
    await mkdir(outDir, { recursive: true });
    await mkdir(path.join(outDir, 'nobash'), { recursive: true });
    await execa('cp', ['-al', path.join(IMAGES_DIR, 'out', 'base', 'rootfs'), path.join(outDir, 'nobash', 'rootfs')]);
    await rm(path.join(outDir, 'nobash', 'rootfs', 'usr', 'bin', 'bash'));
    spawner = new SandboxSpawner();
    driver = new BwrapDriver({ imagesDir: IMAGES_DIR, imagesOutDir: outDir, workRoot: path.join(work.dir, 'sandboxes'), cgroupParent: `sandbox-runner-test-${process.pid}-nb`, spawner, logger });
  }, 60_000);

  afterAll(async () => {
    await spawner?.dispose();
    await driver?.cleanupOrphans({ parentToo: true });
    await rm(outDir, { recursive: true, force: true });
    await work?.remove();
  });

  it('runs the call exactly, without the waiter', async () => {
    const sb = (await driver.create(spec(sandboxId('nb'), { image: 'nobash' }))) as BwrapSandbox;
    try {
      await sb.prestart();
      // Nothing was started ahead: there is no shell for the waiter, and the operator is told so once.
      expect(sb.waiterStart).toBeUndefined();
      expect(lines.filter((l) => String(l.msg).startsWith('image nobash has no /bin/bash'))).toHaveLength(1);
      const r = await sb.run({ argv: ['/bin/sh', '-c', 'echo served; ls /usr/bin/bash 2>&1; exit 3'] });
      expect(r.exitCode).toBe(3);
      expect(r.stdout.toString()).toMatch(/^served\n.*No such file/s);
      // And the next run in the same sandbox too.
      const again = await sb.run({ argv: ['/bin/echo', 'again'] });
      expect(again.stdout.toString()).toBe('again\n');
    } finally {
      await sb.dispose();
    }
  });
});
