import { stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DockerDriver } from '../../../src/sandbox/docker/docker-driver.js';
import type { DockerSandbox } from '../../../src/sandbox/docker/docker-sandbox.js';
import type { RunResult } from '../../../src/sandbox/driver.js';
import { sandboxId, spec, tempDir, type SpecOverrides } from './helpers.js';

// The docker driver with gVisor's runsc as its runtime (issue 3, deliverable 1).
// .ci/setup.d/20-sandbox.sh installs runsc and registers it with the engine
// (runtimeArgs --network=none), as docs/security.md tells operators to.
describe('docker sandbox under gVisor (runtime runsc)', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let driver: DockerDriver;
  let sb: DockerSandbox;
  const owner = `test-gv-${process.pid}`;

  beforeAll(async () => {
    work = await tempDir('sr-gvisor-');
    driver = new DockerDriver({ workRoot: path.join(work.dir, 'sandboxes'), owner, runtime: 'runsc' });
    sb = (await driver.create(spec(sandboxId('gv'), { env: { GIVEN: 'yes' } }))) as DockerSandbox;
  });

  afterAll(async () => {
    await sb?.dispose();
    await driver?.cleanupOrphans();
    await work?.remove();
  });

  const sh = async (script: string) => {
    const r = await sb.run({ argv: ['/bin/sh', '-c', script] });
    return { ...r, out: r.stdout.toString().trim() };
  };

  it('probe reports the runtime', async () => {
    const status = await driver.probe();
    expect(status).toMatchObject({ available: true });
    expect(status.message).toContain('runtime runsc');
  });

  it("runs the container on gVisor's kernel, not the host's", async () => {
    const [c] = JSON.parse((await execa('docker', ['inspect', sb.containerId])).stdout) as Array<{ HostConfig: { Runtime: string } }>;
    expect(c!.HostConfig.Runtime).toBe('runsc');
    const r = await sh('uname -r; dmesg 2>&1 | head -n 1');
    const [release, firstKernelLine] = r.out.split('\n');
    expect(release).not.toBe(os.release());
    expect(firstKernelLine).toContain('Starting gVisor');
  });

  it("keeps the hardening: the sandbox's own uid (its workspace's owner), no capabilities, loopback only, read-only root, writable workspace", async () => {
    const r = await sh('id -u; grep -E "^CapEff" /proc/self/status; ls /sys/class/net 2>/dev/null || tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " "; while read -r dev dir type opts rest; do [ "$dir" = / ] && echo "root $opts"; done < /proc/mounts; echo w > /workspace/w && cat /workspace/w; echo $GIVEN');
    const lines = r.out.split('\n');
    expect(lines[0]).toBe(String((await stat(sb.workspaceDir)).uid));
    expect(Number(lines[0])).toBeGreaterThan(65535);
    expect(r.out).toMatch(/CapEff:\s+0000000000000000/);
    expect(lines.filter((l) => /^(eth|ens|veth)/.test(l))).toEqual([]);
    // gVisor refuses the unprivileged user by permission before it gets to the read-only check: the mount table says it.
    expect(lines.find((l) => l.startsWith('root '))).toMatch(/^root ro\b/);
    expect(lines.slice(-2)).toEqual(['w', 'yes']);
  });

  describe('limits', () => {
    async function hostile(overrides: SpecOverrides, argv: string[], timeoutMs?: number): Promise<RunResult & { next?: RunResult }> {
      const s = await driver.create(spec(sandboxId('gvl'), overrides));
      try {
        const r = await s.run({ argv, ...(timeoutMs ? { timeoutMs } : {}) });
        if (r.ended !== 'memory' && r.ended !== 'sandbox_stopped') return r;
        // The container is gone: the sandbox's next command says so instead of hanging.
        return { ...r, next: await s.run({ argv: ['/bin/true'] }) };
      } finally {
        await s.dispose();
      }
    }

    it('a 10 GB stdout flood ends as output with a marker', async () => {
      const r = await hostile({ limits: { outputBytes: 64 * 1024 } }, ['/bin/sh', '-c', 'head -c 10G /dev/zero']);
      expect(r.ended).toBe('output');
      expect(r.stdout.toString()).toMatch(/\[output truncated: \d+ bytes dropped\]\n$/);
    });

    it('a wall-time overrun ends as wall_time', async () => {
      const r = await hostile({}, ['/bin/sh', '-c', 'sleep 600'], 500);
      expect(r.ended).toBe('wall_time');
    });

    // Under gVisor the process limit is the host's pids cgroup of the whole
    // sandbox kernel: a fork bomb exhausts it and the kernel stops, taking the
    // container with it. The run ends at once with that status, not at its deadline.
    it('a fork bomb stops the sandbox, and the run ends saying so', async () => {
      const r = await hostile({ limits: { maxProcesses: 64 } }, ['/bin/bash', '-c', 'bomb() { bomb | bomb & }; bomb; sleep 600'], 60_000);
      // 'processes' when the monitor read the pids cgroup's counter before the container went.
      expect(['processes', 'sandbox_stopped']).toContain(r.ended);
      if (r.next) expect(r.next.stderr.toString()).toMatch(/is not running/);
    });

    // gVisor's kernel dies with its memory cgroup's OOM kill: the run learns it from the container's stop.
    it('a memory balloon ends as memory', async () => {
      const r = await hostile({ limits: { memoryBytes: 96 * 1024 * 1024 } }, ['/usr/bin/python3', '-c', 'b = []\nwhile True: b.append(b"x" * (8 << 20))'], 20_000);
      expect(r.ended).toBe('memory');
      expect(r.next?.stderr.toString()).toMatch(/is not running/);
      expect(r.next?.exitCode).not.toBe(0);
    });
  });
});
