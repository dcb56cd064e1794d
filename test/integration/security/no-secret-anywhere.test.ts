import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../helpers/control-plane-api.js';
import { closedPort, runCli, startCli, waitUntil, type RunningProcess } from '../../helpers/processes.js';

// Secrets of every kind go through a real control plane and a real runner (both child
// processes, logging at debug), real bwrap sandboxes print them plain and encoded, and
// then every byte the run left behind is searched for each secret in each form.
const SECRETS = {
  env: 'leak-env-Xy7Qm2Vb9',
  file: 'leak-file-Hk4Rt8Zw1',
  vault: 'leak-vault-Jp3Ns6Lc',
  session: 'leak-sess-Bn5Gd2Wf8',
  // Characters that read differently once JSON-escaped or URL-encoded.
  odd: 'pw"q/+=&x y\\z9-Odd7',
  // A multi-line secret: each line is masked on its own.
  lines: 'first-line-Aq1Wm4\nsecond-line-Zx9Tr2',
};

/** Every form the redactor promises to mask, as text to search for. */
function forms(secret: string): Array<[string, string]> {
  const b64 = (prefix: string) => Buffer.from(prefix + secret, 'utf8').toString('base64');
  // The part of each base64 alignment fixed by the secret alone (pad and tail chars vary with context).
  const core = (prefix: string) => b64(prefix).slice(prefix ? 4 : 0, -4);
  const out: Array<[string, string]> = [
    ['plain', secret],
    ['base64/0', core('')],
    ['base64/1', core('a')],
    ['base64/2', core('ab')],
    ['url', encodeURIComponent(secret)],
    ['json', JSON.stringify(secret).slice(1, -1)],
  ];
  if (secret.includes('\n')) for (const [i, line] of secret.split('\n').entries()) out.push([`line ${i}`, line]);
  return out.filter(([, text], i, all) => all.findIndex(([, t]) => t === text) === i);
}

/** Every regular file below `dir`, recursively. */
async function filesBelow(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesBelow(p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

describe('no secret anywhere: streams, results, spans, logs, audit, outbox, nonces, control-plane data', () => {
  let dir: string;
  let cp: RunningProcess;
  let runner: RunningProcess;
  let api: ApiClient;
  let runnerId: string;
  let stateDir: string;
  let adminToken: string;
  /** Everything read over HTTP (responses and SSE streams), and output re-joined per call and stream. */
  const seen: Array<[string, string]> = [];

  const sse = async (callId: string) => {
    const res = await fetch(`${api.baseUrl}/v1/tool-calls/${callId}/events`, { headers: { authorization: `Bearer ${adminToken}` } });
    const text = await res.text();
    seen.push([`SSE ${callId}`, text]);
    // A secret split across chunks must not come back together either.
    const joined: Record<string, string> = { stdout: '', stderr: '' };
    for (const m of text.matchAll(/event: output\ndata: (.*)\n/g)) {
      const ev = JSON.parse(m[1]!) as { stream: string; data: string };
      joined[ev.stream] += ev.data;
    }
    seen.push([`joined stdout ${callId}`, joined.stdout!], [`joined stderr ${callId}`, joined.stderr!]);
    const result = JSON.parse(/event: result\ndata: (.*)\n/.exec(text)![1]!);
    return result as { id: string; status: string; isError: boolean; content: unknown; traceId: string };
  };
  const run = async (body: Record<string, unknown>) => {
    const started = await api.call(runnerId, body, '?wait=false');
    expect(started.status, started.text).toBe(202);
    const result = await sse(started.body.id);
    const again = await api.request('GET', `/v1/tool-calls/${started.body.id}`);
    seen.push([`GET call ${started.body.id}`, again.text]);
    if (result.traceId) {
      const trace = await waitUntil(async () => {
        const t = await api.request('GET', `/v1/traces/${result.traceId}`);
        return t.status === 200 && t.text.includes('"source":"runner"') ? t : undefined;
      }, 20_000, 'runner spans');
      seen.push([`trace ${result.traceId}`, trace.text]);
    }
    return result;
  };
  const text = (r: { content: unknown }) => JSON.stringify(r.content);

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'leaks-'));
    await chmod(dir, 0o711);
    const port = await closedPort();
    cp = startCli(['control-plane', '--listen', `127.0.0.1:${port}`, '--data-dir', path.join(dir, 'cp'), '--log-level', 'debug']);
    await cp.waitForOutput(/control plane listening/);
    adminToken = (await readFile(path.join(dir, 'cp', 'admin-token'), 'utf8')).trim();
    api = new ApiClient(`http://127.0.0.1:${port}`, adminToken);
    stateDir = path.join(dir, 'runner');
    const paired = await runCli(['pair', '--url', api.baseUrl, '--token', await api.pairingToken(), '--state-dir', stateDir, '--json']);
    runnerId = JSON.parse(paired.stdout).runnerId;
    expect((await runCli(['vault', 'set', 'LEAK_VAULT', '--state-dir', stateDir], {}, SECRETS.vault)).code).toBe(0);
    const config = path.join(dir, 'runner.yaml');
    await writeFile(config, ['policy:', '  vault:', '    LEAK_VAULT:', '      tools: ["*"]', ''].join('\n'));
    runner = startCli(['start', '--state-dir', stateDir, '--config', config, '--log-level', 'debug'], { SANDBOX_RUNNER_HEALTH__PORT: '0' });
    await runner.waitForOutput(/connected to the control plane/);
    await waitUntil(async () => ((await api.runners()).find((r) => r.id === runnerId)?.connected ? true : undefined));
  });
  afterAll(async () => {
    await runner?.stop();
    await cp?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('runs calls that echo every secret plain, encoded and split, then finds none of them anywhere', async () => {
    const creds = [
      { name: 'LEAK_ENV', value: SECRETS.env, inject: { env: 'S_ENV' } },
      { name: 'LEAK_FILE', value: SECRETS.file, inject: { file: '/run/secrets/leak' } },
      { name: 'LEAK_ODD', value: SECRETS.odd, inject: { env: 'S_ODD' } },
      { name: 'LEAK_LINES', value: SECRETS.lines, inject: { file: '/run/secrets/lines' } },
      { vault: 'LEAK_VAULT', inject: { env: 'S_VAULT' } },
    ];
    // The sandbox makes each encoding from the value it was given; the test never hands it the plain text.
    const script = [
      'S_FILE=$(cat /run/secrets/leak)',
      'for v in "$S_ENV" "$S_FILE" "$S_VAULT" "$S_ODD"; do',
      '  printf "plain %s\\n" "$v"',
      '  printf "b64-0 %s\\n" "$(printf %s "$v" | base64 -w0)"',
      '  printf "b64-1 %s\\n" "$(printf a%s "$v" | base64 -w0)"',
      '  printf "b64-2 %s\\n" "$(printf ab%s "$v" | base64 -w0)"',
      '  printf "json \\"%s\\"\\n" "$(printf %s "$v" | sed \'s/\\\\/\\\\\\\\/g; s/"/\\\\"/g\')"',
      '  printf "url %s\\n" "$(printf %s "$v" | sed \'s/%/%25/g; s/ /%20/g; s/"/%22/g; s/\\//%2F/g; s/+/%2B/g; s/=/%3D/g; s/&/%26/g; s/\\\\/%5C/g\')"',
      '  printf "stderr %s\\n" "$v" >&2',
      'done',
      'cat /run/secrets/lines; echo',
      'printf "line2 %s\\n" "$(tail -n 1 /run/secrets/lines)"',
      // Split across output chunks: half, a pause so the halves are read apart, the other half.
      'printf "split "; printf %s "$S_ENV" | head -c 9; sleep 0.3; printf %s "$S_ENV" | tail -c +10; echo',
      'exit 3',
    ].join('\n');
    const r = await run({ name: 'exec', input: { argv: ['sh', '-c', script] }, credentials: creds });
    expect(r).toMatchObject({ status: 'completed', isError: true });
    // The calls did print what they were given (masked): the test exercised every form.
    expect(text(r)).toContain('[REDACTED:LEAK_ENV]');
    expect(text(r)).toContain('[REDACTED:LEAK_VAULT]');
    expect(text(r)).toContain('[REDACTED:LEAK_ODD]');
    expect(text(r)).toMatch(/split \[REDACTED:LEAK_ENV\]/);
    expect(text(r)).toMatch(/b64-1 \S*\[REDACTED/);
    expect(text(r)).toContain('json \\"[REDACTED:LEAK_ODD]\\"');
    expect(text(r)).toContain('url [REDACTED:LEAK_ODD]');
    expect(text(r)).toContain('line2 [REDACTED:LEAK_LINES]');

    // The bash tool in a session with a session credential and a vault entry.
    const open = await api.request('POST', `/v1/runners/${runnerId}/sessions`, {
      credentials: [
        { name: 'LEAK_SESSION', value: SECRETS.session, inject: { env: 'S_SESSION' } },
        { vault: 'LEAK_VAULT', inject: { env: 'S_VAULT' } },
      ],
    });
    seen.push(['session open', open.text]);
    expect(open.status, open.text).toBe(201);
    const sessionId = open.body.sessionId as string;
    const b = await run({ name: 'bash', sessionId, input: { command: 'echo "$S_SESSION $S_VAULT"; printf %s "$S_SESSION" | base64' } });
    expect(text(b)).toContain('[REDACTED:LEAK_SESSION]');
    // A call's own credential inside the session, env only.
    const c = await run({
      name: 'exec',
      sessionId,
      input: { argv: ['sh', '-c', 'echo "$S_SESSION / $S_ENV" >&2; exit 1'] },
      credentials: [{ name: 'LEAK_ENV', value: SECRETS.env, inject: { env: 'S_ENV' } }],
    });
    expect(text(c)).toContain('[REDACTED:LEAK_ENV]');
    seen.push(['session close', (await api.request('DELETE', `/v1/sessions/${sessionId}`)).text]);

    // A call that fails closed (a credential for a vault entry the policy does not grant).
    const denied = await run({ name: 'exec', input: { argv: ['true'] }, credentials: [{ name: 'LEAK_ENV', value: SECRETS.env, inject: { env: 'S_ENV' } }, { vault: 'NOT_GRANTED', inject: { env: 'X_NOT' } }] });
    expect(denied.isError).toBe(true);

    // Everything on disk and in the logs, after both processes stopped and flushed.
    await runner.stop();
    await cp.stop();
    const sources: Array<[string, string]> = [...seen, ['runner log', runner.output()], ['control-plane log', cp.output()]];
    const roots = [path.join(dir, 'cp'), stateDir, `${stateDir}-work`];
    const files = (await Promise.all(roots.map(filesBelow))).flat();
    for (const f of files) sources.push([f, await readFile(f, 'latin1')]);
    // The places named by the issue are really among what was searched.
    const names = files.map((f) => path.relative(dir, f));
    expect(names).toContain(path.join('runner', 'calls.jsonl'));
    expect(names).toContain(path.join('runner', 'nonces.jsonl'));
    expect(names.some((n) => n.startsWith(path.join('runner', 'audit')))).toBe(true);
    expect(names.some((n) => n.startsWith(path.join('cp', 'calls')))).toBe(true);
    expect(names.some((n) => n.startsWith(path.join('cp', 'traces')))).toBe(true);
    expect(runner.output()).toMatch(/"level":20/); // debug lines were written, and searched

    const found: string[] = [];
    for (const [secretName, secret] of Object.entries(SECRETS)) {
      for (const [form, needle] of forms(secret)) {
        for (const [where, content] of sources) {
          if (content.includes(needle)) found.push(`${secretName} (${form}) in ${where}`);
        }
      }
    }
    expect(found).toEqual([]);
  });
});
