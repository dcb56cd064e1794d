import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sodium from 'libsodium-wrappers';
import { AuditLog } from '../../../src/audit/audit-log.js';
import type { AuditLogOptions } from '../../../src/audit/audit-log-options.js';

/** A fresh Ed25519 key pair from real libsodium. */
export async function makeKeys(): Promise<{ signingKey: Uint8Array; publicKey: Uint8Array }> {
  await sodium.ready;
  const kp = sodium.crypto_sign_keypair();
  return { signingKey: kp.privateKey, publicKey: kp.publicKey };
}

/** A temporary directory and its removal. */
export function makeTempDir(prefix = 'audit-test-'): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Writes a log the way the daemon would: start, a few calls, stop; returns the keys. */
export async function writeSampleLog(dir: string, calls: number, options: Partial<AuditLogOptions> = {}) {
  const keys = await makeKeys();
  const log = await AuditLog.open({ dir, ...keys, checkpointEvery: 10, syncIntervalMs: 0, ...options });
  log.append({ type: 'start', version: '0.1.0' });
  for (let i = 0; i < calls; i += 1) {
    const callId = `call-${i}`;
    log.append({ type: 'call.received', callId, tool: 'bash', source: 'control-plane' });
    log.append({ type: 'credential.used', callId, name: 'GITHUB_TOKEN' });
    log.append({ type: 'sandbox.started', callId, driver: 'bwrap' });
    log.append({ type: 'call.result', callId, status: 'completed', durationMs: 12 });
  }
  log.append({ type: 'stop', reason: 'test' });
  await log.close();
  return keys;
}
