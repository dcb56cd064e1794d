import path from 'node:path';
import { mkdir, writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { buildImage, listImages, resolveImage } from '../../../src/sandbox/images/images.js';
import { isRunnerError } from '../../../src/util/errors.js';
import { IMAGES_DIR, tempDir } from './helpers.js';

describe('sandbox images', () => {
  it('lists the base image as built, with its rootfs and docker tag', async () => {
    const images = await listImages(IMAGES_DIR);
    const base = images.find((i) => i.name === 'base');
    expect(base).toMatchObject({ name: 'base', dockerTag: 'sandbox-runner/base:latest' });
    expect(base!.rootfs).toBe(path.join(IMAGES_DIR, 'out', 'base', 'rootfs'));
    expect(base!.stamp).toMatch(/^[0-9a-f]{16}$/);
  });

  it('resolves a built image to its rootfs and anything else to undefined', async () => {
    expect(await resolveImage('base', IMAGES_DIR)).toBe(path.join(IMAGES_DIR, 'out', 'base', 'rootfs'));
    expect(await resolveImage('not-built', IMAGES_DIR)).toBeUndefined();
    expect(await resolveImage('../etc', IMAGES_DIR)).toBeUndefined();
  });

  it('buildImage is quick when already built and returns the rootfs', async () => {
    expect(await buildImage('base', { imagesDir: IMAGES_DIR })).toBe(path.join(IMAGES_DIR, 'out', 'base', 'rootfs'));
  });

  it('refuses an unknown image, naming the ones there are', async () => {
    const err = await buildImage('nope', { imagesDir: IMAGES_DIR }).catch((e: unknown) => e);
    expect(isRunnerError(err, 'invalid_input')).toBe(true);
    expect((err as Error).message).toMatch(/no sandbox image named "nope"; pick one of: .*base/);
  });

  it('reports a failing build with its output in detail', async () => {
    const tmp = await tempDir('sr-images-');
    try {
      await mkdir(path.join(tmp.dir, 'broken'));
      await writeFile(path.join(tmp.dir, 'broken', 'build.sh'), 'echo "mmdebstrap: cannot reach mirror" >&2; exit 1\n');
      const err = await buildImage('broken', { imagesDir: tmp.dir }).catch((e: unknown) => e);
      expect(isRunnerError(err, 'sandbox_failed')).toBe(true);
      expect((err as { detail?: string }).detail).toContain('cannot reach mirror');
    } finally {
      await tmp.remove();
    }
  });
});
