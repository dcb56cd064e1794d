import { describe, expect, it } from 'vitest';
import { OutputCollector, partialSuffix } from '../../../src/tools/bash/output-collector.js';

const SENTINEL = Buffer.from('__SR_0123456789abcdef_END__');

async function collect(chunks: Buffer[], cap: number): Promise<{ text: string; emitted: string; dropped: number; after: string }> {
  const emitted: Buffer[] = [];
  const c = new OutputCollector(SENTINEL, cap, async (chunk) => void emitted.push(Buffer.from(chunk)));
  let after = '';
  for (const chunk of chunks) {
    const rest = await c.push(chunk);
    if (rest !== undefined) after += rest.toString();
  }
  return { text: c.text(), emitted: Buffer.concat(emitted).toString(), dropped: c.dropped, after };
}

describe('OutputCollector', () => {
  it('finds the sentinel wherever the chunks cut it, and streams exactly the bytes before it', async () => {
    const whole = Buffer.concat([Buffer.from('out _ __S line\n'), SENTINEL, Buffer.from(':0\n')]);
    for (let a = 1; a < whole.length; a++) {
      for (const b of [a + 1, a + 7, whole.length]) {
        const parts = [whole.subarray(0, a), whole.subarray(a, Math.min(b, whole.length)), whole.subarray(Math.min(b, whole.length))].filter((p) => p.length);
        const r = await collect(parts, 1024);
        expect(r.text).toBe('out _ __S line\n');
        expect(r.emitted).toBe('out _ __S line\n');
        expect(r.after).toBe(':0\n');
      }
    }
  });

  it('keeps and streams up to the cap and counts the rest', async () => {
    const r = await collect([Buffer.from('0123456789'), Buffer.from('abcdef'), SENTINEL], 12);
    expect(r.text).toBe('0123456789ab');
    expect(r.emitted).toBe('0123456789ab');
    expect(r.dropped).toBe(4);
  });
});

describe('partialSuffix', () => {
  it('is the longest end of the buffer that begins the needle', () => {
    const needle = Buffer.from('__SR_x');
    expect(partialSuffix(Buffer.from('abc'), needle)).toBe(0);
    expect(partialSuffix(Buffer.from('abc_'), needle)).toBe(1);
    expect(partialSuffix(Buffer.from('abc__'), needle)).toBe(2);
    expect(partialSuffix(Buffer.from('a__S'), needle)).toBe(3);
    expect(partialSuffix(Buffer.from('__SR_'), needle)).toBe(5);
    expect(partialSuffix(Buffer.from('_S'), needle)).toBe(0);
    expect(partialSuffix(Buffer.from(''), needle)).toBe(0);
  });
});
