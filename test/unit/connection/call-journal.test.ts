import { appendFile, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CallJournal } from '../../../src/connection/call-journal.js';
import type { ToolResultMessage } from '../../../src/protocol/index.js';

function result(callId: string, text = 'ok'): ToolResultMessage {
  return {
    v: 1,
    id: `result-${callId}`,
    type: 'tool.result',
    callId,
    status: 'completed',
    result: { type: 'tool_result', tool_use_id: callId, content: text, is_error: false },
    durationMs: 1,
  };
}

describe('CallJournal (the outbox and the record of seen call ids)', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'journal-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps a result in the outbox until it is acknowledged, across a reopen', async () => {
    let j = await CallJournal.open(dir, { retentionMs: 60_000 });
    await j.begin('c1');
    await j.complete(result('c1'));
    await j.begin('c2');
    await j.complete(result('c2'));
    await j.ack(['c1']);
    expect(j.pending().map((r) => r.callId)).toEqual(['c2']);
    await j.close();

    j = await CallJournal.open(dir, { retentionMs: 60_000 });
    expect(j.pending().map((r) => r.callId)).toEqual(['c2']);
    expect(j.depth).toBe(1);
    // An acknowledged result is still known, so a repeated call id is answered, not rerun.
    const seen = await j.lookup('c1');
    expect(seen.state).toBe('done');
    expect(seen.state === 'done' && seen.acked).toBe(true);
    expect(seen.state === 'done' && seen.result.result.content).toBe('ok');
    await j.close();
    expect((await stat(path.join(dir, 'calls.jsonl'))).mode & 0o777).toBe(0o600);
  });

  it('tells the outbox depth as results arrive and are acknowledged, once each, also across a reopen', async () => {
    const depths: number[] = [];
    let j = await CallJournal.open(dir, { retentionMs: 60_000, onDepth: (d) => depths.push(d) });
    for (const id of ['a', 'b', 'c']) {
      j.begin(id);
      j.complete(result(id));
    }
    j.ack(['a', 'b']);
    // Acknowledged twice, or never sent: the depth does not move.
    j.ack(['a', 'nope']);
    expect(depths).toEqual([1, 2, 3, 1]);
    expect(j.depth).toBe(1);
    await j.close();
    j = await CallJournal.open(dir, { retentionMs: 60_000 });
    expect(j.depth).toBe(1);
    j.ack(['c']);
    expect(j.depth).toBe(0);
    await j.close();
  });

  it('writes the same line for a result serialised by the caller as for one it serialises itself', async () => {
    const j = await CallJournal.open(dir, { retentionMs: 60_000, now: () => 1234 });
    const a = result('c1', 'line "one"\nline two\u0001');
    const b = result('c2', 'line "one"\nline two\u0001');
    j.complete(a);
    j.complete(b, JSON.stringify(b));
    const [la, lb] = (await readFile(path.join(dir, 'calls.jsonl'), 'utf8')).trim().split('\n');
    expect(lb).toBe(la!.replaceAll('c1', 'c2'));
    await j.close();
    const again = await CallJournal.open(dir, { retentionMs: 60_000 });
    expect(again.pending()).toEqual([a, b]);
    await again.close();
  });

  it('has a result in the file as soon as complete() returns, before any sync; sync() makes it durable', async () => {
    const j = await CallJournal.open(dir, { retentionMs: 60_000 });
    j.begin('c1');
    j.complete(result('c1', 'the answer'));
    // Another process reading now (a crash of this one leaves the page cache) sees the whole line.
    const text = await readFile(path.join(dir, 'calls.jsonl'), 'utf8');
    expect(text.trim().split('\n').map((l) => JSON.parse(l).op)).toEqual(['begin', 'done']);
    expect(text).toContain('the answer');
    // Callers asking together all resolve (they share fdatasyncs).
    await Promise.all([j.sync(), j.sync(), j.sync()]);
    j.complete(result('c2'));
    await j.sync();
    await j.close();
  });

  it('reports calls that were running when the runner stopped as orphans', async () => {
    let j = await CallJournal.open(dir, { retentionMs: 60_000 });
    await j.begin('running-call');
    await j.close();
    j = await CallJournal.open(dir, { retentionMs: 60_000 });
    expect(j.orphans).toEqual(['running-call']);
    expect((await j.lookup('running-call')).state).toBe('running');
    await j.close();
  });

  it('ignores a torn last line left by a crash mid-write', async () => {
    let j = await CallJournal.open(dir, { retentionMs: 60_000 });
    await j.begin('c1');
    await j.complete(result('c1'));
    await j.close();
    await appendFile(path.join(dir, 'calls.jsonl'), '{"op":"done","id":"c9","res');
    j = await CallJournal.open(dir, { retentionMs: 60_000 });
    expect(j.pending().map((r) => r.callId)).toEqual(['c1']);
    expect((await j.lookup('c9')).state).toBe('new');
    await j.close();
    expect(await readFile(path.join(dir, 'calls.jsonl'), 'utf8')).not.toContain('c9');
  });

  it('forgets acknowledged calls older than the retention when it compacts', async () => {
    let now = 1_000_000;
    let j = await CallJournal.open(dir, { retentionMs: 1000, now: () => now });
    await j.begin('old');
    await j.complete(result('old'));
    await j.ack(['old']);
    await j.begin('unacked');
    await j.complete(result('unacked'));
    await j.close();
    now += 5000;
    j = await CallJournal.open(dir, { retentionMs: 1000, now: () => now });
    expect((await j.lookup('old')).state).toBe('new');
    // Never drops what the control plane has not confirmed.
    expect(j.pending().map((r) => r.callId)).toEqual(['unacked']);
    await j.close();
  });
});
