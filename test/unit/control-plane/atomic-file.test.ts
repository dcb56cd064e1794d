import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { KeyedQueue, readJsonFile, writeFileAtomic } from '../../../src/control-plane/atomic-file.js';
import { JsonCollection } from '../../../src/control-plane/json-collection.js';

describe('atomic files', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('writes 0600 files and leaves no temporary file behind', async () => {
    dir = await mkdtemp(join(tmpdir(), 'atomic-'));
    const path = join(dir, 'a.json');
    await writeFileAtomic(path, JSON.stringify({ a: 1 }));
    await writeFileAtomic(path, JSON.stringify({ a: 2 }));
    expect(await readJsonFile(path)).toEqual({ a: 2 });
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(await readdir(dir)).toEqual(['a.json']);
    expect(await readJsonFile(join(dir, 'missing.json'))).toBeUndefined();
  });

  it('keeps the order of writes to one file, so the newest state wins', async () => {
    dir = await mkdtemp(join(tmpdir(), 'atomic-'));
    const queue = new KeyedQueue();
    const c = await JsonCollection.load<number>(join(dir, 'c.json'), queue);
    await Promise.all(Array.from({ length: 50 }, (_, i) => c.set('n', i)));
    const again = await JsonCollection.load<number>(join(dir, 'c.json'), new KeyedQueue());
    expect(again.get('n')).toBe(49);
  });

  it('runs a failed task without blocking the next one', async () => {
    const queue = new KeyedQueue();
    const order: string[] = [];
    const failing = queue.run('k', async () => {
      order.push('a');
      throw new Error('x');
    });
    const next = queue.run('k', async () => {
      order.push('b');
      return 2;
    });
    await expect(failing).rejects.toThrow('x');
    expect(await next).toBe(2);
    await queue.drain();
    expect(order).toEqual(['a', 'b']);
  });
});
