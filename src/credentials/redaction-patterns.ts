import { RunnerError } from '../util/errors.js';

/**
 * The smallest secret the runner accepts. Shorter values would mask ordinary
 * output (and a 5-byte secret is guessable anyway).
 */
export const MIN_SECRET_BYTES = 6;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Copies a secret into fresh bytes, refusing one shorter than {@link MIN_SECRET_BYTES}. */
export function secretBytes(secret: Uint8Array | string, label?: string): Uint8Array {
  const bytes = typeof secret === 'string' ? new Uint8Array(Buffer.from(secret, 'utf8')) : new Uint8Array(secret);
  if (bytes.length < MIN_SECRET_BYTES) {
    bytes.fill(0);
    const what = label ? `secret "${label}"` : 'a secret';
    throw new RunnerError(
      'credential_invalid',
      `${what} is ${bytes.length} bytes long; secrets must be at least ${MIN_SECRET_BYTES} bytes (characters) so they can be redacted safely, use a longer value`,
    );
  }
  return bytes;
}

/**
 * Every byte form of `secret` the redactor masks: the raw bytes, each line of
 * a multi-line secret, base64 at all three alignments (standard and URL-safe,
 * with and without padding), URL-encoded, JSON-escaped (once and twice) and hex.
 */
export function redactionForms(secret: Uint8Array): Uint8Array[] {
  const forms = new Set<string>();
  const raw = Buffer.from(secret);
  const asLatin1 = (b: Buffer): string => b.toString('latin1');
  forms.add(asLatin1(raw));

  let text: string | undefined;
  try {
    text = utf8.decode(secret);
  } catch {
    text = undefined;
  }

  // Lines of a multi-line secret (a PEM key): output is often re-wrapped or
  // printed line by line, so each line on its own is masked too.
  if (raw.includes(0x0a)) {
    const lf = raw.toString('latin1');
    for (const line of lf.split(/\r?\n/)) {
      if (Buffer.byteLength(line.trim(), 'latin1') >= MIN_SECRET_BYTES) forms.add(line.trim());
    }
    forms.add(lf.replace(/\r?\n/g, '\r\n'));
    forms.add(lf.replace(/\r\n/g, '\n'));
  }

  for (const form of base64Forms(raw)) forms.add(form);
  forms.add(raw.toString('hex'));
  forms.add(raw.toString('hex').toUpperCase());
  for (const form of percentForms(raw)) forms.add(form);
  if (text !== undefined) for (const form of jsonForms(text)) forms.add(form);

  // Forms are ASCII (encodings) or the raw bytes, so latin1 round-trips them.
  return [...forms]
    .filter((form) => form.length >= Math.min(MIN_SECRET_BYTES, raw.length))
    .map((form) => new Uint8Array(Buffer.from(form, 'latin1')));
}

/**
 * Base64 of the secret as it appears inside a longer base64 text. The secret
 * may start at any byte offset k mod 3 of the encoded data; only the characters
 * whose 6 bits come entirely from the secret are fixed, the ones at the edges
 * depend on the neighbouring bytes. At offset 0 with the secret at the end of
 * the data, the full encoding (with its last partial character and padding) is
 * also known, and masked so that no trailing character is left over.
 */
function base64Forms(raw: Buffer): string[] {
  const out: string[] = [];
  const n = raw.length;
  for (let k = 0; k < 3; k++) {
    const padded = Buffer.concat([Buffer.alloc(k), raw]);
    const encoded = padded.toString('base64');
    const start = Math.ceil((8 * k) / 6);
    const end = Math.floor((8 * (k + n)) / 6);
    const core = encoded.slice(start, end);
    out.push(core, toUrlSafe(core));
    if (k === 0) {
      out.push(encoded, encoded.replace(/=+$/, ''), toUrlSafe(encoded), toUrlSafe(encoded).replace(/=+$/, ''));
    }
    padded.fill(0);
  }
  return out;
}

function toUrlSafe(b64: string): string {
  return b64.replace(/\+/g, '-').replace(/\//g, '_');
}

/** encodeURIComponent-style, strict RFC 3986, form (`+` for space), lower-case hex. */
function percentForms(raw: Buffer): string[] {
  const component = percentEncode(raw, /[A-Za-z0-9\-_.~!'()*]/);
  const strict = percentEncode(raw, /[A-Za-z0-9\-_.~]/);
  const lower = (s: string): string => s.replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase());
  return [component, strict, component.replace(/%20/g, '+'), strict.replace(/%20/g, '+'), lower(component), lower(strict)];
}

function percentEncode(raw: Buffer, keep: RegExp): string {
  let s = '';
  for (const byte of raw) {
    const ch = String.fromCharCode(byte);
    s += byte < 0x80 && keep.test(ch) ? ch : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return s;
}

/**
 * JSON string escapes: as JSON.stringify writes them, with `\/`, with non-ASCII
 * as `\uXXXX`, and escaped twice (a JSON document inside a JSON log line).
 */
function jsonForms(text: string): string[] {
  const once = JSON.stringify(text).slice(1, -1);
  const ascii = once.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  const twice = JSON.stringify(once).slice(1, -1);
  // The forms are stored as latin1 byte strings: re-encode the UTF-8 ones.
  const bytes = (s: string): string => Buffer.from(s, 'utf8').toString('latin1');
  return [bytes(once), bytes(once.replace(/\//g, '\\/')), ascii, bytes(twice), JSON.stringify(ascii).slice(1, -1)];
}
