import { appendFile, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TraceStore, type StoredSpan } from '../../../src/control-plane/trace-store.js';

const TRACE = 'a'.repeat(32);

function span(spanId: string, start: number): StoredSpan {
  return {
    traceId: TRACE,
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
    expect((await stat(join(dir, `${TRACE}.jsonl`))).mode & 0o777).toBe(0o600);
    expect(await store.get('not-a-trace-id')).toEqual([]);
    expect(await store.get('b'.repeat(32))).toEqual([]);
  });

  it('writes what it holds on flush, and a new store reads it, skipping a torn last line', async () => {
    dir = await mkdtemp(join(tmpdir(), 'traces-'));
    const first = new TraceStore(dir);
    first.add([span('x', 1), span('y', 2)]);
    await first.flush();
    expect((await readFile(join(dir, `${TRACE}.jsonl`), 'utf8')).trim().split('\n')).toHaveLength(2);
    await appendFile(join(dir, `${TRACE}.jsonl`), '{"traceId":"aaaa');
    expect((await new TraceStore(dir).get(TRACE)).map((s) => s.spanId)).toEqual(['x', 'y']);
  });
});
