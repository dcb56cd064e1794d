import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import sodium from 'libsodium-wrappers';
import { z } from 'zod';
import { RunnerError } from '../util/errors.js';
import { checkSecretFile, checkStateDir, ensurePrivateDir, writeFileAtomic } from './key-files.js';
import { MIN_SECRET_BYTES } from './redaction-patterns.js';

/** A vault entry name: the same rule as `credentials[].vault` in the protocol. */
export const VAULT_NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/;

export interface VaultOptions {
  /** The runner's state directory; entries live in `<stateDir>/vault/`. */
  stateDir: string;
  /**
   * The key file. Default: `$CREDENTIALS_DIRECTORY/vault-key` when `env` has
   * CREDENTIALS_DIRECTORY (a systemd credential, `LoadCredential=vault-key:...`),
   * else `<stateDir>/vault.key`, created on the first `set`.
   */
  keyPath?: string;
  /** Environment to read CREDENTIALS_DIRECTORY from; default none (pass process.env from the CLI/daemon). */
  env?: Record<string, string | undefined>;
  /** Milliseconds since the epoch; default Date.now. */
  clock?: () => number;
}

/** What `list()` shows of an entry: never the value. */
export interface VaultEntryInfo {
  name: string;
  createdAt: string;
  updatedAt: string;
  meta: Record<string, string>;
}

const EntryFileSchema = z
  .object({
    v: z.literal(1),
    name: z.string().regex(VAULT_NAME),
    createdAt: z.string(),
    updatedAt: z.string(),
    meta: z.record(z.string(), z.string()),
    nonce: z.string(),
    ciphertext: z.string(),
  })
  .strict();

const KEY_BYTES = 32;

/**
 * Secrets that never leave the customer's network: the control plane names
 * them, the runner opens them locally. Each entry is one file
 * `<stateDir>/vault/<name>.json` holding XChaCha20-Poly1305 ciphertext; the
 * entry name is the associated data, so a file renamed to another entry fails
 * to open. The key is a separate 0600 file (or a systemd credential), so a
 * copy of the vault directory alone reveals nothing.
 */
export class Vault {
  private readonly dir: string;
  private readonly keyPath: string;
  private readonly keyFromSystemd: boolean;
  private readonly clock: () => number;

  constructor(private readonly options: VaultOptions) {
    this.dir = join(options.stateDir, 'vault');
    const credentialsDir = options.env?.CREDENTIALS_DIRECTORY;
    this.keyFromSystemd = options.keyPath === undefined && Boolean(credentialsDir);
    this.keyPath = options.keyPath ?? (credentialsDir ? join(credentialsDir, 'vault-key') : join(options.stateDir, 'vault.key'));
    this.clock = options.clock ?? Date.now;
  }

  /**
   * Stores (or replaces) an entry. The caller keeps ownership of `value` and wipes it.
   * @throws RunnerError `usage` for a bad name, `credential_invalid` for a value under 6 bytes,
   *   `state_insecure` when the key or vault files are open to others.
   */
  async set(name: string, value: Uint8Array, meta: Record<string, string> = {}): Promise<void> {
    checkName(name);
    if (value.length < MIN_SECRET_BYTES) {
      throw new RunnerError('credential_invalid', `the value for vault entry "${name}" is ${value.length} bytes long; use at least ${MIN_SECRET_BYTES} bytes (characters)`);
    }
    const key = await this.key(true);
    try {
      await ensurePrivateDir(this.dir);
      await checkStateDir(this.options.stateDir);
      const previous = await this.readEntry(name);
      const nonce = sodium.randombytes_buf(sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
      const ciphertext = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(value, associatedData(name), null, nonce, key);
      const now = new Date(this.clock()).toISOString();
      const entry = {
        v: 1 as const,
        name,
        createdAt: previous?.createdAt ?? now,
        updatedAt: now,
        meta: { ...meta },
        nonce: sodium.to_base64(nonce),
        ciphertext: sodium.to_base64(ciphertext),
      };
      await writeFileAtomic(this.entryPath(name), `${JSON.stringify(entry)}\n`, 0o600);
    } finally {
      sodium.memzero(key);
    }
  }

  /** Names and metadata of every entry, sorted by name. */
  async list(): Promise<VaultEntryInfo[]> {
    let files: string[];
    try {
      files = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    await checkStateDir(this.options.stateDir);
    const out: VaultEntryInfo[] = [];
    for (const file of files.filter((f) => f.endsWith('.json')).sort()) {
      const entry = await this.readEntry(file.slice(0, -'.json'.length));
      if (entry) out.push({ name: entry.name, createdAt: entry.createdAt, updatedAt: entry.updatedAt, meta: entry.meta });
    }
    return out;
  }

  /** Removes an entry. @throws RunnerError `state_missing` when there is none. */
  async remove(name: string): Promise<void> {
    checkName(name);
    if (!(await this.readEntry(name))) throw missing(name);
    await rm(this.entryPath(name));
  }

  /**
   * Decrypts an entry. The caller owns the returned bytes and must wipe them (`sodium.memzero`).
   * @throws RunnerError `state_missing` (no such entry or no key), `credential_invalid`
   *   (does not decrypt: wrong key or a tampered file), `state_insecure`.
   */
  async open(name: string): Promise<Uint8Array> {
    checkName(name);
    await checkStateDir(this.options.stateDir);
    const entry = await this.readEntry(name);
    if (!entry) throw missing(name);
    const key = await this.key(false);
    try {
      return sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
        null,
        sodium.from_base64(entry.ciphertext),
        associatedData(name),
        sodium.from_base64(entry.nonce),
        key,
      );
    } catch {
      throw new RunnerError(
        'credential_invalid',
        `vault entry "${name}" does not decrypt with the key in ${this.keyPath}; the file was altered or the key changed, set the entry again`,
      );
    } finally {
      sodium.memzero(key);
    }
  }

  private entryPath(name: string): string {
    return join(this.dir, `${name}.json`);
  }

  private async readEntry(name: string): Promise<z.infer<typeof EntryFileSchema> | undefined> {
    let text: string;
    try {
      await checkSecretFile(this.entryPath(name));
      text = await readFile(this.entryPath(name), 'utf8');
    } catch (err) {
      if (err instanceof RunnerError && err.code === 'state_missing') return undefined;
      throw err;
    }
    const parsed = EntryFileSchema.safeParse(safeJson(text));
    if (!parsed.success || parsed.data.name !== name) {
      throw new RunnerError('credential_invalid', `vault file ${this.entryPath(name)} is not a valid entry; remove it with sandbox-runner vault rm ${name} and set it again`);
    }
    return parsed.data;
  }

  /** Reads the key (checked: regular file, 0600, ours), creating it when allowed and missing. */
  private async key(create: boolean): Promise<Uint8Array> {
    await sodium.ready;
    try {
      await checkSecretFile(this.keyPath);
    } catch (err) {
      if (!(err instanceof RunnerError && err.code === 'state_missing') || !create || this.keyFromSystemd) {
        if (err instanceof RunnerError && err.code === 'state_missing') {
          throw new RunnerError('state_missing', `the vault key ${this.keyPath} does not exist; set a vault entry first (sandbox-runner vault set NAME) or provide the systemd credential vault-key`);
        }
        throw err;
      }
      await ensurePrivateDir(this.options.stateDir);
      const fresh = sodium.crypto_aead_xchacha20poly1305_ietf_keygen();
      await writeFileAtomic(this.keyPath, fresh, 0o600);
      sodium.memzero(fresh);
    }
    // The Buffer itself is used (and wiped by the caller): a copy would leave one behind.
    const key: Uint8Array = await readFile(this.keyPath);
    if (key.length !== KEY_BYTES) {
      sodium.memzero(key);
      throw new RunnerError('state_insecure', `the vault key ${this.keyPath} is ${key.length} bytes, not ${KEY_BYTES}; restore it from backup (without it the vault cannot be read)`);
    }
    return key;
  }
}

function associatedData(name: string): Uint8Array {
  return sodium.from_string(`sandbox-runner-vault:v1:${name}`);
}

function checkName(name: string): void {
  if (!VAULT_NAME.test(name)) {
    throw new RunnerError('usage', `"${name}" is not a valid vault entry name; use 1-64 letters, digits, _ . or -, starting with a letter or _`);
  }
}

function missing(name: string): RunnerError {
  return new RunnerError('state_missing', `the vault has no entry "${name}"; add it with sandbox-runner vault set ${name}`);
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
