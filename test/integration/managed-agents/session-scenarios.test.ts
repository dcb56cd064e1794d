import { afterEach, describe, expect, it } from 'vitest';
import { gzipSync } from 'node:zlib';
import { startHarness, type Harness } from './harness.js';
import type { FakeSession } from '../../fakes/anthropic/fake-session.js';
import { tarArchive, zipArchive } from './archives.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const endTurn = (s: FakeSession) => s.waitFor((e) => e.type === 'session.status_idle' && (e.stop_reason as { type: string }).type === 'end_turn');
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 20));
}

describe('session scenarios against the fake', () => {
  it('a 412 mid-session aborts the session and leaves the item unstopped', async () => {
    h = await startHarness({ connector: { leaseIntervalMs: () => 50 } });
    let second: ReturnType<FakeSession['agent']['call']> | undefined;
    const { session, work } = h.fake.createSession({
      script: async (a) => {
        await a.tool('bash', { command: 'echo one' });
        h!.fake.queue.clearLease(work.id);
        await until(() => h!.connector.status().sessions.length === 0);
        second = a.call('bash', { command: 'echo two' });
      },
    });
    await session.scriptDone;
    await until(() => second !== undefined);
    expect(h.fake.queue.get(work.id).state).toBe('queued');
    expect(h.fake.hits.get('stop') ?? 0).toBe(0);
    expect(session.resultsFor(second!.id)).toEqual([]);
  });

  it('answers each call exactly once across a dropped stream and a duplicated event', async () => {
    h = await startHarness();
    const { session } = h.fake.createSession({
      script: async (a) => {
        session.duplicateNext = true;
        await a.tool('bash', { command: 'echo dup' });
        // Drop the stream while a call is pending (mid-turn), emit while nobody listens.
        const slow = a.call('bash', { command: 'sleep 0.3; echo after-drop' });
        await until(() => h!.host.calls.length >= 1);
        session.dropStreams();
        const missed = a.call('write', { file_path: 'missed.txt', content: 'x' });
        await slow.result;
        await missed.result;
        a.endTurn();
      },
    });
    await endTurn(session);
    await session.scriptDone;
    await until(() => session.streamsOpened >= 2);
    const uses = session.events.filter((e) => e.type === 'agent.tool_use');
    expect(uses).toHaveLength(3);
    for (const u of uses) expect(session.resultsFor(u.id)).toHaveLength(1);
    for (const n of session.resultPosts.values()) expect(n).toBe(1);
    expect(session.refusedPosts).toEqual([]);
  });

  it('holds an ask call until it is confirmed; never answers a deny', async () => {
    h = await startHarness();
    let askId = '';
    let denyId = '';
    const { session } = h.fake.createSession({
      script: async (a) => {
        const denied = a.call('bash', { command: 'touch /workspace/denied' }, { permission: 'deny' });
        denyId = denied.id;
        const ask = a.call('bash', { command: 'echo approved' }, { permission: 'ask' });
        askId = ask.id;
        // A call after it, answered, shows the worker had time to run the held one had it wanted to.
        await a.tool('write', { file_path: 'marker', content: 'm' });
        expect(session.resultsFor(askId)).toEqual([]);
        a.confirm(askId, 'allow');
        const r = await ask.result;
        expect((r.content as Array<{ text: string }>)[0]!.text).toBe('approved');
        const check = await a.tool('bash', { command: 'ls /workspace' });
        expect(check.text).toBe('marker');
        a.endTurn();
      },
    });
    await endTurn(session);
    expect(session.scriptError).toBeUndefined();
    expect(session.resultsFor(askId)).toHaveLength(1);
    expect(session.resultsFor(denyId)).toEqual([]);
    expect(session.refusedPosts).toEqual([]);
  });

  it('posts (no output) for an empty result, leaves a custom tool alone, answers bad input naming the field', async () => {
    h = await startHarness();
    let customId = '';
    const out: Record<string, { text: string; isError: boolean }> = {};
    const { session } = h.fake.createSession({
      script: async (a) => {
        out.empty = await a.tool('bash', { command: 'mkdir -p d && touch d/f' });
        const custom = a.call('get_order_status', { order: 1 }, { custom: true });
        customId = custom.id;
        out.bad = await a.tool('read', { file_path: 42 });
        out.extra = await a.tool('glob', { pattern: '*', colour: 'red' });
        out.unknown = await a.tool('repl', { code: '1' });
        // A malformed event: input is not an object.
        const ev = session.emit({ type: 'agent.tool_use', name: 'bash', input: 'ls' });
        const r = await session.waitFor((e) => e.type === 'user.tool_result' && e.tool_use_id === ev.id);
        out.malformed = { text: (r.content as Array<{ text: string }>)[0]!.text, isError: r.is_error as boolean };
        out.after = await a.tool('bash', { command: 'echo still-serving' });
        a.endTurn();
      },
    });
    await endTurn(session);
    expect(session.scriptError).toBeUndefined();
    expect(out.empty).toEqual({ text: '(no output)', isError: false, id: expect.any(String) });
    expect(session.resultsFor(customId)).toEqual([]);
    expect(out.bad!.isError).toBe(true);
    expect(out.bad!.text).toMatch(/file_path/);
    expect(out.extra!.text).toMatch(/colour/);
    expect(out.unknown).toMatchObject({ isError: true });
    expect(out.unknown!.text).toMatch(/unknown tool repl/);
    expect(out.malformed).toEqual({ text: expect.stringMatching(/input: /), isError: true });
    expect(out.after!.text).toBe('still-serving');
  });

  it('serves two sessions at once in separate sandboxes that cannot see each other', async () => {
    h = await startHarness();
    const bothIn = { a: false, b: false };
    const script = (me: 'a' | 'b', other: 'a' | 'b') => async (agent: FakeSession['agent']) => {
      await agent.tool('write', { file_path: `${me}-secret.txt`, content: me });
      bothIn[me] = true;
      await until(() => bothIn[other]);
      const ls = await agent.tool('bash', { command: 'ls /workspace; ls / | tr "\\n" " "' });
      const glob = await agent.tool('glob', { pattern: '**/*-secret.txt' });
      agent.message(JSON.stringify({ ls: ls.text, glob: glob.text }));
      agent.endTurn();
    };
    const A = h.fake.createSession({ script: script('a', 'b') }).session;
    const B = h.fake.createSession({ script: script('b', 'a') }).session;
    await Promise.all([endTurn(A), endTurn(B)]);
    const said = (s: FakeSession) => JSON.parse((s.events.find((e) => e.type === 'agent.message')!.content as Array<{ text: string }>)[0]!.text) as { ls: string; glob: string };
    expect(said(A).ls.split('\n')[0]).toBe('a-secret.txt');
    expect(said(A).glob).toBe('a-secret.txt');
    expect(said(B).ls.split('\n')[0]).toBe('b-secret.txt');
    expect(said(B).glob).toBe('b-secret.txt');
    expect(new Set(h.host.calls.map((c) => c.session)).size).toBe(2);
  });

  it('installs a skill with its exec bit, refuses a malicious archive, and carries on', async () => {
    h = await startHarness({
      beforeStart: (fake) => {
        fake.addSkill('skill_good', '3', { name: 'pdf-tools', archive: zipArchive([{ path: 'pdf-tools/SKILL.md', data: '# pdf' }, { path: 'pdf-tools/run.sh', data: '#!/bin/sh\necho ran\n', mode: 0o755 }]) });
        fake.addSkill('skill_good', '2', { name: 'pdf-tools', archive: zipArchive([{ path: 'old', data: 'old' }]) });
        fake.addSkill('skill_evil', '1', { name: 'evil', archive: gzipSync(tarArchive([{ path: 'ok.txt', data: 'fine' }, { path: '../../escaped.txt', data: 'pwned' }])) });
        fake.addSkill('skill_link', '1', { name: 'linky', archive: gzipSync(tarArchive([{ path: 'a.txt', data: 'a' }, { path: 'passwd', linkTo: '/etc/passwd' }])) });
      },
    });
    const { session } = h.fake.createSession({
      skills: [
        { type: 'custom', skill_id: 'skill_good', version: 'latest' },
        { type: 'custom', skill_id: 'skill_evil', version: '1' },
        { type: 'custom', skill_id: 'skill_link', version: '1' },
      ],
      script: async (a) => {
        const r = await a.tool('bash', { command: 'cd /workspace/skills && find . | sort && ./pdf-tools/run.sh && ls -a / | grep -c escaped || true' });
        a.message(r.text);
        a.endTurn();
      },
    });
    await endTurn(session);
    const text = (session.events.find((e) => e.type === 'agent.message')!.content as Array<{ text: string }>)[0]!.text;
    expect(text).toBe(['.', './linky', './linky/a.txt', './pdf-tools', './pdf-tools/SKILL.md', './pdf-tools/run.sh', 'ran', '0'].join('\n'));
  });
});
