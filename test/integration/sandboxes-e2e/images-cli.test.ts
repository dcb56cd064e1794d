import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO, runCli } from '../../helpers/processes.js';

// `sandbox-runner images list|build` as a user runs it: a real child process.
describe('sandbox-runner images', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'images-cli-'));
    // An images dir of our own: one definition whose build.sh writes a tiny rootfs.
    await mkdir(path.join(dir, 'tiny'));
    await writeFile(
      path.join(dir, 'tiny', 'build.sh'),
      '#!/bin/bash\nset -e\nout="$SANDBOX_IMAGES_OUT/tiny"\nmkdir -p "$out/rootfs/bin"\ncp /bin/sh "$out/rootfs/bin/sh"\necho "stamp-$*" > "$out/stamp"\necho "[image tiny] built $*"\n',
      { mode: 0o755 },
    );
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));
  const env = () => ({ SANDBOX_RUNNER_SANDBOX__IMAGES_DIR: dir });

  it('lists the images of the default images dir (the package sandbox-images), base among them', async () => {
    const r = await runCli(['images', 'list', '--json']);
    expect(r.code).toBe(0);
    const list = JSON.parse(r.stdout);
    expect(list.find((i: { name: string }) => i.name === 'base')).toMatchObject({ definitionDir: path.join(REPO, 'sandbox-images', 'base'), dockerTag: 'sandbox-runner/base:latest' });
  });

  it('builds an image and lists it as built', async () => {
    const before = await runCli(['images', 'list'], env());
    expect(before.stdout).toMatch(/^tiny\tnot built\tsandbox-runner\/tiny:latest$/m);
    const built = await runCli(['images', 'build', 'tiny', '--force', '--no-docker'], env());
    expect(built.code).toBe(0);
    expect(built.stdout.trim()).toBe(`tiny: ${path.join(dir, 'out', 'tiny', 'rootfs')}`);
    const after = JSON.parse((await runCli(['images', 'list', '--json'], env())).stdout);
    expect(after).toEqual([expect.objectContaining({ name: 'tiny', built: true, stamp: 'stamp---force --no-docker' })]);
  });

  it('names the known images when asked for an unknown one (exit 1)', async () => {
    const r = await runCli(['images', 'build', 'nope'], env());
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no sandbox image named "nope"; pick one of: tiny/);
  });
});
