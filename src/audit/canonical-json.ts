export { canonicalJson } from '../signing/canonical-json.js';

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
