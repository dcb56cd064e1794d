import { PatternMatcher } from './pattern-matcher.js';
import { redactionForms, secretBytes } from './redaction-patterns.js';

export { MIN_SECRET_BYTES } from './redaction-patterns.js';

/** A streaming redactor: bytes in, masked bytes out, secrets split across chunks included. */
export interface RedactionStream {
  /** Masks a chunk; may return fewer bytes than given (the held-back tail comes later). */
  push(chunk: Uint8Array): Buffer;
  /** Flushes the held-back tail; the stream is finished afterwards. */
  end(): Buffer;
}

export interface RedactorOptions {
  /**
   * How a masked secret reads: `label` writes `[REDACTED:<label>]` (or `***` for
   * a secret added without a label), `stars` always writes `***`. Default `label`.
   */
  mask?: 'label' | 'stars';
}

interface Entry {
  bytes: Uint8Array;
  label: string | undefined;
  refs: number;
}

interface Compiled {
  matcher: PatternMatcher;
  masks: Buffer[];
}

/**
 * Holds the secrets of the running calls and masks them, in every form it
 * knows (see redaction-patterns.ts), in text, byte buffers and streams.
 *
 * Adding the same value twice counts references: it stays masked until removed
 * as often as it was added, so two calls sharing a vault entry do not unmask
 * each other's output. A stream keeps the set of secrets it started with.
 */
export class Redactor {
  private readonly entries: Entry[] = [];
  private compiled: Compiled | undefined;
  private readonly maskStyle: 'label' | 'stars';

  constructor(options: RedactorOptions = {}) {
    this.maskStyle = options.mask ?? 'label';
  }

  /** Number of distinct secrets held. */
  get size(): number {
    return this.entries.length;
  }

  /**
   * Adds a secret (the bytes are copied).
   * @throws RunnerError `credential_invalid` when it is shorter than 6 bytes.
   */
  add(secret: Uint8Array | string, label?: string): void {
    const bytes = secretBytes(secret, label);
    const existing = this.find(bytes);
    if (existing) {
      existing.refs++;
      bytes.fill(0);
      return;
    }
    this.entries.push({ bytes, label, refs: 1 });
    this.compiled = undefined;
  }

  /** Drops one reference to a secret; its copy is zeroed when the last goes. Unknown secrets are ignored. */
  remove(secret: Uint8Array | string): void {
    const bytes = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret;
    const entry = this.find(bytes);
    if (typeof secret === 'string') bytes.fill(0);
    if (!entry || --entry.refs > 0) return;
    this.entries.splice(this.entries.indexOf(entry), 1);
    entry.bytes.fill(0);
    this.compiled = undefined;
  }

  /** Drops every secret and zeroes the copies. */
  clear(): void {
    for (const entry of this.entries) entry.bytes.fill(0);
    this.entries.length = 0;
    this.compiled = undefined;
  }

  /** Masks every secret in `text`. */
  redact(text: string): string {
    if (this.entries.length === 0 || text.length === 0) return text;
    const input = Buffer.from(text, 'utf8');
    const output = this.redactBytes(input);
    return output === input ? text : output.toString('utf8');
  }

  /** Masks every secret in `buf`; returns `buf` itself when nothing matched. */
  redactBytes(buf: Uint8Array): Buffer {
    const input = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    if (this.entries.length === 0) return input;
    const stream = this.stream();
    const head = stream.push(input);
    const tail = stream.end();
    if (head.length + tail.length === input.length && !(stream as StreamImpl).matched) return input;
    return Buffer.concat([head, tail]);
  }

  /**
   * A streaming redactor over the current secrets. It holds back at most the
   * longest form minus one byte, so memory stays bounded whatever the input.
   */
  stream(): RedactionStream {
    if (this.entries.length === 0) return passThrough();
    return new StreamImpl(this.compile());
  }

  private find(bytes: Uint8Array): Entry | undefined {
    return this.entries.find((e) => Buffer.compare(e.bytes, bytes) === 0);
  }

  private compile(): Compiled {
    if (this.compiled) return this.compiled;
    const patterns: Uint8Array[] = [];
    const tags: number[] = [];
    const masks: Buffer[] = [];
    this.entries.forEach((entry, index) => {
      for (const form of redactionForms(entry.bytes)) {
        patterns.push(form);
        tags.push(index);
      }
      const label = this.maskStyle === 'label' && entry.label ? `[REDACTED:${entry.label}]` : '***';
      masks.push(Buffer.from(label, 'utf8'));
    });
    this.compiled = { matcher: new PatternMatcher(patterns, tags), masks };
    for (const p of patterns) p.fill(0);
    return this.compiled;
  }
}

function passThrough(): RedactionStream {
  return {
    push: (chunk) => (Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk)),
    end: () => Buffer.alloc(0),
  };
}

/** A found occurrence, in absolute stream offsets; `cont` continues a mask already written. */
interface Span {
  start: number;
  end: number;
  tag: number;
  cont: boolean;
}

class StreamImpl implements RedactionStream {
  matched = false;
  /** Bytes taken in so far (absolute offset of the next byte). */
  private pos = 0;
  /** Bytes not yet searched as match starts, from absolute offset `heldStart`. */
  private held: Buffer = Buffer.alloc(0);
  private heldStart = 0;
  /** Everything before this absolute offset has been written out. */
  private written = 0;
  /** Found occurrences not yet written; sorted, disjoint. */
  private spans: Span[] = [];
  private ended = false;
  private readonly onMatch = (start: number, length: number, tag: number): void => {
    this.addSpan(this.heldStart + start, this.heldStart + start + length, tag);
  };

  constructor(private readonly compiled: Compiled) {}

  push(chunk: Uint8Array): Buffer {
    if (this.ended) throw new Error('redaction stream already ended');
    const input = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (input.length === 0) return Buffer.alloc(0);
    const buf = this.held.length === 0 ? input : Buffer.concat([this.held, input]);
    this.pos += input.length;
    // Every occurrence starting before `limit` lies entirely in `buf`; later
    // starts wait for more bytes, so the tail (at most maxLength - 1) is held.
    return this.step(buf, this.pos - this.compiled.matcher.maxLength + 1);
  }

  end(): Buffer {
    if (this.ended) return Buffer.alloc(0);
    const out = this.step(this.held, this.pos);
    this.ended = true;
    this.held = Buffer.alloc(0);
    return out;
  }

  /** Searches the starts before `limit` in `buf` (which begins at heldStart) and writes out what is settled. */
  private step(buf: Buffer, limit: number): Buffer {
    const base = this.heldStart;
    if (limit <= base) {
      this.held = buf === this.held ? buf : Buffer.from(buf);
      return Buffer.alloc(0);
    }
    this.compiled.matcher.scan(buf, 0, limit - base, this.onMatch);
    const parts: Buffer[] = [];
    let cursor = Math.max(base, this.written);
    for (const span of this.spans) {
      if (span.start > cursor) parts.push(buf.subarray(cursor - base, span.start - base));
      if (!span.cont) parts.push(this.compiled.masks[span.tag]!);
      cursor = Math.max(cursor, span.end);
    }
    this.spans = [];
    if (cursor < limit) {
      parts.push(buf.subarray(cursor - base, limit - base));
      cursor = limit;
    }
    // A span may end past `limit`; it is written whole, and the bytes after
    // `limit` stay held (as match starts still to search) but are not written again.
    this.written = cursor;
    this.heldStart = limit;
    // Copy the tail: a subarray would pin the whole (possibly large) chunk.
    this.held = Buffer.from(buf.subarray(limit - base));
    if (parts.length === 0) return Buffer.alloc(0);
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  private addSpan(start: number, end: number, tag: number): void {
    this.matched = true;
    if (end <= this.written) return;
    let cont = false;
    if (start < this.written) {
      // Overlaps a mask already written (plain bytes written out never match,
      // see step): mask the rest without a second marker.
      start = this.written;
      cont = true;
    }
    // Matches arrive in order of their start: merge overlapping ones.
    const last = this.spans[this.spans.length - 1];
    if (last && start < last.end) {
      last.end = Math.max(last.end, end);
      return;
    }
    this.spans.push({ start, end, tag, cont });
  }
}
