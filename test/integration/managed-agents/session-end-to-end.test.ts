import { afterEach, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from './harness.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('one session end to end', () => {
  it('serves all six tools in a bwrap sandbox and force-stops the item at the end', async () => {
    h = await startHarness();
    const seen: Record<string, { text: string; isError: boolean }> = {};
    const { session, work } = h.fake.createSession({
      script: async (a) => {
        seen.write = await a.tool('write', { file_path: 'src/app.txt', content: 'hello world\nsecond line\n' });
        seen.read = await a.tool('read', { file_path: 'src/app.txt', view_range: [2, 2] });
        seen.edit = await a.tool('edit', { file_path: '/workspace/src/app.txt', old_string: 'world', new_string: 'sandbox' });
        seen.glob = await a.tool('glob', { pattern: '**/*.txt' });
        seen.grep = await a.tool('grep', { pattern: 'sand.ox' });
        seen.bash = await a.tool('bash', { command: 'cd src && cat app.txt && pwd && id -u' });
        seen.bashState = await a.tool('bash', { command: 'pwd; env | grep -c ANTHROPIC_ || true' });
        seen.fail = await a.tool('bash', { command: 'echo oops >&2; (exit 3)' });
        seen.silentFail = await a.tool('bash', { command: 'false' });
        seen.escape = await a.tool('read', { file_path: '../../etc/passwd' });
        seen.missing = await a.tool('edit', { file_path: 'src/app.txt', old_string: 'absent', new_string: 'x' });
        seen.nomatch = await a.tool('grep', { pattern: 'zzz-not-there' });
        a.message('done');
        a.endTurn();
      },
    });
    await session.waitFor((e) => e.type === 'session.status_idle' && (e.stop_reason as { type: string }).type === 'end_turn');
    // The idle limit (200 ms here) detaches the worker, which force-stops the item.
    while (h.fake.queue.get(work.id).state !== 'stopped') await new Promise((r) => setTimeout(r, 20));

    expect(seen.write).toMatchObject({ text: 'wrote 24 bytes to src/app.txt', isError: false });
    expect(seen.read).toMatchObject({ text: 'second line', isError: false });
    expect(seen.edit).toMatchObject({ text: 'edited /workspace/src/app.txt (1 replacement(s))', isError: false });
    expect(seen.glob).toMatchObject({ text: 'src/app.txt', isError: false });
    expect(seen.grep).toMatchObject({ text: 'src/app.txt:1:hello sandbox', isError: false });
    expect(seen.bash!.text).toMatch(/^hello sandbox\nsecond line\n\/workspace\/src\n\d+$/);
    expect(seen.bashState).toMatchObject({ text: '/workspace/src\n0', isError: false });
    expect(seen.fail).toMatchObject({ text: 'oops', isError: true });
    expect(seen.silentFail).toMatchObject({ text: 'exit 1', isError: true });
    expect(seen.escape!.isError).toBe(true);
    expect(seen.escape!.text).toMatch(/outside the allowed directories/);
    expect(seen.missing).toMatchObject({ text: 'edit: old_string not found in src/app.txt', isError: true });
    expect(seen.nomatch).toMatchObject({ text: 'no matches', isError: false });
    // Every call answered exactly once, with the sessions token, never X-Api-Key.
    for (const n of session.resultPosts.values()) expect(n).toBe(1);
    expect(h.fake.apiKeyHeaders).toEqual([]);
    expect([...h.fake.credentialsSeen].some((c) => c.startsWith('sk-ant-req-'))).toBe(true);
    expect(h.host.sessions.size).toBe(0);
  });
});
