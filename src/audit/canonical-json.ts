/**
 * The canonical encoding the audit chain hashes: JSON with object keys sorted by
 * UTF-16 code units, no whitespace, `undefined` members dropped. Two runs of the
 * same value give the same bytes, so a verifier can recompute any entry's hash
 * from the parsed line alone.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) {
      // JSON.stringify would write null and the round trip would still hash the
      // same, but a silent change of value has no place in an audit record.
      throw new TypeError('audit values must be finite numbers');
    }
    if (typeof value === 'bigint' || typeof value === 'function' || typeof value === 'symbol') {
      throw new TypeError(`audit values cannot be of type ${typeof value}`);
    }
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) {
    return `[${value.map((item) => (item === undefined ? 'null' : canonicalJson(item))).join(',')}]`;
  }
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record)
    .filter((key) => record[key] !== undefined)
    .sort();
  return `{${keys.map((key) => `${JSON.stringify(key)}:${canonicalJson(record[key])}`).join(',')}}`;
}

/**
 * Turns an arbitrary value into plain JSON data (what `JSON.parse` gives back),
 * so that the hash computed at append time is the one a verifier recomputes
 * from the stored line: Dates become strings, `toJSON` is honoured, undefined
 * members vanish.
 */
export function toPlainJson(value: unknown): unknown {
  const text = JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v === 'number' && !Number.isFinite(v)) throw new TypeError('audit values must be finite numbers');
    return v;
  });
  return text === undefined ? null : (JSON.parse(text) as unknown);
}
