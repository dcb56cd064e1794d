import sodium from 'libsodium-wrappers';
import { describe, expect, it } from 'vitest';
import { verifyAuth } from '../../../src/control-plane/runner-connection.js';

describe('verifyAuth', () => {
  it('accepts the runner\'s signature over the challenge and nothing else', async () => {
    await sodium.ready;
    const keys = sodium.crypto_sign_keypair();
    const pub = Buffer.from(keys.publicKey).toString('base64');
    const challenge = Buffer.alloc(32, 7).toString('base64');
    const sign = (text: string) => Buffer.from(sodium.crypto_sign_detached(text, keys.privateKey)).toString('base64');
    const good = sign(`sandbox-runner-auth:v1:rnr_1:${challenge}`);
    expect(verifyAuth(pub, 'rnr_1', challenge, good)).toBe(true);
    // Bound to the runner id and the challenge.
    expect(verifyAuth(pub, 'rnr_2', challenge, good)).toBe(false);
    expect(verifyAuth(pub, 'rnr_1', Buffer.alloc(32, 8).toString('base64'), good)).toBe(false);
    // Garbage never throws.
    expect(verifyAuth(pub, 'rnr_1', challenge, 'not base64!')).toBe(false);
    expect(verifyAuth('short', 'rnr_1', challenge, good)).toBe(false);
  });
});
