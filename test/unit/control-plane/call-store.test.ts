import { appendFile, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CALL_LOG_FILE, CallStore, type CallRecord } from '../../../src/control-plane/call-store.js';

function record(id: string, extra: Partial<CallRecord> = {}): CallRecord {
  return {
    id,
    runnerId: 'run_1',
    name: 'javascript',
    sessionId: null,
    status: 'running',
    content: null,
    isError: null,
    durationMs: null,
    traceId: null,
    createdAt: '2026-01-01T00:00:00.000Z',
    endedAt: null,
    accepted: false,
    cancelRequested: false,
    pending: null,
    ...extra,
  };
}

describe('CallStore (tool-call records of the control plane, one append-only log)', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'call-store-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps the newest save of each call across a restart, and compacts the log to one line a call', async () => {
    let store = await CallStore.load(dir);
    await store.save(record('a'));
    await store.save(record('b'));
    await store.save(record('a', { status: 'completed', content: 'done', accepted: true }));
    expect((await readFile(path.join(dir, CALL_LOG_FILE), 'utf8')).trim().split('\n')).toHaveLength(3);
    await store.close();

    store = await CallStore.load(dir);
    expect(store.get('a')).toMatchObject({ status: 'completed', content: 'done', accepted: true });
    expect(store.get('b')?.status).toBe('running');
    expect(store.forRunner('run_1').map((r) => r.id).sort()).toEqual(['a', 'b']);
    expect((await readFile(path.join(dir, CALL_LOG_FILE), 'utf8')).trim().split('\n')).toHaveLength(2);
    expect((await stat(path.join(dir, CALL_LOG_FILE))).mode & 0o777).toBe(0o600);
    await store.close();
  });

  it('holds a saved record as a copy: later changes to the object are not stored until saved again', async () => {
    const store = await CallStore.load(dir);
    const r = record('a');
    await store.save(r);
    r.status = 'failed';
    expect(store.get('a')?.status).toBe('running');
    store.put(r);
    expect(store.get('a')?.status).toBe('failed');
    await store.close();
    // put() alone wrote nothing.
    const again = await CallStore.load(dir);
    expect(again.get('a')?.status).toBe('running');
    await again.close();
  });

  it('skips a torn last line left by a crash mid-write, keeping the call as its previous line had it', async () => {
    const store = await CallStore.load(dir);
    await store.save(record('a'));
    await store.close();
    await appendFile(path.join(dir, CALL_LOG_FILE), JSON.stringify(record('a', { status: 'completed' })).slice(0, 40));
    const again = await CallStore.load(dir);
    expect(again.get('a')?.status).toBe('running');
    await again.save(record('b'));
    await again.close();
    const third = await CallStore.load(dir);
    expect([third.get('a')?.status, third.get('b')?.status]).toEqual(['running', 'running']);
    await third.close();
  });

  it('folds records of the earlier layout (a JSON file a call) into the log and removes those files', async () => {
    await writeFile(path.join(dir, 'old.json'), JSON.stringify(record('old', { status: 'completed', content: 'kept' })));
    await writeFile(path.join(dir, '.old.json.abc123.tmp'), '{"torn');
    const store = await CallStore.load(dir);
    expect(store.get('old')).toMatchObject({ status: 'completed', content: 'kept' });
    expect(await readdir(dir)).toEqual([CALL_LOG_FILE]);
    await store.close();
    const again = await CallStore.load(dir);
    expect(again.get('old')?.content).toBe('kept');
    await again.close();
  });

  it('resolves settled() at once when everything is on disk, and after the sync when a save is under way', async () => {
    const store = await CallStore.load(dir);
    await store.settled('a');
    const saved = store.save(record('a'));
    await store.settled('a');
    await saved;
    await store.close();
    await expect(store.save(record('b'))).rejects.toMatchObject({ code: 'io' });
  });
});
