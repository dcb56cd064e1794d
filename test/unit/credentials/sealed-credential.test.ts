import sodium from 'libsodium-wrappers';
import { beforeAll, describe, expect, it } from 'vitest';
import { CredentialSet, openCredentialSet } from '../../../src/credentials/credential-set.js';
import { Redactor } from '../../../src/credentials/redactor.js';
import { openCredential, sealCredential } from '../../../src/credentials/sealed-credential.js';
import { isRunnerError } from '../../../src/util/errors.js';

const now = 1_750_000_000_000;
const clock = (): number => now;
const VALUE = 'ghp_sealedValue123456';
let runner: { publicKey: Uint8Array; privateKey: Uint8Array };
let otherRunner: { publicKey: Uint8Array; privateKey: Uint8Array };

beforeAll(async () => {
  await sodium.ready;
  runner = sodium.crypto_box_keypair();
  otherRunner = sodium.crypto_box_keypair();
});

function seal(overrides: Partial<Parameters<typeof sealCredential>[0]> = {}): Promise<string> {
  return sealCredential({
    value: VALUE,
    name: 'GH_TOKEN',
    boundTo: { callId: 'call-1' },
    expiresAt: now + 60_000,
    runnerBoxPublicKey: runner.publicKey,
    ...overrides,
  });
}

function open(sealed: string, expect: { name: string; callId: string } | { name: string; sessionId: string } = { name: 'GH_TOKEN', callId: 'call-1' }) {
  return openCredential(sealed, { boxPublicKey: runner.publicKey, boxSecretKey: runner.privateKey, expect, clock });
}

async function refusal(promise: Promise<unknown>): Promise<Error> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isRunnerError(err, 'credential_invalid'), String(err)).toBe(true);
  expect((err as Error).message).not.toContain(VALUE);
  return err as Error;
}

describe('sealed credentials', () => {
  it('opens a valid credential bound to its call, and one bound to a session', async () => {
    const opened = await open(await seal());
    expect(opened.name).toBe('GH_TOKEN');
    expect(Buffer.from(opened.value).toString()).toBe(VALUE);
    const session = await open(await seal({ boundTo: { sessionId: 'sess-9' } }), { name: 'GH_TOKEN', sessionId: 'sess-9' });
    expect(Buffer.from(session.value).toString()).toBe(VALUE);
  });

  it('refuses a tampered envelope', async () => {
    const box = Buffer.from(await seal(), 'base64');
    for (const index of [0, 31, 32, 40, box.length - 1]) {
      const copy = Buffer.from(box);
      copy[index]! ^= 0x01;
      const err = await refusal(open(copy.toString('base64')));
      expect(err.message).toMatch(/tampered with, truncated, or sealed for another runner/);
    }
  });

  it('refuses a truncated envelope and garbage', async () => {
    const box = Buffer.from(await seal(), 'base64');
    for (const length of [0, 10, 48, box.length - 1]) await refusal(open(box.subarray(0, length).toString('base64')));
    await refusal(open('%%% not base64 %%%'));
  });

  it('refuses one sealed for another runner', async () => {
    await refusal(seal({ runnerBoxPublicKey: otherRunner.publicKey }).then(open));
  });

  it('refuses an expired envelope', async () => {
    const err = await refusal(open(await seal({ expiresAt: now })));
    expect(err.message).toMatch(/expired at/);
  });

  it('refuses a misbound envelope: other call, a session, another name', async () => {
    const sealed = await seal();
    expect((await refusal(open(sealed, { name: 'GH_TOKEN', callId: 'call-2' }))).message).toMatch(/bound to call call-1, not to call call-2/);
    expect((await refusal(open(sealed, { name: 'GH_TOKEN', sessionId: 'call-1' }))).message).toMatch(/not to session/);
    expect((await refusal(open(sealed, { name: 'NPM_TOKEN', callId: 'call-1' }))).message).toMatch(/sealed as "GH_TOKEN"/);
  });

  it('refuses values shorter than 6 characters when sealing', async () => {
    const err = await refusal(seal({ value: 'abc12' }));
    expect(err.message).toMatch(/at least 6/);
  });
});

describe('CredentialSet', () => {
  it('gives env and files for one sandbox, feeds the redactor, and zeroes everything on dispose', async () => {
    const redactor = new Redactor();
    const entries = [
      { name: 'GH_TOKEN', sealed: await seal(), inject: { env: 'GITHUB_TOKEN' } },
      { name: 'KEY_FILE', sealed: await seal({ name: 'KEY_FILE', value: 'file-secret-xyz' }), inject: { file: '/run/secrets/key', mode: 0o440 } },
    ];
    const vault = { open: async (name: string) => new Uint8Array(Buffer.from(`vault-value-of-${name}`)) };
    const set = await openCredentialSet([...entries, { vault: 'DB_PASSWORD', inject: { env: 'PGPASSWORD' } }], {
      boxPublicKey: runner.publicKey,
      boxSecretKey: runner.privateKey,
      expect: { callId: 'call-1' },
      vault,
      redactor,
      clock,
    });
    expect(set.names).toEqual(['GH_TOKEN', 'KEY_FILE', 'DB_PASSWORD']);
    expect(set.env()).toEqual({ GITHUB_TOKEN: VALUE, PGPASSWORD: 'vault-value-of-DB_PASSWORD' });
    const [file] = set.files();
    expect(file).toMatchObject({ path: '/run/secrets/key', mode: 0o440 });
    const content = file!.content;
    expect(Buffer.from(content).toString()).toBe('file-secret-xyz');
    expect(redactor.redact(`${VALUE} file-secret-xyz`)).toBe('[REDACTED:GH_TOKEN] [REDACTED:KEY_FILE]');

    set.dispose();
    expect(content.every((b) => b === 0)).toBe(true);
    expect(redactor.size).toBe(0);
    expect(() => set.env()).toThrow(/disposed/);
    set.dispose();
  });

  it('opens all or nothing: a bad entry zeroes those already opened', async () => {
    const redactor = new Redactor();
    const good = await seal();
    const err = await openCredentialSet(
      [
        { name: 'GH_TOKEN', sealed: good, inject: { env: 'A' } },
        { name: 'OTHER', sealed: await seal({ name: 'OTHER', boundTo: { callId: 'call-2' } }), inject: { env: 'B' } },
      ],
      { boxPublicKey: runner.publicKey, boxSecretKey: runner.privateKey, expect: { callId: 'call-1' }, redactor, clock },
    ).catch((e: unknown) => e);
    expect(isRunnerError(err, 'credential_invalid')).toBe(true);
    expect(redactor.size).toBe(0);
  });

  it('refuses short values and two credentials for one variable, zeroing the value', () => {
    const set = new CredentialSet();
    const short = new Uint8Array([1, 2, 3, 4, 5]);
    expect(() => set.add('PIN', short, { env: 'PIN' })).toThrow(/at least 6/);
    expect(short.every((b) => b === 0)).toBe(true);
    set.add('A', new Uint8Array(Buffer.from('aaaaaaaa')), { env: 'X' });
    const dup = new Uint8Array(Buffer.from('bbbbbbbb'));
    expect(() => set.add('B', dup, { env: 'X' })).toThrow(/env X/);
    expect(dup.every((b) => b === 0)).toBe(true);
    set.dispose();
  });
});
