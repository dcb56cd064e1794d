/**
 * The canonical encoding that request signatures cover: JSON as defined by
 * RFC 8785 (JSON Canonicalization Scheme), restricted to what protocol
 * messages hold.
 *
 * - object keys sorted by their UTF-16 code units (JavaScript's default sort),
 *   keys whose value is `undefined` left out;
 * - no whitespace anywhere;
 * - strings escaped as ECMAScript JSON.stringify does (`"`, `\`, and control
 *   characters; everything else, non-ASCII included, as is);
 * - numbers as ECMAScript's Number-to-string (`1`, `1.5`, `1e+21`); NaN and
 *   the infinities are refused;
 * - the result encoded as UTF-8.
 *
 * Anything else (bigint, functions, symbols, `undefined` in an array, class
 * instances other than plain objects and arrays) is refused with a TypeError:
 * a value the encoding cannot pin down must not be signed.
 */
export function canonicalJson(value: unknown): string {
  return encode(value, '$');
}

/** {@link canonicalJson} as UTF-8 bytes. */
export function canonicalBytes(value: unknown): Uint8Array {
  return new TextEncoder().encode(canonicalJson(value));
}

function encode(value: unknown, path: string): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'string':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`${path}: ${value} has no canonical JSON form`);
      return JSON.stringify(value);
    case 'object':
      break;
    default:
      throw new TypeError(`${path}: a ${typeof value} has no canonical JSON form`);
  }
  if (Array.isArray(value)) {
    return `[${value
      .map((item, i) => {
        if (item === undefined) throw new TypeError(`${path}[${i}]: undefined has no canonical JSON form`);
        return encode(item, `${path}[${i}]`);
      })
      .join(',')}]`;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    throw new TypeError(`${path}: only plain objects and arrays have a canonical JSON form`);
  }
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record)
    .filter((k) => record[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${encode(record[k], `${path}.${k}`)}`).join(',')}}`;
}
