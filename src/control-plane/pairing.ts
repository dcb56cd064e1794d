import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { z } from 'zod';
import type { KeyedQueue } from './atomic-file.js';
import { JsonCollection } from './json-collection.js';
import type { RunnerRecord, RunnerRegistry } from './runner-registry.js';

/** A pairing token as stored: only the SHA-256 of the token, never the token. */
interface TokenRecord {
  hash: string;
  expiresAt: number;
  labels: Record<string, string>;
  usedAt: number | null;
  runnerId: string | null;
}

const LabelsSchema = z.record(
  z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.\/-]{0,62}$/, 'label keys are 1-63 letters, digits, _ . / or -'),
  z.string().max(256),
);

function publicKey(what: string) {
  return z.string().refine((s) => {
    const bytes = Buffer.from(s, 'base64');
    return bytes.length === 32 && bytes.toString('base64') === s;
  }, `give the ${what} public key as 32 bytes in standard base64`);
}

/** Body of `POST /v1/pairing-tokens`. */
export const PairingTokenBodySchema = z
  .object({
    ttlSeconds: z.number().int().min(1).max(7 * 24 * 3600).optional(),
    labels: LabelsSchema.optional(),
  })
  .strict();

/** Body of `POST /v1/pair`. */
export const PairBodySchema = z
  .object({
    token: z.string().min(1).max(256),
    name: z.string().min(1).max(128),
    labels: LabelsSchema.default({}),
    signingPublicKey: publicKey('Ed25519 signing'),
    boxPublicKey: publicKey('X25519 box'),
    version: z.string().max(64).default('unknown'),
  })
  .strict();
export type PairBody = z.infer<typeof PairBodySchema>;

/** Why a token was refused; each says what to do, none echoes the token. */
export type TokenRefusal = 'unknown' | 'used' | 'expired';

export const REFUSAL_MESSAGES: Record<TokenRefusal, string> = {
  unknown: 'the pairing token is not known to this control plane; create one with POST /v1/pairing-tokens',
  used: 'the pairing token was already used; each token pairs one runner, so create a new one',
  expired: 'the pairing token has expired; create a new one (POST /v1/pairing-tokens, ttlSeconds to change its lifetime)',
};

// Expired and used tokens are kept a while so that a retry is told "used" or
// "expired" rather than "unknown", then dropped.
const KEEP_AFTER_EXPIRY_MS = 7 * 24 * 3600_000;

function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** One-time pairing tokens and their redemption into runner records. */
export class Pairing {
  readonly #tokens: JsonCollection<TokenRecord>;
  readonly #runners: RunnerRegistry;
  readonly #clock: () => number;
  readonly #defaultTtlMs: number;

  private constructor(tokens: JsonCollection<TokenRecord>, runners: RunnerRegistry, clock: () => number, ttlMs: number) {
    this.#tokens = tokens;
    this.#runners = runners;
    this.#clock = clock;
    this.#defaultTtlMs = ttlMs;
  }

  static async load(
    root: string,
    queue: KeyedQueue,
    runners: RunnerRegistry,
    clock: () => number,
    defaultTtlMs: number,
  ): Promise<Pairing> {
    const tokens = await JsonCollection.load<TokenRecord>(join(root, 'pairing-tokens.json'), queue);
    const now = clock();
    for (const t of tokens.values()) {
      if (t.expiresAt + KEEP_AFTER_EXPIRY_MS < now) await tokens.delete(t.hash);
    }
    return new Pairing(tokens, runners, clock, defaultTtlMs);
  }

  /** Makes a token; only its hash is stored. */
  async issue(options: { ttlSeconds?: number; labels?: Record<string, string> }): Promise<{ token: string; expiresAt: string }> {
    const token = `srp_${randomBytes(32).toString('base64url')}`;
    const ttlMs = options.ttlSeconds !== undefined ? options.ttlSeconds * 1000 : this.#defaultTtlMs;
    const expiresAt = this.#clock() + ttlMs;
    const hash = hashToken(token);
    await this.#tokens.set(hash, { hash, expiresAt, labels: options.labels ?? {}, usedAt: null, runnerId: null });
    return { token, expiresAt: new Date(expiresAt).toISOString() };
  }

  /**
   * Redeems a token for a new runner. The check and the marking happen in the
   * same tick, so two requests racing with one token cannot both succeed.
   */
  async redeem(body: PairBody): Promise<{ ok: true; runner: RunnerRecord } | { ok: false; reason: TokenRefusal }> {
    const record = this.#tokens.get(hashToken(body.token));
    const now = this.#clock();
    if (!record) return { ok: false, reason: 'unknown' };
    if (record.usedAt !== null) return { ok: false, reason: 'used' };
    if (record.expiresAt <= now) return { ok: false, reason: 'expired' };
    const runnerId = `rnr_${randomBytes(12).toString('hex')}`;
    record.usedAt = now;
    record.runnerId = runnerId;
    const runner: RunnerRecord = {
      id: runnerId,
      name: body.name,
      // The admin's labels on the token win over the ones the runner asks for.
      labels: { ...body.labels, ...record.labels },
      signingPublicKey: body.signingPublicKey,
      boxPublicKey: body.boxPublicKey,
      version: body.version,
      capabilities: null,
      pairedAt: new Date(now).toISOString(),
      lastSeenAt: null,
    };
    await Promise.all([this.#tokens.set(record.hash, record), this.#runners.save(runner)]);
    return { ok: true, runner };
  }
}
