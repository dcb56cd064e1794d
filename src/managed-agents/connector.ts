import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { noopLogger, type Logger } from '../util/logger.js';
import { describeError } from '../util/errors.js';
import type { ResolvedManagedAgentsConfig } from './config.js';
import { createWorkerClient } from './api-client.js';
import { WorkPoller, type PollOutcome } from './work-poller.js';
import { SessionRunner, type LeasedSessionStatus } from './session-runner.js';
import type { ServedCall } from './session-event-loop.js';
import type { WorkerHost } from './worker-host.js';

export interface ManagedAgentsConnectorOptions {
  config: ResolvedManagedAgentsConfig;
  host: WorkerHost;
  /** The runner's state directory; memory store copies live under `<stateDir>/managed-agents/memory` unless `memoryRoot` says otherwise. */
  stateDir: string;
  /**
   * Host folder for the memory store copies. The sandbox's own uid must be
   * able to reach it, so the daemon puts it beside the sandbox workspaces,
   * never inside the 0700 state dir.
   */
  memoryRoot?: string;
  logger?: Logger;
  /** `Anthropic-Worker-ID`; default `<hostname>-<uuid>`, one per process. */
  workerId?: string;
  /** Called after each tool call is answered (metrics, demo). */
  onServed?: (sessionId: string, call: ServedCall) => void;
  /** Test knobs for the poll loop and the lease. */
  poll?: { emptySleepMs?: [number, number]; errorBackoffMs?: [number, number]; onPoll?: (o: PollOutcome) => void };
  leaseIntervalMs?: (ttlSeconds: number) => number;
}

/** What `sandbox-runner status` prints for this connector. */
export interface ManagedAgentsStatus {
  workerId: string;
  environmentId: string;
  state: 'idle' | 'running' | 'draining' | 'stopped' | 'failed';
  maxSessions: number;
  sessions: LeasedSessionStatus[];
}

/**
 * The Managed Agents connector: the runner as an environment worker of a
 * `self_hosted` environment. It polls the work queue with the environment
 * key, serves up to `maxSessions` leased sessions at once (each with its own
 * sandbox, lease, stream and memory mounts), and hands every tool call to the
 * daemon's dispatcher through {@link WorkerHost}.
 */
export class ManagedAgentsConnector {
  readonly workerId: string;
  readonly #o: ManagedAgentsConnectorOptions;
  readonly #log: Logger;
  readonly #runners = new Map<string, SessionRunner>();
  readonly #running = new Set<Promise<unknown>>();
  readonly #waiters: Array<() => void> = [];
  readonly #stopPolling = new AbortController();
  #state: ManagedAgentsStatus['state'] = 'idle';
  #run: Promise<void> | undefined;

  constructor(options: ManagedAgentsConnectorOptions) {
    this.#o = options;
    this.#log = (options.logger ?? noopLogger).child({ connector: 'managed-agents' });
    this.workerId = options.workerId ?? `${hostname()}-${randomUUID()}`;
  }

  /**
   * Starts polling. The returned promise settles when the connector stops:
   * it rejects with a RunnerError `credential_invalid` when the key is
   * refused (401/403), so the daemon stops with a clear message instead of
   * crash-looping.
   */
  start(): Promise<void> {
    this.#run ??= this.#main();
    return this.#run;
  }

  async #main(): Promise<void> {
    this.#state = 'running';
    const client = createWorkerClient({ baseUrl: this.#o.config.baseUrl, credential: this.#o.config.environmentKey, helper: 'environments-work-poller' });
    const poller = new WorkPoller({
      client,
      environmentId: this.#o.config.environmentId,
      workerId: this.workerId,
      logger: this.#log,
      acquireSlot: (signal) => this.#acquire(signal),
      onWork: (work, release) => {
        const runner = new SessionRunner({
          work,
          config: this.#o.config,
          host: this.#o.host,
          memoryRoot: this.#o.memoryRoot ?? path.join(this.#o.stateDir, 'managed-agents', 'memory'),
          logger: this.#log,
          ...(this.#o.onServed ? { onServed: this.#o.onServed } : {}),
          ...(this.#o.leaseIntervalMs ? { leaseIntervalMs: this.#o.leaseIntervalMs } : {}),
        });
        this.#runners.set(runner.workId, runner);
        const p = runner
          .run()
          .catch((err) => this.#log.error({ err: describeError(err) }, 'session runner failed'))
          .finally(() => {
            this.#runners.delete(runner.workId);
            this.#running.delete(p);
            release();
          });
        this.#running.add(p);
      },
      ...(this.#o.poll?.emptySleepMs ? { emptySleepMs: this.#o.poll.emptySleepMs } : {}),
      ...(this.#o.poll?.errorBackoffMs ? { errorBackoffMs: this.#o.poll.errorBackoffMs } : {}),
      ...(this.#o.poll?.onPoll ? { onPoll: this.#o.poll.onPoll } : {}),
    });
    this.#log.info({ environmentId: this.#o.config.environmentId, workerId: this.workerId, maxSessions: this.#o.config.maxSessions }, 'serving the Managed Agents environment');
    try {
      await poller.run(this.#stopPolling.signal);
    } catch (err) {
      this.#state = 'failed';
      this.#log.error({ err: describeError(err) }, 'the Managed Agents work queue refused this worker');
      await this.shutdown();
      this.#state = 'failed';
      throw err;
    }
  }

  #active = 0;
  async #acquire(signal: AbortSignal): Promise<() => void> {
    while (this.#active >= this.#o.config.maxSessions) {
      signal.throwIfAborted();
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => reject(signal.reason);
        signal.addEventListener('abort', onAbort, { once: true });
        this.#waiters.push(() => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        });
      });
    }
    this.#active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#active--;
      this.#waiters.shift()?.();
    };
  }

  /** The leased sessions and the connector's state. */
  status(): ManagedAgentsStatus {
    return {
      workerId: this.workerId,
      environmentId: this.#o.config.environmentId,
      state: this.#state,
      maxSessions: this.#o.config.maxSessions,
      sessions: [...this.#runners.values()].map((r) => r.status()),
    };
  }

  /**
   * Stops polling; each session's call in flight is cancelled and its error
   * result posted, memory is flushed, sandboxes disposed, items force-stopped.
   * Resolves when all of that is done. Idempotent.
   */
  async shutdown(): Promise<void> {
    if (this.#state !== 'failed') this.#state = 'draining';
    this.#stopPolling.abort();
    for (const r of this.#runners.values()) r.shutdown();
    while (this.#running.size > 0) await Promise.allSettled([...this.#running]);
    if (this.#state !== 'failed') this.#state = 'stopped';
  }
}
