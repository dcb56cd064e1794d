import { z } from 'zod';
import { RunnerError } from '../util/errors.js';
import { VERSION } from '../util/package-info.js';
import { b64, generateKeys, isPaired, saveIdentity, type Identity } from './identity.js';
import { checkControlPlaneUrl, httpBase } from './control-plane-url.js';

export interface PairOptions {
  url: string;
  token: string;
  stateDir: string;
  name: string;
  labels: Record<string, string>;
  signal?: AbortSignal;
  /** Time allowed for the control plane to answer. Default 15 s. */
  timeoutMs?: number;
}

const PairResponseSchema = z.object({
  runnerId: z.string().min(1),
  controlPlaneSigningKey: z.string().min(1),
  wsUrl: z.string().optional(),
});

/**
 * Pairs this runner with a control plane: makes the keypairs here, sends the
 * public halves with the one-time token, and stores the answer. Nothing is
 * written unless the control plane accepted the token.
 */
export async function pair(options: PairOptions): Promise<Identity> {
  checkControlPlaneUrl(options.url);
  if (await isPaired(options.stateDir)) {
    throw new RunnerError(
      'usage',
      `${options.stateDir} already holds a paired identity; use another --state-dir, or remove that directory to pair again`,
    );
  }
  const keys = await generateKeys();
  const base = httpBase(options.url);
  const signal = AbortSignal.any([AbortSignal.timeout(options.timeoutMs ?? 15_000), ...(options.signal ? [options.signal] : [])]);
  let res: Response;
  try {
    res = await fetch(`${base}/v1/pair`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        token: options.token,
        name: options.name,
        labels: options.labels,
        signingPublicKey: b64(keys.signingPublicKey),
        boxPublicKey: b64(keys.boxPublicKey),
        version: VERSION,
      }),
      signal,
    });
  } catch (err) {
    const c = (err as { cause?: { code?: string; message?: string } }).cause;
    const cause = c?.code ?? c?.message ?? (err as Error).message;
    throw new RunnerError('unreachable', `cannot reach the control plane at ${base} (${cause}); check --url and that it is running`);
  }
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (!res.ok) {
    const msg = (body as { error?: { message?: string } } | undefined)?.error?.message;
    throw new RunnerError('pairing_failed', `pairing refused (HTTP ${res.status}): ${msg ?? 'no reason given'}; ask for a new pairing token`);
  }
  const parsed = PairResponseSchema.safeParse(body);
  if (!parsed.success) {
    throw new RunnerError('pairing_failed', `the control plane at ${base} answered pairing with an unexpected body; check that --url points at a sandbox-runner control plane`);
  }
  const identity: Identity = {
    runnerId: parsed.data.runnerId,
    name: options.name,
    labels: options.labels,
    controlPlaneUrl: base,
    controlPlaneSigningKey: parsed.data.controlPlaneSigningKey,
    signingPublicKey: b64(keys.signingPublicKey),
    boxPublicKey: b64(keys.boxPublicKey),
    pairedAt: new Date().toISOString(),
    keys,
  };
  await saveIdentity(options.stateDir, identity);
  return identity;
}
