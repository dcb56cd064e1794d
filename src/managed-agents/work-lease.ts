import type Anthropic from '@anthropic-ai/sdk';
import { noopLogger, type Logger } from '../util/logger.js';
import { RunnerError, describeError } from '../util/errors.js';
import { apiStatus, isFatal4xx } from './api-client.js';
import { pause } from './backoff.js';

/** The TTL the SDKs assume until the first heartbeat reports one. */
const ASSUMED_TTL_S = 90;

/** Why the lease ended. `lost`: 412, a fatal 4xx, or no successful beat within the TTL; the item is not ours to stop. */
export type LeaseEnd = { kind: 'lost'; reason: string } | { kind: 'stopping'; state: string };

export interface WorkLeaseOptions {
  /** Client carrying the item's credential (sessions token, else the environment key). */
  client: Anthropic;
  environmentId: string;
  workId: string;
  logger?: Logger;
  /** Overrides clamp(ttl/2, 1 s, 30 s); for tests. */
  intervalMs?: (ttlSeconds: number) => number;
}

/**
 * The heartbeat of one acknowledged work item. `start()` sends the first beat
 * at once (`NO_HEARTBEAT`), then one every clamp(ttl/2, 1 s, 30 s), echoing
 * the server's `last_heartbeat`. `ended` aborts when the lease is lost or the
 * server wants the item to stop; `release()` ends the loop and force-stops the
 * item unless the lease was lost (409 counts as already stopped).
 */
export class WorkLease {
  readonly workId: string;
  readonly #client: Anthropic;
  readonly #environmentId: string;
  readonly #logger: Logger;
  readonly #interval: (ttl: number) => number;
  readonly #loop = new AbortController();
  readonly #ended = new AbortController();
  #lastHeartbeat: string | null = null;
  #ttlSeconds = ASSUMED_TTL_S;
  #lastSuccessAt = Date.now();
  #running: Promise<void> | undefined;
  #released = false;
  #firstBeat: Promise<void> | undefined;
  beats = 0;

  constructor(options: WorkLeaseOptions) {
    this.workId = options.workId;
    this.#client = options.client;
    this.#environmentId = options.environmentId;
    this.#logger = options.logger ?? noopLogger;
    this.#interval = options.intervalMs ?? ((ttl) => Math.max(1_000, Math.min((ttl * 1000) / 2, 30_000)));
  }

  /** Aborted with a {@link LeaseEnd} reason when the lease is lost or the item is stopping. */
  get ended(): AbortSignal {
    return this.#ended.signal;
  }

  /** True once the lease was lost (412 and friends): the item must not be stopped by us. */
  get lost(): boolean {
    return this.#ended.signal.aborted && (this.#ended.signal.reason as LeaseEnd).kind === 'lost';
  }

  /** The TTL the server last reported, in ms: the window for retrying result posts. */
  get ttlMs(): number {
    return this.#ttlSeconds * 1000;
  }

  /** Starts heartbeating; resolves after the first beat was attempted. */
  start(): Promise<void> {
    if (!this.#running) {
      let markFirst!: () => void;
      this.#firstBeat = new Promise((r) => (markFirst = r));
      this.#running = this.#run(markFirst);
    }
    return this.#firstBeat!;
  }

  async #run(markFirst: () => void): Promise<void> {
    this.#lastSuccessAt = Date.now();
    let first = true;
    while (!this.#loop.signal.aborted && !this.#ended.signal.aborted) {
      await this.#beat();
      if (first) {
        first = false;
        markFirst();
      }
      if (this.#ended.signal.aborted) break;
      await pause(this.#interval(this.#ttlSeconds), AbortSignal.any([this.#loop.signal, this.#ended.signal]));
    }
    markFirst();
  }

  async #beat(): Promise<void> {
    // Cut each request off after one interval (at least 1 s): a beat that is
    // cut off may still land server-side, and the next one would then get 412.
    const interval = Math.max(1_000, this.#interval(this.#ttlSeconds));
    try {
      const res = await this.#client.beta.environments.work.heartbeat(
        this.workId,
        { environment_id: this.#environmentId, expected_last_heartbeat: this.#lastHeartbeat ?? 'NO_HEARTBEAT' },
        { signal: AbortSignal.any([AbortSignal.timeout(interval), this.#loop.signal]), timeout: interval },
      );
      this.beats++;
      this.#lastSuccessAt = Date.now();
      this.#lastHeartbeat = res.last_heartbeat;
      if (typeof res.ttl_seconds === 'number' && res.ttl_seconds > 0) this.#ttlSeconds = res.ttl_seconds;
      if (res.state === 'stopping' || res.state === 'stopped' || res.lease_extended === false) {
        this.#logger.info({ workId: this.workId, state: res.state, leaseExtended: res.lease_extended }, 'work item is stopping; ending the session');
        this.#end({ kind: 'stopping', state: res.state });
      }
    } catch (err) {
      if (this.#loop.signal.aborted) return;
      const status = apiStatus(err);
      if (status === 412) {
        this.#logger.warn({ workId: this.workId }, 'heartbeat precondition failed (412): lease lost; aborting the session without stopping the item');
        this.#end({ kind: 'lost', reason: 'heartbeat precondition failed (412)' });
        return;
      }
      if (isFatal4xx(err)) {
        this.#logger.error({ workId: this.workId, status }, 'heartbeat refused; giving the lease up');
        this.#end({ kind: 'lost', reason: `heartbeat refused with ${status}` });
        return;
      }
      if (Date.now() - this.#lastSuccessAt > this.#ttlSeconds * 1000) {
        this.#logger.error({ workId: this.workId }, 'no heartbeat succeeded within the lease TTL; assuming the lease is lost');
        this.#end({ kind: 'lost', reason: 'no heartbeat within the lease TTL' });
        return;
      }
      this.#logger.warn({ workId: this.workId, status, err: describeError(err) }, 'heartbeat failed; retrying');
    }
  }

  #end(end: LeaseEnd): void {
    if (!this.#ended.signal.aborted) this.#ended.abort(end);
  }

  /**
   * Stops heartbeating, then force-stops the item unless the lease was lost.
   * Idempotent. A 409 (already stopped) counts as done.
   */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    this.#loop.abort(new RunnerError('cancelled', 'lease released'));
    await this.#running;
    if (this.lost) return;
    try {
      await this.#client.beta.environments.work.stop(this.workId, { environment_id: this.#environmentId, force: true }, { timeout: 30_000 });
    } catch (err) {
      if (apiStatus(err) === 409) return;
      this.#logger.warn({ workId: this.workId, status: apiStatus(err), err: describeError(err) }, 'force-stop of the work item failed');
    }
  }
}
