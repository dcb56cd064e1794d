import { createPrivateKey, createPublicKey, randomBytes, sign, type KeyObject } from 'node:crypto';
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
  return signRequestSync(message, options);
}

/** signRequest, synchronously (the control plane signs inside its synchronous send path). */
export function signRequestSync<T extends SignableMessage>(message: T, options: SignRequestOptions): T & { sig: Signature } {
  const ts = (options.clock ?? Date.now)();
  const nonce = options.nonce ?? randomBytes(18).toString('base64url');
  const unsigned = { ...message, sig: { ts, nonce, runnerId: options.runnerId, value: '' } };
  // The same Ed25519 signature libsodium makes (EdDSA is deterministic), through
  // OpenSSL: a few times faster, and this runs once per request sent.
  const value = sign(null, signedBytes(unsigned), ed25519PrivateKey(options.secretKey)).toString('base64');
  return { ...message, sig: { ts, nonce, runnerId: options.runnerId, value } };
}

// DER prefixes that wrap a raw Ed25519 key as PKCS#8 (private) and SPKI (public), RFC 8410.
const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_ED25519 = Buffer.from('302a300506032b6570032100', 'hex');

/** Keys converted once per key (the same key signs or verifies every request). */
const privateKeys = new WeakMap<Uint8Array, KeyObject>();

/** A libsodium-layout Ed25519 secret key (seed ‖ public key, 64 bytes) as an OpenSSL key object. */
export function ed25519PrivateKey(secretKey: Uint8Array): KeyObject {
  let key = privateKeys.get(secretKey);
  if (!key) {
    key = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, secretKey.subarray(0, 32)]), format: 'der', type: 'pkcs8' });
    privateKeys.set(secretKey, key);
  }
  return key;
}

/** A raw 32-byte Ed25519 public key as an OpenSSL key object. */
export function ed25519PublicKey(publicKey: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_ED25519, publicKey]), format: 'der', type: 'spki' });
}
