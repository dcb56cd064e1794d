/** Exponential backoff `base * 2^attempt`, capped, with up to 25% taken off at random so a fleet does not retry in lockstep. */
export function backoffMs(attempt: number, baseMs: number, capMs: number, random: () => number = Math.random): number {
  const raw = Math.min(baseMs * 2 ** attempt, capMs);
  return raw * (1 - random() * 0.25);
}

/** Uniform delay in [lowMs, highMs). */
export function jitterMs(lowMs: number, highMs: number, random: () => number = Math.random): number {
  return lowMs + random() * (highMs - lowMs);
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Like {@link sleep} but resolves (never rejects) when the signal aborts. */
export async function pause(ms: number, signal?: AbortSignal): Promise<void> {
  await sleep(ms, signal).catch(() => undefined);
}
