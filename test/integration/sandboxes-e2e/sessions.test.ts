import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../helpers/processes.js';
import { E2E, text } from './harness.js';

// The real control plane's HTTP API, a real runner process, real bubblewrap sandboxes.
describe('sessions through the control-plane API', () => {
  let e2e: E2E;
  beforeAll(async () => {
    e2e = await E2E.start();
  });
  afterAll(() => e2e?.stop());

  it('keeps cd, variables and files across bash calls; the editor and bash see the same workspace', async () => {
    const sessionId = await e2e.openSession();
    const bash = (command: string) => e2e.call('bash', { command }, { sessionId });

    const first = await bash('mkdir -p /workspace/proj && cd /workspace/proj && export GREETING=hello && echo "v1" > notes.txt');
    expect(first).toMatchObject({ status: 'completed', isError: false });
    const second = await bash('pwd; echo "$GREETING"; cat notes.txt');
    expect(text(second.content)).toBe('/workspace/proj\nhello\nv1');

    const edit = await e2e.call('str_replace_based_edit_tool', { command: 'str_replace', path: '/workspace/proj/notes.txt', old_str: 'v1', new_str: 'v2 edited' }, { sessionId });
    expect(edit).toMatchObject({ status: 'completed', isError: false });
    const created = await e2e.call('str_replace_based_edit_tool', { command: 'create', path: '/workspace/proj/new.py', file_text: 'print(6 * 7)\n' }, { sessionId });
    expect(created.isError).toBe(false);
    expect(text((await bash('cat notes.txt; python3 new.py')).content)).toBe('v2 edited\n42');

    const view = await e2e.call('str_replace_based_edit_tool', { command: 'view', path: '/workspace/proj/notes.txt' }, { sessionId });
    expect(text(view.content)).toMatch(/1\s+v2 edited/);

    const dirsBefore = await e2e.sandboxDirs();
    expect(dirsBefore.length).toBe(1);
    expect(await e2e.closeSession(sessionId)).toBe(204);
    expect(await e2e.sandboxDirs()).toEqual([]);

    // The session is gone for the control plane too.
    const after = await e2e.spine.api.call(e2e.runnerId, { name: 'bash', input: { command: 'pwd' }, sessionId });
    expect(after.status).toBe(404);
    expect(after.body.error.code).toBe('unknown_session');
  });

  it('runs a call without a session in a fresh sandbox that is removed after it', async () => {
    const a = await e2e.call('bash', { command: 'echo mark > /workspace/left-behind; ls /workspace' });
    expect(text(a.content)).toBe('left-behind');
    const b = await e2e.call('bash', { command: 'ls -A /workspace | wc -l' });
    expect(text(b.content)).toBe('0');
    const ex = await e2e.call('exec', { argv: ['/bin/sh', '-c', 'echo $$; cat'], stdin: 'from stdin' });
    expect(ex).toMatchObject({ status: 'completed', isError: false });
    expect(text(ex.content)).toMatch(/from stdin/);
    await waitUntil(async () => ((await e2e.sandboxDirs()).length === 0 ? true : undefined), 10_000, 'fresh sandboxes removed');
  });

  it('closes a session while a command runs in it: the call ends and the sandbox is gone', async () => {
    const sessionId = await e2e.openSession();
    await e2e.call('bash', { command: 'true' }, { sessionId });
    const id = await e2e.start('bash', { command: 'sleep 100' }, { sessionId });
    await waitUntil(async () => ((await e2e.get(id)).status === 'running' ? true : undefined), 10_000, 'call running');
    expect(await e2e.closeSession(sessionId)).toBe(204);
    const ended = await e2e.waitEnded(id);
    expect(ended.isError).toBe(true);
    expect(await e2e.sandboxDirs()).toEqual([]);
  });
});
