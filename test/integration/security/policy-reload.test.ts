import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, waitUntil, type RunningProcess } from '../../helpers/processes.js';
import { Spine } from '../../helpers/spine.js';
import { execOutput, readAudit } from './security-helpers.js';

const DENY_EXEC = ['policy:', '  tools:', '    deny: [exec]', ''].join('\n');
const ALLOW_ALL = ['policy:', '  tools:', '    allow: ["*"]', ''].join('\n');

// A real runner process with a config file; the policy is changed on disk and a real SIGHUP sent.
describe('local policy over the wire, and SIGHUP reload', () => {
  let spine: Spine;
  let runnerId: string;
  let stateDir: string;
  let config: string;
  let runner: RunningProcess;

  beforeAll(async () => {
    spine = await Spine.start();
    await chmod(spine.dir, 0o711);
    ({ runnerId, stateDir } = await spine.pair('policy'));
    config = path.join(spine.dir, 'runner.yaml');
    await writeFile(config, DENY_EXEC);
    runner = await spine.startRunner(runnerId, stateDir, { SANDBOX_RUNNER_CONFIG: config });
  });
  afterAll(async () => spine?.stop());

  it('a tool the policy denies comes back as policy_denied with the rule, and nothing runs', async () => {
    const r = await spine.api.call(runnerId, { name: 'exec', input: { argv: ['sh', '-c', 'echo ran'] } });
    expect(r.body).toMatchObject({ status: 'failed', isError: true });
    expect(r.body.content).toBe('policy_denied: tool exec is denied by local policy (policy.tools.deny) (rule tools.deny)');
  });

  it('SIGHUP reloads the policy without dropping the connection or a running call; a bad file keeps the old policy', async () => {
    // A call that is running while the policy changes.
    const long = await spine.api.call(
      runnerId,
      { name: 'javascript', input: { code: 'const t = Date.now(); while (Date.now() - t < 1500) {} "survived the reload"', timeoutMs: 20_000 } },
      '?wait=false',
    );
    await waitUntil(async () => (await readAudit(stateDir)).some((e) => e.type === 'call.received' && e.callId === long.body.id), 10_000, 'long call running');

    await writeFile(config, ALLOW_ALL);
    runner.child.kill('SIGHUP');
    await runner.waitForOutput(/policy reloaded/);

    const allowed = await spine.api.call(runnerId, { name: 'exec', input: { argv: ['sh', '-c', 'echo ran'] } });
    expect(execOutput(allowed.body)).toMatchObject({ stdout: 'ran\n', exitCode: 0 });
    const finished = await waitUntil(async () => {
      const r = await spine.api.request('GET', `/v1/tool-calls/${long.body.id}`);
      return r.body.status === 'running' ? undefined : r.body;
    });
    expect(finished).toMatchObject({ status: 'completed', content: 'survived the reload' });

    // One connection all along: connected once, never disconnected.
    expect(runner.output().match(/connected to the control plane/g)).toHaveLength(1);
    expect(runner.output()).not.toMatch(/disconnected/);
    expect((await readAudit(stateDir)).filter((e) => e.type === 'policy.reload')).toHaveLength(1);

    // An invalid policy is refused; the one in force stays.
    await writeFile(config, ['policy:', '  tools:', '    allow: exec', ''].join('\n'));
    runner.child.kill('SIGHUP');
    await runner.waitForOutput(/reload failed; the previous policy stays in force/);
    const still = await spine.api.call(runnerId, { name: 'exec', input: { argv: ['true'] } });
    expect(still.body.isError).toBe(false);
    expect(runner.child.exitCode).toBeNull();
  });
});

describe('key hygiene', () => {
  let spine: Spine;
  beforeAll(async () => {
    spine = await Spine.start();
  });
  afterAll(async () => spine?.stop());

  it('the daemon refuses to start when secret-keys.json is readable by others, naming the file and the fix', async () => {
    const { stateDir } = await spine.pair('loose');
    const keys = path.join(stateDir, 'secret-keys.json');
    await chmod(keys, 0o644);
    const r = await runCli(['start', '--state-dir', stateDir], { SANDBOX_RUNNER_HEALTH__PORT: '0' });
    expect(r.code).toBe(1);
    expect(r.stderr + r.stdout).toContain(keys);
    expect(r.stderr + r.stdout).toContain(`chmod 600 ${keys}`);
  });
});
