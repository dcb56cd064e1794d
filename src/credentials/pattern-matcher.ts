/**
 * A multi-pattern byte matcher (Wu-Manber). It slides a window as long as the
 * shortest pattern and looks at the window's last two bytes: when that pair
 * occurs in no pattern prefix, the window jumps ahead by up to its length
 * without looking at the bytes it skips. Only windows whose last pair ends a
 * pattern prefix are compared byte by byte. Ordinary output (text, logs,
 * random base64) is thus read a few bytes per step, whatever the number of
 * patterns. A per-byte automaton was measured about ten times slower in
 * JavaScript, which is why this is not Aho-Corasick.
 */
export class PatternMatcher {
  /** The longest pattern, in bytes: the most a match can reach. */
  readonly maxLength: number;
  /** The shortest pattern: the window size. */
  readonly minLength: number;
  private readonly patterns: Uint8Array[];
  private readonly tags: number[];
  /** How far the window may jump when its last two bytes are this pair (capped at 255). */
  private readonly shift = new Uint8Array(65536);
  /** Pattern indices whose window-sized prefix ends with this pair. */
  private readonly buckets = new Map<number, number[]>();

  /**
   * @param patterns non-empty byte strings of at least 2 bytes
   * @param tags `tags[i]` is reported with matches of `patterns[i]`
   */
  constructor(patterns: readonly Uint8Array[], tags: readonly number[]) {
    this.patterns = patterns.map((p) => new Uint8Array(p));
    this.tags = [...tags];
    this.maxLength = Math.max(0, ...this.patterns.map((p) => p.length));
    this.minLength = this.patterns.length === 0 ? 0 : Math.min(...this.patterns.map((p) => p.length));
    const m = this.minLength;
    if (m < 2) throw new RangeError('patterns must be at least 2 bytes long');
    this.shift.fill(Math.min(255, m - 1));
    this.patterns.forEach((pattern, index) => {
      for (let j = 1; j < m; j++) {
        const pair = (pattern[j - 1]! << 8) | pattern[j]!;
        const distance = m - 1 - j;
        if (distance < this.shift[pair]!) this.shift[pair] = distance;
      }
      const last = (pattern[m - 2]! << 8) | pattern[m - 1]!;
      const bucket = this.buckets.get(last);
      if (bucket) bucket.push(index);
      else this.buckets.set(last, [index]);
    });
  }

  /**
   * Reports, for each start offset in `[from, to)` of `buf` where a pattern
   * begins, the longest such pattern, in increasing order of start. A pattern
   * that would run past the end of `buf` is not reported.
   */
  scan(buf: Uint8Array, from: number, to: number, onMatch: (start: number, length: number, tag: number) => void): void {
    const m = this.minLength;
    const shift = this.shift;
    const n = buf.length;
    const stop = Math.min(n, to + m - 1);
    let i = from + m - 1;
    while (i < stop) {
      const pair = (buf[i - 1]! << 8) | buf[i]!;
      const jump = shift[pair]!;
      if (jump !== 0) {
        i += jump;
        continue;
      }
      this.verify(buf, i - m + 1, pair, onMatch);
      i++;
    }
  }

  private verify(
    buf: Uint8Array,
    start: number,
    pair: number,
    onMatch: (start: number, length: number, tag: number) => void,
  ): void {
    const bucket = this.buckets.get(pair);
    if (!bucket) return;
    let best = -1;
    for (const index of bucket) {
      const pattern = this.patterns[index]!;
      const len = pattern.length;
      if (start + len > buf.length || (best >= 0 && len <= this.patterns[best]!.length)) continue;
      let k = 0;
      while (k < len && buf[start + k] === pattern[k]) k++;
      if (k === len) best = index;
    }
    if (best >= 0) onMatch(start, this.patterns[best]!.length, this.tags[best]!);
  }

  /** Zeroes the copies of the patterns: they spell out the secrets. */
  wipe(): void {
    for (const p of this.patterns) p.fill(0);
    this.shift.fill(0);
  }
}
