import type Anthropic from '@anthropic-ai/sdk';
import type { BetaSelfHostedWork } from '@anthropic-ai/sdk/resources/beta/environments/work';
import { noopLogger, type Logger } from '../util/logger.js';
import { RunnerError, describeError } from '../util/errors.js';
import { apiStatus } from './api-client.js';
import { backoffMs, jitterMs, pause } from './backoff.js';

/** The API caps `block_ms` at 999 and rejects 0. */
export const POLL_BLOCK_MS = 999;

export interface WorkPollerOptions {
  /** Client carrying the environment key. */
  client: Anthropic;
  environmentId: string;
  /** `Anthropic-Worker-ID`: one per process. */
  workerId: string;
  /** Waits until a session slot is free; the poller does not poll while all are taken. */
  acquireSlot: (signal: AbortSignal) => Promise<() => void>;
  /** Called with each acknowledged session item; must resolve when the session is over. Owns the slot release. */
  onWork: (work: BetaSelfHostedWork, release: () => void) => void;
  logger?: Logger;
  /** Sleep after an empty poll, default 1–3 s with jitter. */
  emptySleepMs?: [number, number];
  /** Error backoff, default 1 s doubling to 60 s. */
  errorBackoffMs?: [number, number];
  onPoll?: (outcome: PollOutcome) => void;
}

/** What one poll gave, for status and tests. */
export type PollOutcome = 'empty' | 'work' | 'skipped' | 'error';

/**
 * The poll loop over the SDK's `work.poll` / `work.ack` / `work.stop`. It is
 * not the SDK's `WorkPoller` because that one serves one item at a time, reads
 * a `{}` body as an item, and stops on a 404 from a deleted session's stale entry.
 *
 * - 204, a 200 with `null` and a 200 with `{}` are all "no work": sleep with jitter.
 * - Errors back off; 401/403 end the loop with a `credential_invalid` error.
 * - A 404 consumes a stale entry server-side: poll again at once.
 * - Items whose `data.type` is not `session` (health checks) are acked and force-stopped.
 * - Session items are acked, then handed to `onWork` with the slot.
 */
export class WorkPoller {
  readonly #o: WorkPollerOptions;
  readonly #logger: Logger;

  constructor(options: WorkPollerOptions) {
    this.#o = options;
    this.#logger = options.logger ?? noopLogger;
  }

  /** Polls until `signal` aborts (resolves) or the key is refused (rejects with RunnerError). */
  async run(signal: AbortSignal): Promise<void> {
    const [emptyLo, emptyHi] = this.#o.emptySleepMs ?? [1_000, 3_000];
    const [errBase, errCap] = this.#o.errorBackoffMs ?? [1_000, 60_000];
    let failures = 0;
    while (!signal.aborted) {
      let release: () => void;
      try {
        release = await this.#o.acquireSlot(signal);
      } catch {
        return;
      }
      let handedOff = false;
      try {
        let work: BetaSelfHostedWork | null;
        try {
          work = await this.#o.client.beta.environments.work.poll(
            this.#o.environmentId,
            { block_ms: POLL_BLOCK_MS, 'Anthropic-Worker-ID': this.#o.workerId },
            { signal, timeout: POLL_BLOCK_MS + 30_000 },
          );
          failures = 0;
        } catch (err) {
          if (signal.aborted) return;
          const status = apiStatus(err);
          if (status === 401 || status === 403) {
            throw new RunnerError(
              'credential_invalid',
              `the environment key was refused (${status}) by the work queue; check managedAgents.environmentKeyFile, the environment id and the base URL`,
            );
          }
          this.#o.onPoll?.('error');
          if (status === 404) {
            this.#logger.info('poll answered 404 (a deleted session left a stale entry); polling again');
            continue;
          }
          const wait = backoffMs(failures++, errBase, errCap);
          this.#logger.warn({ status, err: describeError(err), backoffMs: Math.round(wait) }, 'poll failed; backing off');
          await pause(wait, signal);
          continue;
        }
        if (!isWork(work)) {
          this.#o.onPoll?.('empty');
          await pause(jitterMs(emptyLo, emptyHi), signal);
          continue;
        }
        if (work.environment_id && work.environment_id !== this.#o.environmentId) {
          this.#logger.warn({ workId: work.id }, 'work item names another environment; skipping it');
          this.#o.onPoll?.('skipped');
          continue;
        }
        // Log through an allowlist: `secret`, `metadata` and `actor` never reach the log.
        const fields = { workId: work.id, dataType: work.data?.type };
        try {
          await this.#o.client.beta.environments.work.ack(work.id, { environment_id: this.#o.environmentId }, { signal });
        } catch (err) {
          if (signal.aborted) return;
          this.#logger.error({ ...fields, status: apiStatus(err), err: describeError(err) }, 'ack failed; leaving the item to be reclaimed');
          this.#o.onPoll?.('error');
          continue;
        }
        if (work.data?.type !== 'session') {
          this.#logger.info(fields, 'skipping a work item that is not a session');
          this.#o.onPoll?.('skipped');
          await this.#o.client.beta.environments.work
            .stop(work.id, { environment_id: this.#o.environmentId, force: true })
            .catch(() => undefined);
          continue;
        }
        this.#logger.info({ ...fields, sessionId: work.data.id }, 'claimed a session');
        this.#o.onPoll?.('work');
        handedOff = true;
        this.#o.onWork(work, release);
      } finally {
        if (!handedOff) release();
      }
    }
  }
}

function isWork(v: unknown): v is BetaSelfHostedWork {
  return typeof v === 'object' && v !== null && typeof (v as { id?: unknown }).id === 'string' && (v as { id: string }).id !== '';
}
