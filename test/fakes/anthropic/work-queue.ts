import { randomBytes } from 'node:crypto';
import { FakeHttpError, badRequest, notFound, now } from './http-util.js';

export type WorkState = 'queued' | 'starting' | 'active' | 'stopping' | 'stopped';

/** One work item as the fake stores it. */
export interface FakeWork {
  type: 'work';
  id: string;
  environment_id: string;
  data: { type: 'session' | 'healthcheck'; id: string };
  state: WorkState;
  created_at: string;
  acknowledged_at: string | null;
  started_at: string | null;
  latest_heartbeat_at: string | null;
  stop_requested_at: string | null;
  stopped_at: string | null;
  metadata: Record<string, string>;
  /** Internal: the lease's current heartbeat value, or null when unclaimed. */
  lastHeartbeat: string | null;
  ttlSeconds: number;
  deliveredAt: number | null;
  /** Issue a secret with this item (default true). */
  withSecret: boolean;
  /** Override the secret string sent (to test a malformed one). */
  rawSecret?: string;
}

/** How an empty poll is answered. */
export type EmptyPollEncoding = '204' | 'null' | '{}';

/**
 * The Work API's queue with leases, as section 9.2 of the reference describes
 * it: poll (held up to block_ms), ack, heartbeat with optimistic concurrency
 * and its 412 body, stop (409 when already stopped).
 */
export class FakeWorkQueue {
  readonly items = new Map<string, FakeWork>();
  /** Encodings used for empty polls, in turn; the last one repeats. */
  emptyEncodings: EmptyPollEncoding[] = ['204'];
  /** How many empty polls were answered, by encoding. */
  readonly emptyPolls: EmptyPollEncoding[] = [];
  /** Worker ids seen on polls. */
  readonly workerIds = new Set<string>();
  /** Every poll's block_ms as received. */
  readonly pollBlockMs: Array<string | null> = [];
  ttlSeconds = 30;
  #waiters: Array<() => void> = [];
  #hb = 0;

  constructor(readonly environmentId: string, readonly mintSecret: (work: FakeWork) => string) {}

  enqueue(data: FakeWork['data'], options: { withSecret?: boolean; rawSecret?: string; id?: string } = {}): FakeWork {
    const work: FakeWork = {
      type: 'work',
      id: options.id ?? `work_${randomBytes(8).toString('hex')}`,
      environment_id: this.environmentId,
      data,
      state: 'queued',
      created_at: now(),
      acknowledged_at: null,
      started_at: null,
      latest_heartbeat_at: null,
      stop_requested_at: null,
      stopped_at: null,
      metadata: {},
      lastHeartbeat: null,
      ttlSeconds: this.ttlSeconds,
      deliveredAt: null,
      withSecret: options.withSecret ?? true,
      ...(options.rawSecret !== undefined ? { rawSecret: options.rawSecret } : {}),
    };
    this.items.set(work.id, work);
    for (const w of this.#waiters.splice(0)) w();
    return work;
  }

  public view(work: FakeWork, secret: string | null = null): Record<string, unknown> {
    const { lastHeartbeat: _l, ttlSeconds: _t, deliveredAt: _d, withSecret: _w, rawSecret: _r, ...rest } = work;
    return { ...rest, secret };
  }

  async poll(query: URLSearchParams, workerId: string | undefined, signal: AbortSignal): Promise<FakeWork | null> {
    const blockRaw = query.get('block_ms');
    this.pollBlockMs.push(blockRaw);
    if (workerId) this.workerIds.add(workerId);
    let blockMs = 0;
    if (blockRaw !== null) {
      blockMs = Number(blockRaw);
      if (!Number.isInteger(blockMs) || blockMs < 1 || blockMs > 999) {
        throw badRequest('block_ms: must be an integer between 1 and 999');
      }
    }
    const reclaim = Number(query.get('reclaim_older_than_ms') ?? 5000);
    const deadline = Date.now() + blockMs;
    for (;;) {
      const item = this.#next(reclaim);
      if (item) {
        item.deliveredAt = Date.now();
        return item;
      }
      const left = deadline - Date.now();
      if (left <= 0 || signal.aborted) return null;
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, left);
        function done(): void {
          clearTimeout(t);
          resolve();
        }
        this.#waiters.push(done);
        signal.addEventListener('abort', done, { once: true });
      });
    }
  }

  #next(reclaimMs: number): FakeWork | undefined {
    const candidates = [...this.items.values()].filter(
      (w) => w.state === 'queued' && (w.deliveredAt === null || Date.now() - w.deliveredAt > reclaimMs),
    );
    return candidates.sort((a, b) => a.created_at.localeCompare(b.created_at))[0];
  }

  nextEmptyEncoding(): EmptyPollEncoding {
    const enc = this.emptyEncodings.length > 1 ? this.emptyEncodings.shift()! : (this.emptyEncodings[0] ?? '204');
    this.emptyPolls.push(enc);
    return enc;
  }

  get(id: string): FakeWork {
    const w = this.items.get(id);
    if (!w) throw notFound(`work item ${id} not found`);
    return w;
  }

  ack(id: string): FakeWork {
    const w = this.get(id);
    if (w.state !== 'queued') throw new FakeHttpError(409, 'invalid_request_error', `work item ${id} is ${w.state}, not queued`);
    w.state = 'starting';
    w.acknowledged_at = now();
    return w;
  }

  heartbeat(id: string, expected: string | null): Record<string, unknown> {
    const w = this.get(id);
    const matches = expected === 'NO_HEARTBEAT' ? w.lastHeartbeat === null : expected !== null && expected === w.lastHeartbeat;
    if (!matches || w.state === 'queued') {
      throw new FakeHttpError(
        412,
        'invalid_request_error',
        `Heartbeat precondition failed: expected ${expected}, actual was ${w.lastHeartbeat ?? 'NULL'}`,
        {
          error_code: 'heartbeat_precondition_failed',
          error_visibility: 'user_facing',
          current_state: {
            state: w.state,
            last_heartbeat: w.lastHeartbeat,
            lease_updated_at: w.latest_heartbeat_at,
            lease_extended: false,
            ttl_seconds: w.ttlSeconds,
          },
        },
      );
    }
    const extend = w.state === 'starting' || w.state === 'active';
    if (w.state === 'starting') {
      w.state = 'active';
      w.started_at = now();
    }
    w.lastHeartbeat = `hb-${++this.#hb}`;
    w.latest_heartbeat_at = now();
    return { type: 'work_heartbeat', last_heartbeat: w.lastHeartbeat, lease_extended: extend, state: w.state, ttl_seconds: w.ttlSeconds };
  }

  stop(id: string, force: boolean): FakeWork {
    const w = this.get(id);
    if (w.state === 'stopped') throw new FakeHttpError(409, 'invalid_request_error', `work item ${id} is already stopped`);
    if (force || w.state === 'stopping' || w.state === 'queued') {
      w.state = 'stopped';
      w.stopped_at = now();
    } else {
      w.state = 'stopping';
      w.stop_requested_at = now();
    }
    return w;
  }

  /** Ops side: ask the worker to stop (graceful); it sees `stopping` on its next heartbeat. */
  requestStop(id: string): void {
    const w = this.get(id);
    w.state = 'stopping';
    w.stop_requested_at = now();
  }

  /** Fault: the lease is cleared and re-queued, as if it lapsed; the holder's next heartbeat gets 412. */
  clearLease(id: string): void {
    const w = this.get(id);
    w.state = 'queued';
    w.lastHeartbeat = null;
    w.deliveredAt = Date.now() + 3_600_000; // not redelivered during the test
  }

  stats(): Record<string, unknown> {
    const items = [...this.items.values()];
    return {
      type: 'work_queue_stats',
      depth: items.filter((w) => w.state === 'queued' && w.deliveredAt === null).length,
      pending: items.filter((w) => w.state === 'queued' && w.deliveredAt !== null).length,
      oldest_queued_at: items.filter((w) => w.state === 'queued').map((w) => w.created_at).sort()[0] ?? null,
      workers_polling: this.workerIds.size,
    };
  }
}
