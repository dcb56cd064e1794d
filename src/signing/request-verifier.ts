import { verify, type KeyObject } from 'node:crypto';
import { SignatureSchema } from '../protocol/messages.js';
import type { NonceStore } from './nonce-store.js';
import { ed25519PublicKey, type SignableMessage, signedBytes } from './request-signing.js';

/** Why a request signature was refused. */
export type SignatureRefusalReason = 'missing' | 'bad_signature' | 'wrong_runner' | 'stale' | 'replayed';

/** The verdict of {@link RequestVerifier.verify}. */
export type VerifyResult =
  | { ok: true }
  | { ok: false; code: 'signature_invalid'; reason: SignatureRefusalReason; message: string };

export interface RequestVerifierOptions {
  /** The control plane's Ed25519 public key, pinned at pairing (32 bytes). */
  publicKey: Uint8Array;
  /** This runner's id: a request signed for another runner is refused. */
  runnerId: string;
  /** Accepted clock difference, either direction, in ms. Default 5 minutes. */
  windowMs?: number;
  /** Where accepted nonces are kept (persisted, so replays fail after a restart). */
  nonceStore: NonceStore;
  /** Milliseconds since the epoch; default Date.now. */
  clock?: () => number;
}

/** Default freshness window: ±5 minutes. */
export const DEFAULT_SIGNATURE_WINDOW_MS = 5 * 60_000;

/**
 * Checks control-plane requests: a valid Ed25519 signature by the pinned key
 * over the canonical encoding, for this runner, signed within the window, with
 * a nonce not seen before. Checks run in that order, so an unsigned or forged
 * message never reaches the nonce store; a nonce is recorded (durably) only
 * when everything else passed. Messages never include secrets, so the
 * refusal messages may name the ids and times involved.
 */
export class RequestVerifier {
  private readonly publicKey: KeyObject;
  private readonly runnerId: string;
  private readonly windowMs: number;
  private readonly nonceStore: NonceStore;
  private readonly clock: () => number;

  constructor(options: RequestVerifierOptions) {
    if (options.publicKey.length !== 32) {
      throw new RangeError(`the control plane's public key must be 32 bytes, got ${options.publicKey.length}`);
    }
    this.publicKey = ed25519PublicKey(new Uint8Array(options.publicKey));
    this.runnerId = options.runnerId;
    this.windowMs = options.windowMs ?? DEFAULT_SIGNATURE_WINDOW_MS;
    this.nonceStore = options.nonceStore;
    this.clock = options.clock ?? Date.now;
  }

  /**
   * Verifies one request. Resolves with a refusal rather than throwing;
   * rejects only when the nonce cannot be stored (RunnerError `io`), in which
   * case the request must be refused too.
   */
  async verify(message: SignableMessage): Promise<VerifyResult> {
    const parsed = SignatureSchema.safeParse(message.sig);
    if (message.sig === undefined || !parsed.success) {
      return refuse('missing', 'the request carries no valid sig field; the control plane must sign every request with the key pinned at pairing');
    }
    const sig = parsed.data;
    let valid = false;
    try {
      const signature = Buffer.from(sig.value, 'base64');
      // Buffer's decoder skips what is not base64; a signature must round-trip exactly.
      valid = signature.length === 64 && signature.toString('base64') === sig.value && verify(null, signedBytes(message), this.publicKey, signature);
    } catch {
      valid = false;
    }
    if (!valid) {
      return refuse('bad_signature', 'the request signature does not verify with the control plane key pinned at pairing; check that the control plane and this runner were paired together');
    }
    if (sig.runnerId !== this.runnerId) {
      return refuse('wrong_runner', `the request was signed for runner ${sig.runnerId}, not for this runner (${this.runnerId})`);
    }
    const now = this.clock();
    const skew = sig.ts - now;
    if (Math.abs(skew) > this.windowMs) {
      const direction = skew > 0 ? 'ahead of' : 'behind';
      return refuse(
        'stale',
        `the request was signed ${Math.round(Math.abs(skew) / 1000)} s ${direction} this runner's clock, outside the ±${Math.round(this.windowMs / 1000)} s window; check the clocks (NTP) of both hosts`,
      );
    }
    // Kept until the request would be stale anyway.
    const fresh = await this.nonceStore.record(sig.nonce, sig.ts + this.windowMs);
    if (!fresh) return refuse('replayed', 'the request nonce was seen before: a request is accepted once; the control plane must sign each request anew');
    return { ok: true };
  }
}

function refuse(reason: SignatureRefusalReason, message: string): VerifyResult {
  return { ok: false, code: 'signature_invalid', reason, message };
}
