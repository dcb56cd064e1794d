import type Anthropic from '@anthropic-ai/sdk';
import type { BetaSelfHostedWork } from '@anthropic-ai/sdk/resources/beta/environments/work';
import { noopLogger, type Logger } from '../util/logger.js';
import { describeError } from '../util/errors.js';
import type { ResolvedManagedAgentsConfig } from './config.js';
import { createWorkerClient } from './api-client.js';
import { decodeWorkSecret } from './work-secret.js';
import { WorkLease, type LeaseEnd } from './work-lease.js';
import { SessionEventLoop, type LoopEnd, type ServedCall } from './session-event-loop.js';
import type { HostSession, WorkerHost } from './worker-host.js';
import { installSkills, type SkillRef } from './skills.js';
import { MemoryMounts, type MemoryStoreRef } from './memory-mounts.js';

/** The per-session tool timeout of the SDK workers. */
export const TOOL_TIMEOUT_MS = 120_000;

/** What `sandbox-runner status` shows of one leased session. */
export interface LeasedSessionStatus {
  sessionId: string;
  workId: string;
  phase: 'starting' | 'serving' | 'ending';
  since: string;
  credential: 'sessions_token' | 'environment_key';
  toolCalls: number;
  currentTool: string | undefined;
}

export interface SessionRunnerOptions {
  work: BetaSelfHostedWork;
  config: ResolvedManagedAgentsConfig;
  host: WorkerHost;
  /** Host folder for this process's memory store copies. */
  memoryRoot: string;
  logger?: Logger;
  onServed?: (sessionId: string, call: ServedCall) => void;
  /** Test knobs. */
  leaseIntervalMs?: (ttlSeconds: number) => number;
}

/**
 * Serves one leased work item from first heartbeat to force-stop: lease,
 * session fetch, sandbox, skills, memory stores, the event loop, teardown.
 */
export class SessionRunner {
  readonly sessionId: string;
  readonly workId: string;
  readonly #o: SessionRunnerOptions;
  readonly #log: Logger;
  readonly #client: Anthropic;
  readonly #lease: WorkLease;
  readonly #credential: 'sessions_token' | 'environment_key';
  readonly #since = new Date().toISOString();
  #phase: LeasedSessionStatus['phase'] = 'starting';
  #loop: SessionEventLoop | undefined;
  #calls = 0;
  #shutdown = new AbortController();

  constructor(options: SessionRunnerOptions) {
    this.#o = options;
    this.sessionId = options.work.data.id;
    this.workId = options.work.id;
    this.#log = (options.logger ?? noopLogger).child({ sessionId: this.sessionId, workId: this.workId });
    const secret = decodeWorkSecret(options.work.secret);
    if (!secret.ok && secret.reason !== 'absent') {
      this.#log.warn({ reason: secret.reason }, 'the work item carried a secret with no usable sessions token; falling back to the environment key');
    }
    this.#credential = secret.ok ? 'sessions_token' : 'environment_key';
    // The configured base URL is kept even when the secret names one: a secret must not redirect the key.
    this.#client = createWorkerClient({
      baseUrl: options.config.baseUrl,
      credential: secret.ok ? secret.sessionsToken : options.config.environmentKey,
      helper: 'environments-worker',
    });
    this.#lease = new WorkLease({
      client: this.#client,
      environmentId: options.config.environmentId,
      workId: this.workId,
      logger: this.#log,
      ...(options.leaseIntervalMs ? { intervalMs: options.leaseIntervalMs } : {}),
    });
  }

  status(): LeasedSessionStatus {
    return {
      sessionId: this.sessionId,
      workId: this.workId,
      phase: this.#phase,
      since: this.#since,
      credential: this.#credential,
      toolCalls: this.#calls,
      currentTool: this.#loop?.currentTool,
    };
  }

  /** Asks the session to end: the call in flight is cancelled and its error result posted, memory flushed, the item stopped. */
  shutdown(): void {
    this.#shutdown.abort();
    this.#loop?.stop('shutdown');
  }

  /** Runs the session to its end. Never throws; failures are logged and the item released. */
  async run(): Promise<LoopEnd | 'failed'> {
    let session: HostSession | undefined;
    let memory: MemoryMounts | undefined;
    let end: LoopEnd | 'failed' = 'failed';
    // Heartbeat before any slow setup: an acked item that never beat cannot be recovered server-side.
    await this.#lease.start();
    const onLease = (): void => {
      const why = this.#lease.ended.reason as LeaseEnd;
      this.#loop?.stop(why.kind === 'lost' ? 'lease_lost' : 'stopping');
    };
    this.#lease.ended.addEventListener('abort', onLease, { once: true });
    try {
      if (this.#lease.ended.aborted || this.#shutdown.signal.aborted) return (end = this.#lease.lost ? 'lease_lost' : 'stopping');
      const setupSignal = AbortSignal.any([this.#lease.ended, this.#shutdown.signal]);
      const info = await this.#client.beta.sessions.retrieve(this.sessionId, {}, { signal: setupSignal });
      const stores = memoryStoresOf(info.resources as unknown[]);
      if (stores.length > 0 && this.#credential !== 'sessions_token') {
        this.#log.error('the work item carried no sessions token, and memory stores need one; failing the item');
        return end;
      }
      memory = new MemoryMounts({ client: this.#client, root: this.#o.memoryRoot, sessionKey: this.sessionId, stores, logger: this.#log, intervalMs: this.#o.config.memorySyncIntervalMs });
      await memory.mount(setupSignal);
      session = await this.#o.host.openSession({ sessionKey: this.sessionId, driver: this.#o.config.driver, mounts: memory.hostMounts(), signal: setupSignal });
      const skills = ((info.agent as { skills?: SkillRef[] } | undefined)?.skills ?? []) as SkillRef[];
      if (skills.length > 0) await installSkills({ client: this.#client, skills, workspaceDir: session.workspaceDir, logger: this.#log, signal: setupSignal });
      const hostSession = session;
      const mem = memory;
      this.#loop = new SessionEventLoop({
        client: this.#client,
        sessionId: this.sessionId,
        ownedTools: new Set(this.#o.host.toolNames()),
        maxIdleMs: this.#o.config.maxIdleMs,
        retryWindowMs: () => this.#lease.ttlMs,
        logger: this.#log,
        execute: async (call, signal) => {
          this.#calls++;
          const r = await this.#o.host.dispatch({ source: 'managed-agents', session: hostSession, toolUse: { id: call.id, name: call.name, input: call.input }, timeoutMs: TOOL_TIMEOUT_MS, signal });
          return { content: r.content, isError: r.isError };
        },
        afterCall: () => mem.syncIfDue(),
        onServed: (c) => this.#o.onServed?.(this.sessionId, c),
      });
      if (this.#lease.ended.aborted) onLease();
      if (this.#shutdown.signal.aborted) this.#loop.stop('shutdown');
      this.#phase = 'serving';
      end = await this.#loop.run();
      this.#log.info({ end, toolCalls: this.#calls }, 'session served');
      return end;
    } catch (err) {
      if (this.#lease.lost) end = 'lease_lost';
      this.#log.error({ err: describeError(err) }, 'serving the session failed');
      return end;
    } finally {
      this.#phase = 'ending';
      this.#lease.ended.removeEventListener('abort', onLease);
      // The final sync only on a clean end; a lost lease means someone else may hold the stores now.
      if (memory && end !== 'lease_lost' && end !== 'failed') await memory.finalSync().catch((err) => this.#log.warn({ err: describeError(err) }, 'final memory sync failed'));
      await session?.dispose().catch((err: unknown) => this.#log.warn({ err: describeError(err) }, 'disposing the session sandbox failed'));
      // Only once the sandbox is gone: a recursive rm by path is safe only with no process left to swap a folder for a symlink.
      await memory?.unmount();
      await this.#lease.release();
    }
  }
}

function memoryStoresOf(resources: unknown[] | undefined): MemoryStoreRef[] {
  const out: MemoryStoreRef[] = [];
  for (const r of resources ?? []) {
    const m = r as { type?: string; memory_store_id?: string; name?: string | null; mount_path?: string | null; access?: string | null };
    if (m.type !== 'memory_store' || typeof m.memory_store_id !== 'string') continue;
    out.push({ id: m.memory_store_id, name: m.name ?? m.memory_store_id, mountPath: m.mount_path ?? undefined, readOnly: m.access === 'read_only' });
  }
  return out;
}
