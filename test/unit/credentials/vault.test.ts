import { chmod, chown, mkdir, mkdtemp, readFile, readdir, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Vault } from '../../../src/credentials/vault.js';
import { isRunnerError } from '../../../src/util/errors.js';

let root: string;
let stateDir: string;
const secret = (s: string): Uint8Array => new Uint8Array(Buffer.from(s));

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'vault-'));
  stateDir = join(root, 'state');
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

async function caught(promise: Promise<unknown>): Promise<Error> {
  return (await promise.then(
    () => new Error('did not throw'),
    (e: unknown) => e,
  )) as Error;
}

describe('Vault', () => {
  it('round-trips values encrypted at rest, lists names and metadata only, removes', async () => {
    const vault = new Vault({ stateDir, clock: () => 1_750_000_000_000 });
    await vault.set('DB_PASSWORD', secret('correct horse battery'), { description: 'prod db' });
    await vault.set('API_KEY', secret('key-0123456789'));
    expect(Buffer.from(await vault.open('DB_PASSWORD')).toString()).toBe('correct horse battery');

    const list = await vault.list();
    expect(list.map((e) => e.name)).toEqual(['API_KEY', 'DB_PASSWORD']);
    expect(list[1]).toEqual({ name: 'DB_PASSWORD', createdAt: '2025-06-15T15:06:40.000Z', updatedAt: '2025-06-15T15:06:40.000Z', meta: { description: 'prod db' } });
    expect(JSON.stringify(list)).not.toContain('correct horse');

    // Nothing on disk holds the value in clear; key and entries are 0600, directories 0700.
    for (const file of await readdir(join(stateDir, 'vault'))) {
      const bytes = await readFile(join(stateDir, 'vault', file));
      expect(bytes.includes('correct horse')).toBe(false);
      expect((await stat(join(stateDir, 'vault', file))).mode & 0o777).toBe(0o600);
    }
    expect((await stat(join(stateDir, 'vault.key'))).mode & 0o777).toBe(0o600);
    expect((await stat(join(stateDir, 'vault'))).mode & 0o777).toBe(0o700);

    await vault.remove('API_KEY');
    expect((await vault.list()).map((e) => e.name)).toEqual(['DB_PASSWORD']);
    const err = await caught(vault.open('API_KEY'));
    expect(isRunnerError(err, 'state_missing')).toBe(true);
    expect(err.message).toContain('vault set API_KEY');
  });

  it('reads the key from a systemd credentials directory', async () => {
    const creds = join(root, 'creds');
    await mkdir(creds, { mode: 0o700 });
    await writeFile(join(creds, 'vault-key'), Buffer.alloc(32, 7), { mode: 0o400 });
    const vault = new Vault({ stateDir, env: { CREDENTIALS_DIRECTORY: creds } });
    await vault.set('TOKEN', secret('systemd-held'));
    expect(Buffer.from(await vault.open('TOKEN')).toString()).toBe('systemd-held');
    await expect(stat(join(stateDir, 'vault.key'))).rejects.toThrow();
    // Another key cannot open it.
    const other = new Vault({ stateDir, keyPath: join(root, 'other.key') });
    await other.set('OTHER', secret('whatever-value'));
    expect(isRunnerError(await caught(other.open('TOKEN')), 'credential_invalid')).toBe(true);
  });

  it('refuses an entry file renamed to another name, and a tampered one', async () => {
    const vault = new Vault({ stateDir });
    await vault.set('A_KEY', secret('value-of-a'));
    await vault.set('B_KEY', secret('value-of-b'));
    const dir = join(stateDir, 'vault');
    const a = JSON.parse(await readFile(join(dir, 'A_KEY.json'), 'utf8'));
    await writeFile(join(dir, 'B_KEY.json'), JSON.stringify({ ...a, name: 'B_KEY' }), { mode: 0o600 });
    expect(isRunnerError(await caught(vault.open('B_KEY')), 'credential_invalid')).toBe(true);
    await rename(join(dir, 'A_KEY.json'), join(dir, 'C_KEY.json'));
    expect(isRunnerError(await caught(vault.open('C_KEY')), 'credential_invalid')).toBe(true);
  });

  it('refuses a key or vault file readable by others, owned by another user, or a symlink', async () => {
    const vault = new Vault({ stateDir });
    await vault.set('TOKEN', secret('hygiene-value'));
    const keyPath = join(stateDir, 'vault.key');

    await chmod(keyPath, 0o644);
    let err = await caught(vault.open('TOKEN'));
    expect(isRunnerError(err, 'state_insecure')).toBe(true);
    expect(err.message).toContain(`chmod 600 ${keyPath}`);
    await chmod(keyPath, 0o600);

    const entry = join(stateDir, 'vault', 'TOKEN.json');
    await chmod(entry, 0o640);
    err = await caught(vault.open('TOKEN'));
    expect(err.message).toContain(`${entry} is accessible by group`);
    await chmod(entry, 0o600);

    await chown(keyPath, 65534, 65534);
    err = await caught(vault.open('TOKEN'));
    expect(err.message).toContain(`chown ${process.getuid!()} ${keyPath}`);
    await chown(keyPath, process.getuid!(), process.getgid!());

    await rename(keyPath, join(root, 'real.key'));
    await symlink(join(root, 'real.key'), keyPath);
    err = await caught(vault.open('TOKEN'));
    expect(isRunnerError(err, 'state_insecure')).toBe(true);
    expect(err.message).toContain('is a symlink');

    await rm(keyPath);
    await rename(join(root, 'real.key'), keyPath);
    await chmod(stateDir, 0o755);
    err = await caught(vault.open('TOKEN'));
    expect(err.message).toContain(`chmod 700 ${stateDir}`);
    await chmod(stateDir, 0o700);
    expect(Buffer.from(await vault.open('TOKEN')).toString()).toBe('hygiene-value');
  });

  it('refuses bad names and short values', async () => {
    const vault = new Vault({ stateDir });
    expect(isRunnerError(await caught(vault.set('../etc/passwd', secret('abcdefgh'))), 'usage')).toBe(true);
    const err = await caught(vault.set('SHORT', secret('12345')));
    expect(isRunnerError(err, 'credential_invalid')).toBe(true);
    expect(err.message).toMatch(/at least 6/);
  });
});
