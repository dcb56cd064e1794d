import sodium from 'libsodium-wrappers';
import type { SealedCredential } from '../protocol/messages.js';
import { RunnerError } from '../util/errors.js';
import type { Redactor } from './redactor.js';
import { MIN_SECRET_BYTES } from './redaction-patterns.js';
import { openCredential, type OpenCredentialOptions } from './sealed-credential.js';

/** Where a credential goes in the sandbox: an environment variable or a file. */
export type Injection = { env: string } | { file: string; mode?: number };

/** A credential file to write into the sandbox before the run. */
export interface CredentialFile {
  path: string;
  /** Default 0400. */
  mode: number;
  /** A view of the owned value: valid until `dispose()`, which zeroes it. */
  content: Uint8Array;
}

/** A reference to a local vault entry, as in the protocol's `credentials[]`. */
export interface VaultReference {
  vault: string;
  inject: Injection;
}

/** Anything that can open a vault entry (the Vault class). */
export interface VaultReader {
  open(name: string): Promise<Uint8Array>;
}

interface Held {
  name: string;
  value: Uint8Array;
  inject: Injection;
}

/**
 * The opened credentials of one call or session. It owns the plain values:
 * gives them out for injection into that one sandbox (env map, files), keeps
 * them in the redactor while it lives, and `dispose()` removes them from the
 * redactor and zeroes every byte. Idempotent; use it in a `finally`.
 */
export class CredentialSet {
  private readonly held: Held[] = [];
  private isDisposed = false;

  constructor(private readonly redactor?: Redactor) {}

  /**
   * Takes ownership of `value` (zeroed on dispose, also when this throws).
   * @throws RunnerError `credential_invalid`: shorter than 6 bytes, or the env
   *   name / file path is already used by another credential of the set.
   */
  add(name: string, value: Uint8Array, inject: Injection): void {
    try {
      if (this.isDisposed) throw new RunnerError('internal', 'this credential set was disposed; open the credentials again');
      if (value.length < MIN_SECRET_BYTES) {
        throw new RunnerError('credential_invalid', `credential "${name}" is ${value.length} bytes long; credentials must be at least ${MIN_SECRET_BYTES} bytes (characters) so they can be redacted, use a longer value`);
      }
      const target = 'env' in inject ? `env ${inject.env}` : `file ${inject.file}`;
      if (this.held.some((h) => ('env' in h.inject ? `env ${h.inject.env}` : `file ${h.inject.file}`) === target)) {
        throw new RunnerError('credential_invalid', `two credentials inject into ${target}; give each its own variable or path`);
      }
      this.redactor?.add(value, name);
      this.held.push({ name, value, inject });
    } catch (err) {
      sodium.memzero(value);
      throw err;
    }
  }

  /** Credential names, in the order added. */
  get names(): string[] {
    return this.held.map((h) => h.name);
  }

  get size(): number {
    return this.held.length;
  }

  get disposed(): boolean {
    return this.isDisposed;
  }

  /**
   * The environment variables to set in the sandbox. Environment values are
   * strings by nature: call this right before spawning and drop the map after.
   */
  env(): Record<string, string> {
    this.assertLive();
    const out: Record<string, string> = {};
    for (const h of this.held) if ('env' in h.inject) out[h.inject.env] = Buffer.from(h.value).toString('utf8');
    return out;
  }

  /** The files to write into the sandbox (content views of the owned values). */
  files(): CredentialFile[] {
    this.assertLive();
    const out: CredentialFile[] = [];
    for (const h of this.held) {
      if ('file' in h.inject) out.push({ path: h.inject.file, mode: h.inject.mode ?? 0o400, content: h.value });
    }
    return out;
  }

  /** Removes the values from the redactor and zeroes them. Idempotent. */
  dispose(): void {
    if (this.isDisposed) return;
    this.isDisposed = true;
    for (const h of this.held) {
      this.redactor?.remove(h.value);
      sodium.memzero(h.value);
    }
    this.held.length = 0;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  private assertLive(): void {
    if (this.isDisposed) throw new RunnerError('internal', 'this credential set was disposed; its values are gone');
  }
}

export interface OpenCredentialSetOptions extends Omit<OpenCredentialOptions, 'expect'> {
  /** The call or session the sealed credentials must be bound to. */
  expect: { callId: string; sessionId?: undefined } | { sessionId: string; callId?: undefined };
  /** Opens `{vault: NAME}` references; without it they are refused. Check local policy first. */
  vault?: VaultReader;
  /** Receives each value while the set lives. */
  redactor?: Redactor;
}

/**
 * Opens every credential of a request (sealed ones and vault references) into
 * a CredentialSet. All or nothing: when one fails, those already opened are
 * zeroed and the error of the first failure is thrown.
 * @throws RunnerError `credential_invalid` / `state_missing` naming the credential.
 */
export async function openCredentialSet(
  entries: ReadonlyArray<SealedCredential | VaultReference>,
  options: OpenCredentialSetOptions,
): Promise<CredentialSet> {
  const set = new CredentialSet(options.redactor);
  try {
    for (const entry of entries) {
      if ('vault' in entry) {
        if (!options.vault) {
          throw new RunnerError('credential_invalid', `vault entry "${entry.vault}" was requested but this runner has no vault configured; set it with sandbox-runner vault set ${entry.vault}`);
        }
        set.add(entry.vault, await options.vault.open(entry.vault), entry.inject);
      } else {
        const opened = await openCredential(entry.sealed, { ...options, expect: { ...options.expect, name: entry.name } });
        set.add(opened.name, opened.value, entry.inject);
      }
    }
    return set;
  } catch (err) {
    set.dispose();
    throw err;
  }
}
