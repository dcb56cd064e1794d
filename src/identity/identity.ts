import path from 'node:path';
import { stat } from 'node:fs/promises';
import sodium from 'libsodium-wrappers';
import { z } from 'zod';
import { RunnerError } from '../util/errors.js';
import { ensureStateDir, readSecretFile, writeFileAtomic } from './state-files.js';

/** What the runner stores at pairing: public facts in identity.json, keys in secret-keys.json. */
export const IdentityFileSchema = z
  .object({
    runnerId: z.string().min(1),
    name: z.string(),
    labels: z.record(z.string(), z.string()),
    controlPlaneUrl: z.string().url(),
    controlPlaneSigningKey: z.string().min(1).describe('base64 Ed25519 public key pinned at pairing'),
    signingPublicKey: z.string().min(1),
    boxPublicKey: z.string().min(1),
    pairedAt: z.string(),
  })
  .strict();
export type IdentityFile = z.infer<typeof IdentityFileSchema>;

const SecretKeysSchema = z.object({ signingSecretKey: z.string(), boxSecretKey: z.string() }).strict();

/** The runner's identity with its keys in memory. */
export interface Identity extends IdentityFile {
  keys: RunnerKeys;
}

export interface RunnerKeys {
  signingPublicKey: Uint8Array;
  signingSecretKey: Uint8Array;
  boxPublicKey: Uint8Array;
  boxSecretKey: Uint8Array;
}

export const IDENTITY_FILE = 'identity.json';
export const SECRET_KEYS_FILE = 'secret-keys.json';

/** Makes the runner's two keypairs locally: Ed25519 (signing) and X25519 (credentials). */
export async function generateKeys(): Promise<RunnerKeys> {
  await sodium.ready;
  const sign = sodium.crypto_sign_keypair();
  const box = sodium.crypto_box_keypair();
  return {
    signingPublicKey: sign.publicKey,
    signingSecretKey: sign.privateKey,
    boxPublicKey: box.publicKey,
    boxSecretKey: box.privateKey,
  };
}

export function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64');
}

export function fromB64(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'base64'));
}

/** True when the state dir already holds an identity. */
export async function isPaired(stateDir: string): Promise<boolean> {
  return stat(path.join(stateDir, IDENTITY_FILE)).then(
    () => true,
    () => false,
  );
}

/** Stores a new identity (0600 files in a 0700 dir). */
export async function saveIdentity(stateDir: string, identity: Identity): Promise<void> {
  await ensureStateDir(stateDir);
  const { keys, ...pub } = identity;
  await writeFileAtomic(
    path.join(stateDir, SECRET_KEYS_FILE),
    JSON.stringify({ signingSecretKey: b64(keys.signingSecretKey), boxSecretKey: b64(keys.boxSecretKey) }),
  );
  await writeFileAtomic(path.join(stateDir, IDENTITY_FILE), JSON.stringify(IdentityFileSchema.parse(pub), null, 2) + '\n');
}

/** Loads the identity, checking file permissions; errors say how to fix. */
export async function loadIdentity(stateDir: string): Promise<Identity> {
  await ensureStateDir(stateDir);
  let pubText: Buffer;
  try {
    pubText = await readSecretFile(path.join(stateDir, IDENTITY_FILE));
  } catch (err) {
    if (err instanceof RunnerError && err.code === 'state_missing') {
      throw new RunnerError(
        'state_missing',
        `this runner is not paired (no ${IDENTITY_FILE} in ${stateDir}); run sandbox-runner pair --url URL --token TOKEN --state-dir ${stateDir}`,
      );
    }
    throw err;
  }
  const pub = IdentityFileSchema.safeParse(JSON.parse(pubText.toString('utf8')));
  if (!pub.success) {
    throw new RunnerError('state_insecure', `${path.join(stateDir, IDENTITY_FILE)} is damaged; pair again with a new token`);
  }
  const sec = SecretKeysSchema.safeParse(JSON.parse((await readSecretFile(path.join(stateDir, SECRET_KEYS_FILE))).toString('utf8')));
  if (!sec.success) {
    throw new RunnerError('state_insecure', `${path.join(stateDir, SECRET_KEYS_FILE)} is damaged; pair again with a new token`);
  }
  return {
    ...pub.data,
    keys: {
      signingPublicKey: fromB64(pub.data.signingPublicKey),
      signingSecretKey: fromB64(sec.data.signingSecretKey),
      boxPublicKey: fromB64(pub.data.boxPublicKey),
      boxSecretKey: fromB64(sec.data.boxSecretKey),
    },
  };
}
