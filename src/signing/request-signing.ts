import sodium from 'libsodium-wrappers';
import type { Signature } from '../protocol/messages.js';
import { canonicalBytes } from './canonical-json.js';

/**
 * Prefix of the signed bytes: keeps a request signature from ever being valid
 * as any other kind of Ed25519 signature made with the same key.
 */
export const REQUEST_SIGNATURE_CONTEXT = 'sandbox-runner-request:v1\n';

/** A message that may carry a request signature. */
export type SignableMessage = Record<string, unknown> & { sig?: Signature | undefined };

export interface SignRequestOptions {
  /** The control plane's Ed25519 secret key (64 bytes, libsodium layout). */
  secretKey: Uint8Array;
  /** The runner the message is for. */
  runnerId: string;
  /** Milliseconds since the epoch; default Date.now. */
  clock?: () => number;
  /** The nonce; default 18 random bytes, base64url (24 characters). Tests pin it. */
  nonce?: string;
}

/**
 * The bytes a signature covers: the context prefix, then the canonical JSON
 * (canonical-json.ts) of the message with `sig` holding `ts`, `nonce` and
 * `runnerId` but not `value`.
 */
export function signedBytes(message: SignableMessage): Uint8Array {
  const { sig, ...rest } = message;
  const covered = sig ? { ...rest, sig: { ts: sig.ts, nonce: sig.nonce, runnerId: sig.runnerId } } : rest;
  const body = canonicalBytes(covered);
  const prefix = new TextEncoder().encode(REQUEST_SIGNATURE_CONTEXT);
  const out = new Uint8Array(prefix.length + body.length);
  out.set(prefix);
  out.set(body, prefix.length);
  return out;
}

/**
 * Signs a control-plane request for one runner (Ed25519): returns a copy of
 * the message with `sig: {ts, nonce, runnerId, value}`; any `sig` it had is
 * replaced. The signature covers every other field of the message too.
 * @throws TypeError when the message holds a value canonical JSON refuses.
 */
export async function signRequest<T extends SignableMessage>(
  message: T,
  options: SignRequestOptions,
): Promise<T & { sig: Signature }> {
  await sodium.ready;
  return signRequestSync(message, options);
}

/**
 * signRequest for a caller that has already awaited `sodium.ready` (the
 * control plane signs inside its synchronous send path).
 */
export function signRequestSync<T extends SignableMessage>(message: T, options: SignRequestOptions): T & { sig: Signature } {
  const ts = (options.clock ?? Date.now)();
  const nonce = options.nonce ?? sodium.to_base64(sodium.randombytes_buf(18), sodium.base64_variants.URLSAFE_NO_PADDING);
  const unsigned = { ...message, sig: { ts, nonce, runnerId: options.runnerId, value: '' } };
  const signature = sodium.crypto_sign_detached(signedBytes(unsigned), options.secretKey);
  const value = sodium.to_base64(signature, sodium.base64_variants.ORIGINAL);
  return { ...message, sig: { ts, nonce, runnerId: options.runnerId, value } };
}
