import { describe, expect, it } from 'vitest';
import { Redactor } from '../../../src/credentials/redactor.js';
import { createLogRedaction } from '../../../src/credentials/log-redaction.js';
import { isRunnerError } from '../../../src/util/errors.js';

const SECRET = 'sk-live-9f8e7d6c5b4a3210';

/**
 * Every base64 text a secret can show up in: 0, 1 or 2 bytes before it (the
 * three alignments), some after, both alphabets, with and without padding.
 */
function base64Variants(secret: string): Array<{ b64: string; before: number; after: number }> {
  const out: Array<{ b64: string; before: number; after: number }> = [];
  for (const prefix of ['', 'a', 'ab']) {
    for (const suffix of ['', 'z', 'zy', '!tail']) {
      const data = Buffer.from(prefix + secret + suffix);
      const std = data.toString('base64');
      // Characters that also carry bits of the neighbouring bytes may stay.
      const before = Math.ceil((8 * prefix.length) / 6);
      const after = std.length - Math.floor((8 * (prefix.length + secret.length)) / 6);
      for (const b64 of [std, std.replace(/=+$/, ''), data.toString('base64url')]) out.push({ b64, before, after });
    }
  }
  return out;
}

function through(redactor: Redactor, chunks: Buffer[]): string {
  const stream = redactor.stream();
  const parts = chunks.map((c) => stream.push(c));
  parts.push(stream.end());
  return Buffer.concat(parts).toString('utf8');
}

describe('Redactor', () => {
  it('masks a secret with its label, or *** without one', () => {
    const r = new Redactor();
    r.add(SECRET, 'API_KEY');
    expect(r.redact(`token=${SECRET}; again ${SECRET}.`)).toBe('token=[REDACTED:API_KEY]; again [REDACTED:API_KEY].');
    const plain = new Redactor();
    plain.add(new TextEncoder().encode(SECRET));
    expect(plain.redact(`x${SECRET}y`)).toBe('x***y');
    const stars = new Redactor({ mask: 'stars' });
    stars.add(SECRET, 'API_KEY');
    expect(stars.redact(SECRET)).toBe('***');
  });

  it('refuses a secret shorter than 6 bytes, saying the minimum', () => {
    const r = new Redactor();
    let caught: unknown;
    try {
      r.add('abcde', 'PIN');
    } catch (err) {
      caught = err;
    }
    expect(isRunnerError(caught, 'credential_invalid')).toBe(true);
    expect((caught as Error).message).toMatch(/at least 6/);
    expect((caught as Error).message).not.toContain('abcde');
    expect(() => r.add('abcdef')).not.toThrow();
  });

  it('masks a secret split across every chunk boundary', () => {
    const r = new Redactor();
    r.add(SECRET, 'K');
    const text = Buffer.from(`before ${SECRET} middle ${SECRET}${SECRET} after`);
    const expected = 'before [REDACTED:K] middle [REDACTED:K][REDACTED:K] after';
    for (let a = 0; a <= text.length; a++) {
      for (let b = a; b <= text.length; b += 3) {
        const out = through(r, [text.subarray(0, a), text.subarray(a, b), text.subarray(b)]);
        expect(out, `split at ${a}/${b}`).toBe(expected);
      }
    }
  });

  it('masks one byte at a time', () => {
    const r = new Redactor();
    r.add(SECRET, 'K');
    const text = Buffer.from(`a${SECRET}b`);
    const chunks = [...text].map((byte) => Buffer.from([byte]));
    expect(through(r, chunks)).toBe('a[REDACTED:K]b');
  });

  it('masks base64 at all three alignments, standard and URL-safe, with and without padding', () => {
    const r = new Redactor();
    r.add(SECRET, 'K');
    for (const { b64, before, after } of base64Variants(SECRET)) {
      const out = r.redact(`data: ${b64} end`);
      expect(out, b64).toContain('[REDACTED:K]');
      const [head, tail] = out.slice('data: '.length, -' end'.length).split('[REDACTED:K]');
      expect(head!.length, b64).toBeLessThanOrEqual(before);
      expect(tail!.length, b64).toBeLessThanOrEqual(after);
    }
  });

  it('masks base64 split across chunks', () => {
    const r = new Redactor();
    r.add(SECRET, 'K');
    const b64 = Buffer.from(`Authorization: Basic ${Buffer.from(`user:${SECRET}`).toString('base64')}\n`);
    for (let a = 0; a <= b64.length; a++) {
      const out = through(r, [b64.subarray(0, a), b64.subarray(a)]);
      expect(out).toContain('[REDACTED:K]');
      expect(out).not.toContain(Buffer.from(`:${SECRET}`).toString('base64').slice(4, 16));
    }
  });

  it('masks URL-encoded and JSON-escaped forms', () => {
    const secret = 'p@ss w/rd "q" ünï+&=';
    const r = new Redactor();
    r.add(secret, 'PW');
    const forms = [
      encodeURIComponent(secret),
      encodeURIComponent(secret).replace(/%20/g, '+'),
      JSON.stringify(secret).slice(1, -1),
      JSON.stringify(JSON.stringify(secret).slice(1, -1)).slice(1, -1),
      JSON.stringify(secret).slice(1, -1).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`),
      Buffer.from(secret).toString('hex'),
    ];
    for (const form of forms) {
      expect(r.redact(`<${form}>`), form).toBe('<[REDACTED:PW]>');
    }
    // A JSON log line carrying the secret in a field.
    expect(r.redact(JSON.stringify({ msg: 'x', value: secret }))).toBe('{"msg":"x","value":"[REDACTED:PW]"}');
    const lower = encodeURIComponent(secret).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase());
    expect(r.redact(lower)).toBe('[REDACTED:PW]');
  });

  it('masks each line of a multi-line secret, and the whole with either line ending', () => {
    const pem = '-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\nabcdefghijklmnopqrstuv\nxyz\n-----END KEY-----';
    const r = new Redactor();
    r.add(pem, 'PEM');
    expect(r.redact(`key:\n${pem}\n`)).toBe('key:\n[REDACTED:PEM]\n');
    expect(r.redact(pem.replace(/\n/g, '\r\n'))).toBe('[REDACTED:PEM]');
    const reflowed = 'line 2 is MIIBOgIBAAJBAKj34GkxFhD9 and then abcdefghijklmnopqrstuv.';
    expect(r.redact(reflowed)).toBe('line 2 is [REDACTED:PEM] and then [REDACTED:PEM].');
    // Lines shorter than the minimum ("xyz") are not masked on their own.
    expect(r.redact('xyz')).toBe('xyz');
  });

  it('masks overlapping and adjacent secrets without leaving a byte of either', () => {
    const r = new Redactor();
    r.add('abcdefgh', 'A');
    r.add('efghijkl', 'B');
    expect(r.redact('xabcdefghijklx')).toBe('x[REDACTED:A]x');
    expect(r.redact('abcdefghefghijkl')).toBe('[REDACTED:A][REDACTED:B]');
    // A long run of overlapping occurrences stays one mask, also when streamed.
    const r2 = new Redactor();
    r2.add('aaaaaaaa', 'A');
    const run = Buffer.from(`x${'a'.repeat(1000)}y`);
    const chunks: Buffer[] = [];
    for (let i = 0; i < run.length; i += 7) chunks.push(run.subarray(i, i + 7));
    expect(through(r2, chunks)).toBe('x[REDACTED:A]y');
  });

  it('counts references, unmasks after the last remove, and redacts bytes', () => {
    const r = new Redactor();
    r.add(SECRET, 'K');
    r.add(SECRET, 'K');
    r.remove(SECRET);
    expect(r.redact(SECRET)).toBe('[REDACTED:K]');
    r.remove(SECRET);
    expect(r.size).toBe(0);
    expect(r.redact(SECRET)).toBe(SECRET);
    r.add(SECRET, 'K');
    const bytes = r.redactBytes(Buffer.from(`>${SECRET}<`));
    expect(bytes.toString()).toBe('>[REDACTED:K]<');
    const untouched = Buffer.from('nothing here');
    expect(r.redactBytes(untouched)).toBe(untouched);
  });

  it('keeps memory bounded on a long stream', () => {
    const r = new Redactor();
    r.add(SECRET, 'K');
    const stream = r.stream();
    const chunk = Buffer.alloc(64 * 1024, 'x');
    let out = 0;
    for (let i = 0; i < 64; i++) {
      const part = stream.push(chunk);
      // Held back at most the longest form minus one byte.
      expect(chunk.length * (i + 1) - (out + part.length)).toBeLessThan(200);
      out += part.length;
    }
    out += stream.end().length;
    expect(out).toBe(64 * chunk.length);
  });

  it('masks a binary (non-UTF-8) secret in bytes, hex and base64', () => {
    const secret = new Uint8Array([0xff, 0x00, 0xfe, 0x80, 0x81, 0x7f, 0x10, 0x20]);
    const r = new Redactor();
    r.add(secret, 'BIN');
    const input = new Uint8Array([1, 2, ...secret, 3]);
    expect([...r.redactBytes(input)]).toEqual([1, 2, ...Buffer.from('[REDACTED:BIN]'), 3]);
    expect(r.redact(`hex ${Buffer.from(secret).toString('hex')} b64 ${Buffer.from(secret).toString('base64')}`)).toBe(
      'hex [REDACTED:BIN] b64 [REDACTED:BIN]',
    );
  });

  it('redacts log lines through createLogRedaction', () => {
    const r = new Redactor();
    const redact = createLogRedaction(r);
    expect(redact('{"msg":"hi"}\n')).toBe('{"msg":"hi"}\n');
    r.add(SECRET, 'K');
    expect(redact(`{"msg":"got ${SECRET}"}\n`)).toBe('{"msg":"got [REDACTED:K]"}\n');
  });

  it('matches the one-shot result for random splits of random text', () => {
    const r = new Redactor();
    const secrets = ['Zm9vYmFyYmF6', 'hunter2hunter2', 'ABCDEFGHIJ+/xyz'];
    secrets.forEach((s, i) => r.add(s, `S${i}`));
    let seed = 7;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const pieces = [...secrets, ...secrets.map((s) => Buffer.from(s).toString('base64')), 'noise ', 'Zm9v', 'hunter', '\n'];
    for (let round = 0; round < 50; round++) {
      let text = '';
      for (let i = 0; i < 40; i++) text += pieces[rand(pieces.length)];
      const whole = r.redact(text);
      for (const s of secrets) expect(whole).not.toContain(s);
      const buf = Buffer.from(text);
      const chunks: Buffer[] = [];
      for (let i = 0; i < buf.length; ) {
        const n = 1 + rand(20);
        chunks.push(buf.subarray(i, i + n));
        i += n;
      }
      expect(through(r, chunks)).toBe(whole);
    }
  });
});
