import { execa } from 'execa';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DockerDriver } from '../../../src/sandbox/docker/docker-driver.js';
import type { DockerSandbox } from '../../../src/sandbox/docker/docker-sandbox.js';
import { sandboxId, spec, tempDir } from './helpers.js';

// What a hostile command could reach past the hardening flags checked in
// docker.test.ts: the engine's own files for the container, the host uid the
// container runs as, what two live sandboxes share. From inside real
// containers started by the driver, the runner as root.
describe('docker containment', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let driver: DockerDriver;
  let a: DockerSandbox;
  let b: DockerSandbox;
  const owner = `test-dc-${process.pid}`;

  beforeAll(async () => {
    work = await tempDir('sr-docker-cont-');
    driver = new DockerDriver({ workRoot: path.join(work.dir, 'sandboxes'), owner });
    const env = { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: '/workspace', SECRET_TOKEN: 'sk-dc-4471' };
    a = (await driver.create(spec(sandboxId('dca'), { env }))) as DockerSandbox;
    b = (await driver.create(spec(sandboxId('dcb')))) as DockerSandbox;
  });

  afterAll(async () => {
    await a?.dispose();
    await b?.dispose();
    await driver?.cleanupOrphans();
    await work?.remove();
  });

  const sh = async (sb: DockerSandbox, script: string) => {
    const r = await sb.run({ argv: ['/bin/bash', '-c', script] });
    return { ...r, out: r.stdout.toString().trim(), err: r.stderr.toString().trim() };
  };

  it("keeps nothing in the engine's logs: PID 1's stdout is writable from inside and would be an unbounded host file holding secrets", async () => {
    const r = await sh(a, 'echo "LOGGED $SECRET_TOKEN" > /proc/1/fd/1 && head -c 1048576 /dev/zero > /proc/1/fd/2 && echo wrote');
    expect(r.out).toBe('wrote');
    const [c] = JSON.parse((await execa('docker', ['inspect', a.containerId])).stdout) as Array<{ LogPath: string; HostConfig: { LogConfig: { Type: string } } }>;
    expect(c!.HostConfig.LogConfig.Type).toBe('none');
    expect(c!.LogPath).toBe('');
    const logs = await execa('docker', ['logs', a.containerId], { reject: false });
    expect(`${logs.stdout}${logs.stderr}`).not.toContain('sk-dc-4471');
  });
});
