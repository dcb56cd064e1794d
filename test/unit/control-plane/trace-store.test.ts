import { appendFile, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SPAN_LOG_FILE, TraceStore, type StoredSpan } from '../../../src/control-plane/trace-store.js';

const TRACE = 'a'.repeat(32);

function span(spanId: string, start: number, traceId = TRACE): StoredSpan {
  return {
    traceId,
    spanId,
    name: `span ${spanId}`,
    startTimeUnixNano: String(start),
    endTimeUnixNano: String(start + 10),
    status: 'ok',
    attributes: {},
    source: 'runner',
  } as StoredSpan;
}

describe('TraceStore', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('answers a read with spans not yet written, oldest first, each span once', async () => {
    dir = await mkdtemp(join(tmpdir(), 'traces-'));
    const store = new TraceStore(dir);
    store.add([span('b', 20), span('a', 10)]);
    // A runner resending after a reconnect: the same span again.
    store.add([span('a', 10), span('c', 30)]);
    expect((await store.get(TRACE)).map((s) => s.spanId)).toEqual(['a', 'b', 'c']);
    expect((await stat(join(dir, SPAN_LOG_FILE))).mode & 0o777).toBe(0o600);
    expect(await store.get('not-a-trace-id')).toEqual([]);
    expect(await store.get('b'.repeat(32))).toEqual([]);
  });

  it('writes what it holds on flush, and a new store reads it, skipping a torn last line', async () => {
    dir = await mkdtemp(join(tmpdir(), 'traces-'));
    const first = new TraceStore(dir);
    first.add([span('x', 1), span('y', 2)]);
    await first.flush();
    expect((await readFile(join(dir, SPAN_LOG_FILE), 'utf8')).trim().split('\n')).toHaveLength(2);
    await first.close();
    await appendFile(join(dir, SPAN_LOG_FILE), '{"traceId":"aaaa');
    const second = new TraceStore(dir);
    expect((await second.get(TRACE)).map((s) => s.spanId)).toEqual(['x', 'y']);
    // Spans written after the torn line are found too, and only those of the trace asked for.
    second.add([span('z', 3), span('other', 4, 'b'.repeat(32))]);
    expect((await second.get(TRACE)).map((s) => s.spanId)).toEqual(['x', 'y', 'z']);
    await second.close();
    const third = new TraceStore(dir);
    expect((await third.get(TRACE)).map((s) => s.spanId)).toEqual(['x', 'y', 'z']);
    expect((await third.get('b'.repeat(32))).map((s) => s.spanId)).toEqual(['other']);
    await third.close();
  });

  it('keeps every trace in one file, and still reads a trace stored in a file of its own by an earlier version', async () => {
    dir = await mkdtemp(join(tmpdir(), 'traces-'));
    await writeFile(join(dir, `${TRACE}.jsonl`), `${JSON.stringify(span('old', 1))}\n`);
    const store = new TraceStore(dir);
    for (let i = 0; i < 20; i++) store.add([span(`s${i}`, 10 + i, i.toString(16).padStart(32, 'c'))]);
    store.add([span('new', 2)]);
    await store.flush();
    expect((await readdir(dir)).sort()).toEqual([`${TRACE}.jsonl`, SPAN_LOG_FILE].sort());
    expect((await store.get(TRACE)).map((s) => s.spanId)).toEqual(['old', 'new']);
    await store.close();
  });
});
