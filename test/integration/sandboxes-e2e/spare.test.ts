import { readdir } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../helpers/processes.js';
import { E2E, text } from './harness.js';

const CGROUP_ROOTS = ['/sys/fs/cgroup', '/sys/fs/cgroup/memory', '/sys/fs/cgroup/pids', '/sys/fs/cgroup/cpu'];
const cgroupParent = (runnerId: string) => `sandbox-runner-${runnerId.toLowerCase().replace(/[^a-z0-9-]/g, '-')}`;

/** The runner's sandbox cgroup folders on this host (v1: one per controller; v2: one). */
async function runnerCgroups(runnerId: string): Promise<string[]> {
  const parent = cgroupParent(runnerId);
  const out: string[] = [];
  for (const r of CGROUP_ROOTS) {
    for (const e of await readdir(`${r}/${parent}`, { withFileTypes: true }).catch(() => [])) if (e.isDirectory()) out.push(`${r}/${parent}/${e.name}`);
  }
  return out;
}

/** The runner's own cgroup folders (the parents of its sandboxes' cgroups) that exist. */
async function runnerCgroupParents(runnerId: string): Promise<string[]> {
  const dirs = CGROUP_ROOTS.map((r) => `${r}/${cgroupParent(runnerId)}`);
  const found = await Promise.all(dirs.map((d) => readdir(d).then(() => d, () => undefined)));
  return found.filter((d): d is string => d !== undefined);
}

/** Host pids of bwrap processes whose command line names `dir`. */
async function bwrapsUnder(dir: string): Promise<number[]> {
  const { readFile } = await import('node:fs/promises');
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const cmd = (await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (cmd.some((a) => a.endsWith('bwrap')) && cmd.some((a) => a.startsWith(dir))) pids.push(Number(name));
  }
  return pids;
}

// The spare: one never-used fresh sandbox made ahead for the next call without
// a session. Real control plane, real runner process, real bubblewrap.
describe('the spare fresh sandbox', () => {
  let e2e: E2E;
  beforeAll(async () => {
    // A short drain, so that shutdown cancels the call left running by the last test well before the harness's SIGKILL.
    e2e = await E2E.start({ SANDBOX_RUNNER_SANDBOX__SPARE: 'true', SANDBOX_RUNNER_CALLS__DRAIN_TIMEOUT_MS: '500' });
  });
  afterAll(() => e2e?.stop());

  it('is made ahead: three sandbox folders wait while the runner is idle, each with its first process pre-started', async () => {
    await waitUntil(async () => ((await e2e.sandboxDirs()).length === 3 ? true : undefined), 20_000, 'spares made');
    // Each spare's bwrap is already running, waiting for the spec of the call that takes it.
    await waitUntil(async () => {
      const dirs = await e2e.sandboxDirs();
      for (const d of dirs) if ((await bwrapsUnder(`${e2e.workDir}/${d}/`)).length === 0) return undefined;
      return dirs.length === 3 ? true : undefined;
    }, 20_000, 'spares pre-started');
  });

  it('serves one call only: files a call writes are never seen by the next', async () => {
    const seen: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await e2e.call('exec', { argv: ['/bin/sh', '-c', `ls -A /workspace /tmp; echo call-${i} > /workspace/mark-${i}; echo t > /tmp/t-${i}`] });
      expect(r).toMatchObject({ status: 'completed', isError: false });
      seen.push(text(r.content));
    }
    for (const out of seen) {
      expect(out).not.toMatch(/mark-|t-\d/);
    }
    // Each call's sandbox is removed after it (in the background, so a used one
    // may still be there for a moment); in the end the folders left are the
    // next spares, untouched. A used sandbox that stayed would time this out.
    await waitUntil(
      async () => {
        const dirs = await e2e.sandboxDirs();
        if (dirs.length !== 3) return undefined;
        for (const d of dirs) {
          const files = await readdir(`${e2e.workDir}/${d}/workspace`).catch(() => ['(being removed)']);
          if (files.length > 0) return undefined;
        }
        return true;
      },
      20_000,
      'used sandboxes removed, three untouched spares left',
    );
  });

  it('is as isolated and limited as a sandbox made on demand', async () => {
    const r = await e2e.call('exec', {
      argv: ['/bin/sh', '-c', 'id -u; cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d " "; env | cut -d= -f1 | sort | tr "\\n" " "'],
      env: { ONLY_THIS: '1' },
    });
    expect(r.isError).toBe(false);
    const lines = text(r.content).split('\n');
    // uid 1000 inside, only the loopback interface, only the environment given.
    expect(lines).toContain('1000');
    expect(lines.some((l) => l.trim() === 'HOME LANG ONLY_THIS PATH PWD TERM'), lines.join('|')).toBe(true);
    expect(lines.filter((l) => /^[a-z0-9]+$/.test(l) && !/^\d+$/.test(l))).toEqual(['lo']);
  });

  it("hands a call its exact argv and env through the pre-started process, never on a host command line", async () => {
    await waitUntil(async () => ((await bwrapsUnder(e2e.workDir)).length >= 3 ? true : undefined), 20_000, 'spares pre-started');
    const secret = `sk-spare-${process.pid}-${Date.now()}`;
    const argv = ['/bin/sh', '-c', 'printf "%s|" "$@"; echo "key:${#API_KEY}:${API_KEY%%-*}"; sleep 2', 'sh', 'a b', '$(id)', "it's", 'l1\nl2'];
    const id = await e2e.start('exec', { argv, env: { API_KEY: secret } });
    const seen = new Set<string>();
    const ended = e2e.waitEnded(id);
    let done = false;
    void ended.finally(() => (done = true));
    // While the call runs, no host process has the value on its command line.
    while (!done) {
      for (const name of await readdir('/proc')) {
        if (!/^\d+$/.test(name)) continue;
        const { readFile } = await import('node:fs/promises');
        const cmd = await readFile(`/proc/${name}/cmdline`).catch(() => Buffer.alloc(0));
        if (cmd.includes(secret)) seen.add(name);
      }
    }
    const r = await ended;
    expect(seen.size).toBe(0);
    expect(r).toMatchObject({ status: 'completed', isError: false });
    expect(text(r.content)).toContain("a b|$(id)|it's|l1\nl2|");
    // The program holds the value (its length and prefix printed, never the value itself).
    expect(text(r.content)).toContain(`key:${secret.length}:sk`);
  });

  it('shutdown leaves no sandbox folder, no bwrap process and no cgroup behind', async () => {
    await waitUntil(async () => ((await e2e.sandboxDirs()).length === 3 ? true : undefined), 20_000, 'spares made');
    await waitUntil(async () => ((await bwrapsUnder(e2e.workDir)).length >= 3 ? true : undefined), 20_000, 'spares pre-started');
    expect((await runnerCgroups(e2e.runnerId)).length).toBeGreaterThan(0);
    expect((await runnerCgroupParents(e2e.runnerId)).length).toBeGreaterThan(0);
    // A call still running at shutdown, beside the spare.
    const id = await e2e.start('exec', { argv: ['sleep', '100'] });
    await waitUntil(async () => ((await e2e.get(id)).status === 'running' ? true : undefined), 10_000, 'call running');
    await e2e.runner.stop();
    expect(await e2e.sandboxDirs()).toEqual([]);
    expect(await runnerCgroups(e2e.runnerId)).toEqual([]);
    // Nor its own folders: a runner re-paired under a new id would leave them forever.
    expect(await runnerCgroupParents(e2e.runnerId)).toEqual([]);
    expect(await bwrapsUnder(e2e.workDir)).toEqual([]);
  });
});
