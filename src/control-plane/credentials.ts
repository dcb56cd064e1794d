import { z } from 'zod';
import { sealCredential, type CredentialBinding } from '../credentials/sealed-credential.js';
import { SealedCredentialSchema, VaultReferenceSchema, type SealedCredential } from '../protocol/index.js';

/** Shortest credential value the API takes: anything shorter could not be redacted safely. */
export const MIN_CREDENTIAL_CHARS = 6;

/**
 * How long a sealed credential stays openable beyond the call's own timeout:
 * long enough for a call that waits for a free slot or a reconnect, short
 * enough that a copy captured on the wire is soon useless.
 */
export const CREDENTIAL_GRACE_MS = 5 * 60_000;

/** A credential with its plain value, as a client of the HTTP API sends it. */
export const PlainCredentialSchema = z
  .object({
    name: SealedCredentialSchema.shape.name,
    value: z
      .string()
      .min(MIN_CREDENTIAL_CHARS, `must be at least ${MIN_CREDENTIAL_CHARS} characters long so the runner can redact it; use a longer secret`)
      .max(1 << 20, 'must be at most 1 MiB; pass large files through the workspace instead'),
    inject: SealedCredentialSchema.shape.inject,
  })
  .strict();

/** `credentials` of `POST /v1/runners/{id}/tool-calls` and `/sessions`: plain values or vault references. */
export const CredentialsBodySchema = z.array(z.union([PlainCredentialSchema, VaultReferenceSchema])).max(32).optional();
export type CredentialsBody = NonNullable<z.infer<typeof CredentialsBodySchema>>;

/** What goes on the wire: sealed values and vault references, never a plain value. */
export type WireCredential = SealedCredential | z.infer<typeof VaultReferenceSchema>;

export interface SealCredentialsOptions {
  /** The runner's X25519 public key, base64, as stored at pairing. */
  runnerBoxPublicKey: string;
  boundTo: CredentialBinding;
  /** Milliseconds since the epoch after which the runner refuses the credentials. */
  expiresAt: number;
}

/**
 * Seals each plain credential to one runner, bound to a call or session and an
 * expiry; vault references pass through (the control plane never sees those
 * values). The plain strings of `entries` are the caller's: it must drop the
 * request body after this, and nothing here logs or keeps them.
 * @throws RunnerError `credential_invalid` for a value the sealer refuses.
 */
export async function sealCredentials(entries: CredentialsBody, options: SealCredentialsOptions): Promise<WireCredential[]> {
  const key = new Uint8Array(Buffer.from(options.runnerBoxPublicKey, 'base64'));
  const out: WireCredential[] = [];
  for (const entry of entries) {
    if ('vault' in entry) {
      out.push({ vault: entry.vault, inject: entry.inject });
      continue;
    }
    const sealed = await sealCredential({
      name: entry.name,
      value: entry.value,
      boundTo: options.boundTo,
      expiresAt: options.expiresAt,
      runnerBoxPublicKey: key,
    });
    out.push({ name: entry.name, sealed, inject: entry.inject });
  }
  return out;
}
