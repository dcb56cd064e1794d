import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DriverRegistry } from '../../../src/sandbox/driver-registry.js';
import { isRunnerError } from '../../../src/util/errors.js';
import { IMAGES_DIR, sandboxId, spec, tempDir } from './helpers.js';

describe('DriverRegistry', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  beforeAll(async () => {
    work = await tempDir('sr-registry-');
  });
  afterAll(async () => {
    await work?.remove();
  });

  it('reports a driver that is not installed with its fix while the others keep working', async () => {
    const registry = new DriverRegistry({
      bwrap: { imagesDir: IMAGES_DIR, workRoot: path.join(work.dir, 'bw'), cgroupParent: `sandbox-runner-test-${process.pid}-r` },
      docker: { workRoot: path.join(work.dir, 'dk'), cli: path.join(work.dir, 'no-such-docker') },
    });
    const reports = await registry.start();
    expect(reports.map((r) => [r.name, r.available])).toEqual([
      ['bwrap', true],
      ['docker', false],
    ]);
    expect(reports[1]!.fix).toBe('apt-get install -y docker.io');
    expect(registry.available()).toEqual(['bwrap']);

    let err: unknown;
    try {
      registry.get('docker');
    } catch (e) {
      err = e;
    }
    expect(isRunnerError(err, 'driver_unavailable')).toBe(true);
    expect((err as Error).message).toMatch(/docker.*not installed.*run: apt-get install -y docker\.io/);
    expect(() => registry.get('lxc')).toThrow(/not configured on this runner; use one of: bwrap, docker/);

    const bwrap = registry.get('bwrap') as import('../../../src/sandbox/bwrap/bwrap-driver.js').BwrapDriver;
    const sb = await bwrap.create(spec(sandboxId('reg')));
    try {
      const r = await sb.run({ argv: ['/bin/echo', 'works'] });
      expect(r.stdout.toString()).toBe('works\n');
    } finally {
      await sb.dispose();
      await bwrap.cleanupOrphans({ parentToo: true });
    }
  });

  it('reports a bwrap binary that is missing with apt-get install bubblewrap', async () => {
    const registry = new DriverRegistry({ bwrap: { imagesDir: IMAGES_DIR, workRoot: path.join(work.dir, 'bw2'), bwrapPath: '/nonexistent/bwrap' } });
    await registry.start();
    expect(() => registry.get('bwrap')).toThrow(/bubblewrap.*not installed.*run: apt-get install -y bubblewrap/);
  });
});
