import { describe, expect, it } from 'vitest';
import { asciiJsonObject } from '../../../src/control-plane/ascii-json.js';

const asciiJsonString = (bytes: Buffer): string => {
  const json = asciiJsonObject('{"seq":1,"data":"', bytes).toString('latin1');
  expect(JSON.parse(json)).toEqual({ seq: 1, data: bytes.toString('latin1') });
  return json.slice('{"seq":1,"data":'.length, -1);
};

describe('asciiJsonObject', () => {
  it('writes what JSON.stringify gives for the text, for every ASCII byte at every alignment', () => {
    const all = Buffer.from(Array.from({ length: 128 }, (_, i) => i));
    const samples = [
      Buffer.from(''),
      Buffer.from('plain text\nwith lines\n'),
      Buffer.from('0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n'.repeat(64)),
      Buffer.from('say "hi"\n'),
      Buffer.from('C:\\path\n'),
      Buffer.from('tab\there\r\n\u0001\u001f\u007f end'),
      all,
    ];
    // Each byte alone and next to every other, and every sample at four offsets of its memory.
    for (let b = 0; b < 128; b++) samples.push(Buffer.from([b]), Buffer.from([0x61, b, 0x62, 0x63, b, 0x0a, 0x64, 0x65, b]));
    for (const sample of samples) {
      for (let offset = 0; offset < 4; offset++) {
        const backing = Buffer.alloc(sample.length + 8, 0x78);
        sample.copy(backing, offset);
        const bytes = backing.subarray(offset, offset + sample.length);
        expect(asciiJsonString(bytes)).toBe(JSON.stringify(bytes.toString('latin1')));
      }
    }
  });

  it('agrees with JSON.stringify on random ASCII', () => {
    let seed = 7;
    const next = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
    for (let n = 0; n < 300; n++) {
      const bytes = Buffer.alloc(next() % 200);
      // Mostly printable with newlines, sometimes anything below 0x80.
      const wide = n % 3 === 0;
      for (let i = 0; i < bytes.length; i++) bytes[i] = wide ? next() % 128 : next() % 20 === 0 ? 0x0a : 0x20 + (next() % 95);
      expect(asciiJsonString(bytes)).toBe(JSON.stringify(bytes.toString('latin1')));
    }
  });
});
