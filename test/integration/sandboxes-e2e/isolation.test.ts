import { writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { E2E, text } from './harness.js';

// Hostile code in one sandbox, through the real control plane and runner:
// it sees neither the host, nor the runner's state, nor another session.
describe('a hostile command in one sandbox', () => {
  let e2e: E2E;
  let hostSecret: string;
  let server: Server;
  let port: number;
  let hits = 0;

  beforeAll(async () => {
    e2e = await E2E.start();
    hostSecret = path.join(e2e.spine.dir, 'host-secret.txt');
    await writeFile(hostSecret, 'host-only');
    server = createServer((_req, res) => {
      hits++;
      res.end('reached the host');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as { port: number }).port;
  });
  afterAll(async () => {
    await new Promise<void>((r) => server?.close(() => r()));
    await e2e?.stop();
  });

  it("cannot see the host's files, the runner's state dir, another session's workspace or the host network", async () => {
    const victim = await e2e.openSession();
    const attacker = await e2e.openSession();
    await e2e.call('bash', { command: 'echo victim-data > /workspace/secret-b.txt' }, { sessionId: victim });
    await e2e.call('bash', { command: 'true' }, { sessionId: attacker });
    const [victimDir] = (await e2e.sandboxDirs()).filter(Boolean);
    expect(victimDir).toBeDefined();

    const probes: Record<string, string> = {
      uid: 'id -u',
      hostSecret: `cat ${hostSecret} 2>&1 || echo DENIED`,
      stateDir: `ls ${e2e.stateDir} 2>&1 || echo DENIED`,
      identity: `cat ${path.join(e2e.stateDir, 'identity.json')} 2>&1 || echo DENIED`,
      workDir: `ls ${e2e.workDir} 2>&1 || echo DENIED`,
      repo: 'ls /work/main 2>&1 || echo DENIED',
      findVictim: "find / -name 'secret-b.txt' -not -path '/proc/*' 2>/dev/null | head -1; echo END",
      runnerProc: `cat /proc/${e2e.runner.child.pid}/cmdline 2>&1 || echo DENIED`,
      procCount: "ls /proc | grep -c '^[0-9]'",
      writeRoot: 'touch /usr/bin/evil 2>&1 || echo DENIED',
      mount: 'mount -t tmpfs x /mnt 2>&1 || echo DENIED',
      network: `curl -sS -m 3 http://127.0.0.1:${port}/ 2>&1 || echo DENIED`,
    };
    const seen: Record<string, string> = {};
    for (const [k, cmd] of Object.entries(probes)) {
      seen[k] = text((await e2e.call('bash', { command: cmd }, { sessionId: attacker })).content);
    }
    expect(seen.uid).not.toBe('0');
    for (const k of ['hostSecret', 'stateDir', 'identity', 'workDir', 'repo', 'runnerProc', 'writeRoot', 'mount', 'network']) {
      expect(seen[k], k).toMatch(/DENIED$/);
    }
    expect(seen.hostSecret).not.toContain('host-only');
    expect(seen.findVictim).toBe('END');
    expect(Number(seen.procCount)).toBeLessThan(10);
    expect(hits).toBe(0);

    // Killing everything it can see ends only its own sandbox.
    // (kill -1 spares the caller itself, so the sh lives on to say so.)
    const killAll = await e2e.call('exec', { argv: ['sh', '-c', 'kill -9 -1; echo killed-what-it-could'] });
    expect(text(killAll.content)).toMatch(/killed-what-it-could/);
    expect(text((await e2e.call('bash', { command: 'cat /workspace/secret-b.txt' }, { sessionId: victim })).content)).toBe('victim-data');
    expect(e2e.runner.child.exitCode).toBeNull();
    expect((await e2e.call('javascript', { code: '1 + 1' })).content).toBe('2');

    expect(await e2e.closeSession(attacker)).toBe(204);
    expect(await e2e.closeSession(victim)).toBe(204);
  });
});
