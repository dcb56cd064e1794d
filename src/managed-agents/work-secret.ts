/**
 * The work item's `secret`: URL-safe base64 (padding optional) of a JSON
 * object `{sessions_token, api_base_url?}`. The token is the per-session
 * credential the worker prefers for every call about that item.
 */
export type DecodedSecret =
  | { ok: true; sessionsToken: string; apiBaseUrl: string | undefined }
  | { ok: false; reason: 'absent' | 'undecodable' | 'no_token' };

/** Decodes a work secret. Never throws; never includes the secret in the result's reason. */
export function decodeWorkSecret(secret: string | null | undefined): DecodedSecret {
  if (secret === null || secret === undefined || secret === '') return { ok: false, reason: 'absent' };
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(secret)) return { ok: false, reason: 'undecodable' };
  let parsed: unknown;
  try {
    const normalized = secret.replace(/-/g, '+').replace(/_/g, '/').replace(/=+$/, '');
    const padded = normalized.padEnd(Math.ceil(normalized.length / 4) * 4, '=');
    parsed = JSON.parse(Buffer.from(padded, 'base64').toString('utf8'));
  } catch {
    return { ok: false, reason: 'undecodable' };
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return { ok: false, reason: 'undecodable' };
  const { sessions_token: token, api_base_url: base } = parsed as Record<string, unknown>;
  if (typeof token !== 'string' || token === '') return { ok: false, reason: 'no_token' };
  return { ok: true, sessionsToken: token, apiBaseUrl: typeof base === 'string' && base !== '' ? base : undefined };
}

/** Encodes a secret the way the server does (unpadded base64url); used by the fake and tests. */
export function encodeWorkSecret(payload: { sessions_token: string; api_base_url?: string }): string {
  return Buffer.from(JSON.stringify(payload), 'utf8').toString('base64url');
}
