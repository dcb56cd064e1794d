import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import sodium from 'libsodium-wrappers';
import { RunnerError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { readJsonFile, writeFileAtomic } from './atomic-file.js';

/** The control plane's Ed25519 keypair; the public half is pinned by runners at pairing. */
export interface SigningKeys {
  publicKey: Uint8Array;
  secretKey: Uint8Array;
}

export interface DataDir {
  root: string;
  adminToken: string;
  adminTokenPath: string;
  signingKeys: SigningKeys;
}

interface SigningKeyFile {
  kind: 'ed25519';
  publicKey: string;
  secretKey: string;
}

/**
 * Opens (and on first start creates) the data directory: the directory 0700,
 * `admin-token` and `signing-key.json` 0600, each created once and reused after.
 * Throws RunnerError `state_insecure` when a file exists but cannot be read.
 */
export async function openDataDir(root: string, logger: Logger): Promise<DataDir> {
  await mkdir(root, { recursive: true, mode: 0o700 });
  const info = await stat(root);
  if ((info.mode & 0o077) !== 0) {
    // A data dir made by hand with a loose umask: tighten it rather than refuse,
    // since nothing secret has been written yet by us on a first start.
    logger.warn({ dataDir: root }, 'data dir was readable by group or others; set it to 0700');
    await chmod(root, 0o700);
  }
  for (const sub of ['calls', 'traces', 'audit']) await mkdir(join(root, sub), { recursive: true, mode: 0o700 });
  await sodium.ready;
  const adminTokenPath = join(root, 'admin-token');
  const adminToken = await loadOrCreateAdminToken(adminTokenPath);
  const signingKeys = await loadOrCreateSigningKeys(join(root, 'signing-key.json'));
  return { root, adminToken, adminTokenPath, signingKeys };
}

async function loadOrCreateAdminToken(path: string): Promise<string> {
  let existing: string | undefined;
  try {
    existing = (await readFile(path, 'utf8')).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new RunnerError('state_insecure', `cannot read ${path}; check its owner and mode (0600)`, { cause: err });
    }
  }
  if (existing) return existing;
  const token = randomBytes(32).toString('base64url');
  await writeFileAtomic(path, `${token}\n`, 0o600);
  return token;
}

async function loadOrCreateSigningKeys(path: string): Promise<SigningKeys> {
  const file = await readJsonFile<SigningKeyFile>(path);
  if (file) {
    return {
      publicKey: sodium.from_base64(file.publicKey, sodium.base64_variants.ORIGINAL),
      secretKey: sodium.from_base64(file.secretKey, sodium.base64_variants.ORIGINAL),
    };
  }
  const pair = sodium.crypto_sign_keypair();
  const out: SigningKeyFile = {
    kind: 'ed25519',
    publicKey: sodium.to_base64(pair.publicKey, sodium.base64_variants.ORIGINAL),
    secretKey: sodium.to_base64(pair.privateKey, sodium.base64_variants.ORIGINAL),
  };
  await writeFileAtomic(path, JSON.stringify(out), 0o600);
  return { publicKey: pair.publicKey, secretKey: pair.privateKey };
}
