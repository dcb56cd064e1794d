import { mkdtemp, rm, stat, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sodium from 'libsodium-wrappers';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ToolCallSchema } from '../../../src/protocol/messages.js';
import { canonicalJson } from '../../../src/signing/canonical-json.js';
import { NonceStore } from '../../../src/signing/nonce-store.js';
import { signRequest } from '../../../src/signing/request-signing.js';
import { RequestVerifier } from '../../../src/signing/request-verifier.js';
import { isRunnerError } from '../../../src/util/errors.js';

const call = {
  v: 1 as const,
  id: 'm-1',
  type: 'tool.call' as const,
  toolUse: { type: 'tool_use' as const, id: 'call-1', name: 'bash', input: { command: 'echo hi', z: [1, 'ü'] } },
  timeoutMs: 30_000,
};

let keys: { publicKey: Uint8Array; privateKey: Uint8Array };
let other: { publicKey: Uint8Array; privateKey: Uint8Array };
let dir: string;
let stores: NonceStore[];
const now = 1_750_000_000_000;
const clock = (): number => now;

beforeAll(async () => {
  await sodium.ready;
  keys = sodium.crypto_sign_keypair();
  other = sodium.crypto_sign_keypair();
});
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'signing-'));
  stores = [];
});
afterEach(async () => {
  for (const s of stores) await s.close();
  await rm(dir, { recursive: true, force: true });
});

async function verifier(options: { windowMs?: number; at?: number } = {}): Promise<RequestVerifier> {
  const nonceStore = await NonceStore.open({ path: join(dir, 'nonces.jsonl'), clock });
  stores.push(nonceStore);
  return new RequestVerifier({
    publicKey: keys.publicKey,
    runnerId: 'runner-a',
    nonceStore,
    clock: () => options.at ?? now,
    ...(options.windowMs ? { windowMs: options.windowMs } : {}),
  });
}

describe('canonicalJson', () => {
  it('sorts keys, drops undefined, writes no whitespace', () => {
    expect(canonicalJson({ b: 1, a: [true, null, 'x\n"'], c: undefined, é: { z: 1.5, y: 1e21 } })).toBe(
      '{"a":[true,null,"x\\n\\""],"b":1,"é":{"y":1e+21,"z":1.5}}',
    );
  });
  it('refuses values without a canonical form', () => {
    expect(() => canonicalJson({ a: Number.NaN })).toThrow(/\$\.a/);
    expect(() => canonicalJson([undefined])).toThrow(TypeError);
    expect(() => canonicalJson({ d: new Date() })).toThrow(/plain objects/);
  });
});

describe('request signatures', () => {
  it('accepts a valid signed request, which still fits the protocol schema', async () => {
    const signed = await signRequest(call, { secretKey: keys.privateKey, runnerId: 'runner-a', clock });
    expect(ToolCallSchema.safeParse(signed).success).toBe(true);
    expect(signed.sig.ts).toBe(now);
    expect(await (await verifier()).verify(signed)).toEqual({ ok: true });
  });

  it('refuses a missing signature', async () => {
    const result = await (await verifier()).verify({ ...call });
    expect(result).toMatchObject({ ok: false, code: 'signature_invalid', reason: 'missing' });
  });

  it('refuses a signature over a changed field, by another key, or garbled', async () => {
    const v = await verifier();
    const signed = await signRequest(call, { secretKey: keys.privateKey, runnerId: 'runner-a', clock });
    const changed = { ...signed, toolUse: { ...signed.toolUse, input: { command: 'rm -rf /', z: [1, 'ü'] } } };
    expect(await v.verify(changed)).toMatchObject({ ok: false, reason: 'bad_signature' });
    const moved = { ...signed, sig: { ...signed.sig, ts: now + 1 } };
    expect(await v.verify(moved)).toMatchObject({ ok: false, reason: 'bad_signature' });
    const retargeted = { ...signed, sig: { ...signed.sig, runnerId: 'runner-b' } };
    expect(await v.verify(retargeted)).toMatchObject({ ok: false, reason: 'bad_signature' });
    const forged = await signRequest(call, { secretKey: other.privateKey, runnerId: 'runner-a', clock });
    expect(await v.verify(forged)).toMatchObject({ ok: false, reason: 'bad_signature' });
    const garbled = { ...signed, sig: { ...signed.sig, value: 'not base64 at all!' } };
    expect(await v.verify(garbled)).toMatchObject({ ok: false, reason: 'bad_signature' });
    // None of the refused ones burned the nonce: the genuine request still passes.
    expect(await v.verify(signed)).toEqual({ ok: true });
  });

  it('refuses a request signed for another runner', async () => {
    const signed = await signRequest(call, { secretKey: keys.privateKey, runnerId: 'runner-b', clock });
    const result = await (await verifier()).verify(signed);
    expect(result).toMatchObject({ ok: false, reason: 'wrong_runner' });
    expect(!result.ok && result.message).toContain('runner-b');
  });

  it('refuses a request outside the window, in both directions', async () => {
    const v = await verifier({ windowMs: 60_000 });
    const old = await signRequest(call, { secretKey: keys.privateKey, runnerId: 'runner-a', clock: () => now - 60_001 });
    const ahead = await signRequest(call, { secretKey: keys.privateKey, runnerId: 'runner-a', clock: () => now + 60_001 });
    const edge = await signRequest(call, { secretKey: keys.privateKey, runnerId: 'runner-a', clock: () => now - 60_000 });
    expect(await v.verify(old)).toMatchObject({ ok: false, reason: 'stale' });
    const r = await v.verify(ahead);
    expect(r).toMatchObject({ ok: false, reason: 'stale' });
    expect(!r.ok && r.message).toMatch(/ahead of/);
    expect(await v.verify(edge)).toEqual({ ok: true });
  });

  it('refuses a replayed request, also after the nonce store is reopened', async () => {
    const signed = await signRequest(call, { secretKey: keys.privateKey, runnerId: 'runner-a', clock });
    const first = await verifier();
    expect(await first.verify(signed)).toEqual({ ok: true });
    expect(await first.verify(signed)).toMatchObject({ ok: false, reason: 'replayed' });
    // Two copies arriving together: exactly one passes.
    const twin = await signRequest(call, { secretKey: keys.privateKey, runnerId: 'runner-a', clock });
    const both = await Promise.all([first.verify(twin), first.verify(twin)]);
    expect(both.filter((r) => r.ok)).toHaveLength(1);
    await stores[0]!.close();
    const restarted = await verifier();
    expect(await restarted.verify(signed)).toMatchObject({ ok: false, reason: 'replayed' });
    expect(await restarted.verify(twin)).toMatchObject({ ok: false, reason: 'replayed' });
    expect((await stat(join(dir, 'nonces.jsonl'))).mode & 0o777).toBe(0o600);
  });
});

describe('NonceStore', () => {
  it('drops nonces once their window is over, on reopen', async () => {
    const path = join(dir, 'nonces.jsonl');
    let t = now;
    const store = await NonceStore.open({ path, clock: () => t });
    expect(await store.record('nonce-aaaaaaaaaaaa', now + 1000)).toBe(true);
    expect(await store.record('nonce-bbbbbbbbbbbb', now + 5000)).toBe(true);
    await store.close();
    t = now + 2000;
    const reopened = await NonceStore.open({ path, clock: () => t });
    stores.push(reopened);
    expect(reopened.size).toBe(1);
    expect(await reopened.record('nonce-bbbbbbbbbbbb', now + 5000)).toBe(false);
    expect(await reopened.record('nonce-aaaaaaaaaaaa', now + 9000)).toBe(true);
  });

  it('skips a torn last line and refuses a file open to others', async () => {
    const path = join(dir, 'nonces.jsonl');
    await writeFile(path, `[${now + 10_000},"nonce-cccccccccccc"]\n[${now + 10_000},"nonce-dd`, { mode: 0o600 });
    const store = await NonceStore.open({ path, clock });
    expect(store.size).toBe(1);
    await store.close();
    await chmod(path, 0o644);
    let caught: unknown;
    await NonceStore.open({ path, clock }).catch((err: unknown) => {
      caught = err;
    });
    expect(isRunnerError(caught, 'state_insecure')).toBe(true);
    expect((caught as Error).message).toContain(`chmod 600 ${path}`);
  });
});
