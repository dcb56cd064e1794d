/**
 * Capped exponential backoff with full jitter: the n-th retry waits a random
 * time in [0, min(max, initial * 2^n)). Full jitter spreads a fleet of runners
 * that lost the same control plane, so they do not reconnect in lockstep.
 */
export class Backoff {
  private attempt = 0;

  constructor(
    private readonly initialMs: number,
    private readonly maxMs: number,
    private readonly random: () => number = Math.random,
  ) {
    if (initialMs <= 0 || maxMs < initialMs) throw new RangeError('backoff needs 0 < initialMs <= maxMs');
  }

  /** The ceiling of the next delay, before jitter. */
  ceiling(): number {
    // 2^attempt overflows to Infinity for large attempts; min() keeps it capped.
    return Math.min(this.maxMs, this.initialMs * 2 ** this.attempt);
  }

  /** The next delay in ms; each call moves one step up. */
  next(): number {
    const delay = Math.floor(this.random() * this.ceiling());
    this.attempt = Math.min(this.attempt + 1, 64);
    return delay;
  }

  /** Starts over after a connection that worked. */
  reset(): void {
    this.attempt = 0;
  }

  get attempts(): number {
    return this.attempt;
  }
}

/** Resolves after `ms`, or rejects with the signal's reason when aborted first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
