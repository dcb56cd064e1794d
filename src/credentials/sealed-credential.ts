import sodium from 'libsodium-wrappers';
import { RunnerError } from '../util/errors.js';
import { MIN_SECRET_BYTES } from './redaction-patterns.js';

/** What a sealed credential is bound to: one tool call or one session. */
export type CredentialBinding = { callId: string } | { sessionId: string };

export interface SealCredentialOptions {
  /** The plain value; the caller wipes its own copy afterwards. At least 6 bytes. */
  value: Uint8Array | string;
  /** The credential's name, as in `credentials[].name` of the request. */
  name: string;
  boundTo: CredentialBinding;
  /** Milliseconds since the epoch after which the runner refuses it. */
  expiresAt: number;
  /** The runner's X25519 public key (32 bytes), stored at pairing. */
  runnerBoxPublicKey: Uint8Array;
}

export interface OpenCredentialOptions {
  /** This runner's X25519 key pair. */
  boxPublicKey: Uint8Array;
  boxSecretKey: Uint8Array;
  /** The name the request gave it and the call or session it must be bound to. */
  expect: { name: string } & ({ callId: string; sessionId?: undefined } | { sessionId: string; callId?: undefined });
  /** Milliseconds since the epoch; default Date.now. */
  clock?: () => number;
}

/** An opened credential; the caller owns `value` and must `sodium.memzero` it. */
export interface OpenedCredential {
  name: string;
  value: Uint8Array;
}

/**
 * Envelope layout (all integers big-endian), sealed whole with crypto_box_seal:
 *
 *   magic "SRC1" (4) | binding kind (1: 1 call, 2 session) | name length (1) | name
 *   | binding id length (2) | binding id (UTF-8) | expiresAt ms (8, uint64)
 *   | value length (4) | value
 *
 * Binary rather than JSON so that the runner never holds the value as a
 * (non-wipeable) JavaScript string.
 */
const MAGIC = [0x53, 0x52, 0x43, 0x31];
const KIND_CALL = 1;
const KIND_SESSION = 2;
const MAX_VALUE_BYTES = 1 << 20;

/**
 * Control-plane side: seals a credential to one runner, bound to a call or a
 * session and an expiry. Returns base64 (standard alphabet, padded).
 * Anyone holding the runner's public key can seal: authenticity comes from the
 * request signature, which covers the sealed string.
 * @throws RunnerError `credential_invalid` for a value shorter than 6 bytes or over 1 MiB.
 */
export async function sealCredential(options: SealCredentialOptions): Promise<string> {
  await sodium.ready;
  const value = typeof options.value === 'string' ? sodium.from_string(options.value) : options.value;
  const ownsValue = typeof options.value === 'string';
  try {
    checkValueLength(value.length, options.name);
    const name = sodium.from_string(options.name);
    const kind = 'callId' in options.boundTo ? KIND_CALL : KIND_SESSION;
    const bindingId = sodium.from_string('callId' in options.boundTo ? options.boundTo.callId : options.boundTo.sessionId);
    if (name.length < 1 || name.length > 255 || bindingId.length < 1 || bindingId.length > 0xffff) {
      throw new RunnerError('credential_invalid', `credential "${options.name}" has an empty or too long name or binding id`);
    }
    const size = 4 + 1 + 1 + name.length + 2 + bindingId.length + 8 + 4 + value.length;
    const envelope = new Uint8Array(size);
    const view = new DataView(envelope.buffer);
    let at = 0;
    envelope.set(MAGIC, at);
    at += 4;
    envelope[at++] = kind;
    envelope[at++] = name.length;
    envelope.set(name, at);
    at += name.length;
    view.setUint16(at, bindingId.length);
    at += 2;
    envelope.set(bindingId, at);
    at += bindingId.length;
    view.setBigUint64(at, BigInt(Math.max(0, Math.floor(options.expiresAt))));
    at += 8;
    view.setUint32(at, value.length);
    at += 4;
    envelope.set(value, at);
    const sealed = sodium.crypto_box_seal(envelope, options.runnerBoxPublicKey);
    sodium.memzero(envelope);
    return sodium.to_base64(sealed, sodium.base64_variants.ORIGINAL);
  } finally {
    if (ownsValue) sodium.memzero(value);
  }
}

/**
 * Runner side: opens a sealed credential and checks it is whole, meant for
 * this name and this call or session, and not expired. Fails closed: on any
 * problem it throws and no byte of the value survives.
 * @throws RunnerError `credential_invalid` with a message naming the credential and the reason.
 */
export async function openCredential(sealed: string, options: OpenCredentialOptions): Promise<OpenedCredential> {
  await sodium.ready;
  const label = `credential "${options.expect.name}"`;
  let box: Uint8Array;
  try {
    box = sodium.from_base64(sealed, sodium.base64_variants.ORIGINAL);
  } catch {
    throw new RunnerError('credential_invalid', `${label} is not valid base64; the control plane must send crypto_box_seal output in standard base64`);
  }
  let plain: Uint8Array;
  try {
    plain = sodium.crypto_box_seal_open(box, options.boxPublicKey, options.boxSecretKey);
  } catch {
    throw new RunnerError(
      'credential_invalid',
      `${label} cannot be opened with this runner's key: it was tampered with, truncated, or sealed for another runner; have the control plane seal it again to this runner's public key`,
    );
  }
  try {
    const envelope = parseEnvelope(plain, label);
    if (envelope.name !== options.expect.name) {
      throw new RunnerError('credential_invalid', `${label} holds a credential sealed as "${envelope.name}"; the name in the request must match the sealed one`);
    }
    const expected = options.expect.callId !== undefined ? { kind: KIND_CALL, id: options.expect.callId } : { kind: KIND_SESSION, id: options.expect.sessionId };
    if (envelope.kind !== expected.kind || envelope.bindingId !== expected.id) {
      const what = (kind: number, id: string): string => `${kind === KIND_CALL ? 'call' : 'session'} ${id}`;
      throw new RunnerError(
        'credential_invalid',
        `${label} is bound to ${what(envelope.kind, envelope.bindingId)}, not to ${what(expected.kind, expected.id)}; seal it for the call or session that uses it`,
      );
    }
    const now = (options.clock ?? Date.now)();
    if (now >= envelope.expiresAt) {
      throw new RunnerError(
        'credential_invalid',
        `${label} expired at ${new Date(envelope.expiresAt).toISOString()}; send the call again with a freshly sealed credential`,
      );
    }
    checkValueLength(envelope.valueLength, options.expect.name);
    const value = plain.slice(envelope.valueOffset, envelope.valueOffset + envelope.valueLength);
    return { name: envelope.name, value };
  } finally {
    sodium.memzero(plain);
  }
}

interface Envelope {
  kind: number;
  name: string;
  bindingId: string;
  expiresAt: number;
  valueOffset: number;
  valueLength: number;
}

function parseEnvelope(plain: Uint8Array, label: string): Envelope {
  const malformed = (): RunnerError =>
    new RunnerError('credential_invalid', `${label} has a malformed envelope; the control plane must seal the SRC1 envelope described in docs/security.md`);
  const view = new DataView(plain.buffer, plain.byteOffset, plain.byteLength);
  const need = (at: number, n: number): void => {
    if (at + n > plain.length) throw malformed();
  };
  let at = 0;
  need(at, 6);
  if (MAGIC.some((b, i) => plain[i] !== b)) throw malformed();
  at = 4;
  const kind = plain[at++]!;
  if (kind !== KIND_CALL && kind !== KIND_SESSION) throw malformed();
  const nameLength = plain[at++]!;
  need(at, nameLength + 2);
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let name: string;
  let bindingId: string;
  try {
    name = decoder.decode(plain.subarray(at, at + nameLength));
    at += nameLength;
    const idLength = view.getUint16(at);
    at += 2;
    need(at, idLength + 12);
    bindingId = decoder.decode(plain.subarray(at, at + idLength));
    at += idLength;
  } catch (err) {
    if (err instanceof RunnerError) throw err;
    throw malformed();
  }
  const expiresAt = Number(view.getBigUint64(at));
  at += 8;
  const valueLength = view.getUint32(at);
  at += 4;
  if (at + valueLength !== plain.length) throw malformed();
  return { kind, name, bindingId, expiresAt, valueOffset: at, valueLength };
}

function checkValueLength(length: number, name: string): void {
  if (length < MIN_SECRET_BYTES) {
    throw new RunnerError(
      'credential_invalid',
      `credential "${name}" is ${length} bytes long; credentials must be at least ${MIN_SECRET_BYTES} bytes (characters) so they can be redacted, use a longer value`,
    );
  }
  if (length > MAX_VALUE_BYTES) {
    throw new RunnerError('credential_invalid', `credential "${name}" is larger than 1 MiB; pass large files through the workspace instead`);
  }
}
