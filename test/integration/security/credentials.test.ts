import { chmod, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CALL_LOG_FILE, parseCallLog } from '../../../src/control-plane/call-store.js';
import { runCli, waitUntil } from '../../helpers/processes.js';
import { Spine } from '../../helpers/spine.js';
import { execOutput, readAudit } from './security-helpers.js';

// The reference control plane seals, a real runner process opens, real bwrap sandboxes run.
describe('credentials through the control-plane API', () => {
  let spine: Spine;
  let runnerId: string;
  let stateDir: string;

  beforeAll(async () => {
    spine = await Spine.start();
    // Sandboxed processes run as another user: they must be able to enter the workspace below this dir.
    await chmod(spine.dir, 0o711);
    ({ runnerId, stateDir } = await spine.pair('creds'));
    // The vault entry is set before start, through the CLI, from stdin; policy grants it to exec only.
    const set = await runCli(['vault', 'set', 'DB_PASSWORD', '--state-dir', stateDir], {}, 'vault-secret-Zq81xw');
    expect(set.code, set.stderr).toBe(0);
    const config = path.join(stateDir, '..', 'creds.yaml');
    await writeFile(config, ['policy:', '  vault:', '    DB_PASSWORD:', '      tools: [exec]', ''].join('\n'));
    await spine.startRunner(runnerId, stateDir, { SANDBOX_RUNNER_CONFIG: config });
  });
  afterAll(async () => spine?.stop());

  it('refuses a credential shorter than 6 characters with 400 naming the field and the minimum', async () => {
    const r = await spine.api.call(runnerId, {
      name: 'exec',
      input: { argv: ['true'] },
      credentials: [{ name: 'SHORT', value: 'abc', inject: { env: 'SHORT' } }],
    });
    expect(r.status).toBe(400);
    expect(r.body.error.message).toMatch(/credentials\.0\.value/);
    expect(r.body.error.message).toMatch(/at least 6 characters/);
  });

  it('refuses a malformed credential with 400 naming the field', async () => {
    const r = await spine.api.call(runnerId, {
      name: 'exec',
      input: { argv: ['true'] },
      credentials: [{ name: 'TOKEN', value: 'long-enough-value', inject: { env: 'not a name' } }],
    });
    expect(r.status).toBe(400);
    expect(r.body.error.message).toMatch(/credentials\.0/);
  });

  it('an env credential reaches the sandbox of its call, and only that one', async () => {
    const secret = 'tok-env-7Hq2Lm9Rv';
    const r = await spine.api.call(runnerId, {
      name: 'exec',
      input: { argv: ['sh', '-c', `test "$API_TOKEN" = '${secret}' && echo match`] },
      credentials: [{ name: 'TOKEN', value: secret, inject: { env: 'API_TOKEN' } }],
    });
    expect(r.status).toBe(200);
    expect(execOutput(r.body)).toMatchObject({ stdout: 'match\n', exitCode: 0 });
    // The next call, without credentials, sees nothing.
    const after = await spine.api.call(runnerId, { name: 'exec', input: { argv: ['sh', '-c', 'echo "[${API_TOKEN:-unset}]"'] } });
    expect(execOutput(after.body).stdout).toBe('[unset]\n');
    const audit = await readAudit(stateDir);
    expect(audit.find((e) => e.type === 'credential.used' && e.callId === r.body.id)).toMatchObject({ names: ['TOKEN'] });
  });

  it('a printed credential comes back redacted', async () => {
    const secret = 'tok-print-4Kd8Pw2';
    const r = await spine.api.call(runnerId, {
      name: 'exec',
      input: { argv: ['sh', '-c', 'echo "value=$API_TOKEN"'] },
      credentials: [{ name: 'TOKEN', value: secret, inject: { env: 'API_TOKEN' } }],
    });
    const out = execOutput(r.body).stdout;
    expect(out).not.toContain(secret);
    expect(out).toMatch(/^value=\[REDACTED:TOKEN\]/);
  });

  it('a file credential is placed in the sandbox with its mode', async () => {
    const secret = 'tok-file-9Rm3Xc5';
    const r = await spine.api.call(runnerId, {
      name: 'exec',
      input: { argv: ['sh', '-c', `test "$(cat /run/secrets/token)" = '${secret}' && stat -c %a /run/secrets/token`] },
      credentials: [{ name: 'FILE_TOKEN', value: secret, inject: { file: '/run/secrets/token', mode: 0o400 } }],
    });
    expect(execOutput(r.body)).toMatchObject({ stdout: '400\n', exitCode: 0 });
  });

  it('a vault entry named by the call reaches the sandbox when policy allows, the control plane never holding it', async () => {
    const r = await spine.api.call(runnerId, {
      name: 'exec',
      input: { argv: ['sh', '-c', `test "$DB_PASSWORD" = 'vault-secret-Zq81xw' && echo "got $DB_PASSWORD"`] },
      credentials: [{ vault: 'DB_PASSWORD', inject: { env: 'DB_PASSWORD' } }],
    });
    expect(execOutput(r.body)).toMatchObject({ stdout: 'got [REDACTED:DB_PASSWORD]\n', exitCode: 0 });
    // The answer may come before the ended record is written (the runner keeps the result until that write lands).
    const file = path.join(spine.dir, 'cp', 'calls', CALL_LOG_FILE);
    const record = await waitUntil(async () => {
      const ended = parseCallLog(await readFile(file, 'utf8')).get(r.body.id);
      return ended?.status === 'completed' ? JSON.stringify(ended) : undefined;
    }, 20_000, 'the ended call record on disk');
    expect(record).toContain('DB_PASSWORD');
    expect(record).not.toContain('vault-secret-Zq81xw');
    // Nor anywhere else in the control plane's store.
    expect(await readFile(file, 'utf8')).not.toContain('vault-secret-Zq81xw');
  });

  it('a vault entry is refused with policy_denied for a tool the policy does not grant it to', async () => {
    const r = await spine.api.call(runnerId, {
      name: 'bash',
      input: { command: 'echo "$DB_PASSWORD"' },
      credentials: [{ vault: 'DB_PASSWORD', inject: { env: 'DB_PASSWORD' } }],
    });
    expect(r.body).toMatchObject({ status: 'failed', isError: true });
    expect(r.body.content).toMatch(/^policy_denied: .*\(rule vault\.DB_PASSWORD\.tools\)/);
  });

  it('session credentials: env for every process of the session, files placed at creation, gone after close', async () => {
    const secret = 'sess-secret-Pq7Wn3';
    const open = await spine.api.request('POST', `/v1/runners/${runnerId}/sessions`, {
      credentials: [
        { name: 'SESS_TOKEN', value: secret, inject: { env: 'SESS_TOKEN' } },
        { name: 'SESS_FILE', value: `${secret}-file`, inject: { file: '/run/secrets/sess' } },
      ],
    });
    expect(open.status, open.text).toBe(201);
    const sessionId = open.body.sessionId as string;
    const check = `test "$SESS_TOKEN" = '${secret}' && test "$(cat /run/secrets/sess)" = '${secret}-file' && echo ok`;
    for (let i = 0; i < 2; i++) {
      const r = await spine.api.call(runnerId, { name: 'exec', sessionId, input: { argv: ['sh', '-c', check] } });
      expect(execOutput(r.body)).toMatchObject({ stdout: 'ok\n', exitCode: 0 });
    }
    const bash = await spine.api.call(runnerId, { name: 'bash', sessionId, input: { command: 'echo "$SESS_TOKEN"' } });
    expect(JSON.stringify(bash.body.content)).toContain('[REDACTED:SESS_TOKEN]');
    expect(JSON.stringify(bash.body.content)).not.toContain(secret);
    const audit = await readAudit(stateDir);
    expect(audit.find((e) => e.type === 'credential.used' && e.sessionId === sessionId)).toMatchObject({ names: ['SESS_TOKEN', 'SESS_FILE'] });
    expect((await spine.api.request('DELETE', `/v1/sessions/${sessionId}`)).status).toBe(204);
    // After close the value is no longer held: a call that prints it plain is not masked any more.
    const r = await spine.api.call(runnerId, { name: 'exec', input: { argv: ['echo', secret] } });
    expect(execOutput(r.body).stdout).toBe(`${secret}\n`);
  });

  it('a session naming a vault entry this runner does not hold is refused at open, and the runner keeps serving', async () => {
    const r = await spine.api.request('POST', `/v1/runners/${runnerId}/sessions`, {
      credentials: [{ vault: 'NOT_THERE', inject: { env: 'X' } }],
    });
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(r.body.error.message).toMatch(/NOT_THERE/);
    await waitUntil(async () => (await spine.api.runners()).find((x) => x.id === runnerId)?.connected, 5000, 'still connected');
  });
});
