import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeAnthropic } from '../../fakes/anthropic/fake-anthropic.js';
import { createWorkerClient } from '../../../src/managed-agents/api-client.js';
import { WorkPoller, type PollOutcome } from '../../../src/managed-agents/work-poller.js';
import { WorkLease, type LeaseEnd } from '../../../src/managed-agents/work-lease.js';
import { isRunnerError } from '../../../src/util/errors.js';

let fake: FakeAnthropic;
beforeEach(async () => {
  fake = new FakeAnthropic();
  await fake.start();
});
afterEach(async () => {
  await fake.close();
});

function freeSlot(): (signal: AbortSignal) => Promise<() => void> {
  return async () => () => undefined;
}

describe('work poller', () => {
  it('treats 204, 200 null and 200 {} as no work, then claims, acks and hands over a session item', async () => {
    fake.queue.emptyEncodings = ['204', 'null', '{}', '204'];
    const client = createWorkerClient({ baseUrl: fake.url, credential: fake.environmentKey, helper: 'environments-work-poller' });
    const outcomes: PollOutcome[] = [];
    const ac = new AbortController();
    const got = new Promise<string>((resolve) => {
      const poller = new WorkPoller({
        client,
        environmentId: fake.environmentId,
        workerId: 'host-1-abc',
        acquireSlot: freeSlot(),
        emptySleepMs: [1, 5],
        onPoll: (o) => {
          outcomes.push(o);
          // After the three encodings were each seen once, put an item in the queue.
          if (outcomes.filter((x) => x === 'empty').length === 3) fake.createSession({});
        },
        onWork: (work, release) => {
          release();
          resolve(work.id);
          ac.abort();
        },
      });
      void poller.run(ac.signal);
    });
    const workId = await got;
    expect(fake.queue.emptyPolls.slice(0, 3)).toEqual(['204', 'null', '{}']);
    expect(outcomes.slice(0, 4)).toEqual(['empty', 'empty', 'empty', 'work']);
    expect(fake.queue.get(workId).state).toBe('starting');
    expect(fake.queue.workerIds).toEqual(new Set(['host-1-abc']));
    expect(fake.queue.pollBlockMs.every((b) => b === '999')).toBe(true);
    expect(fake.apiKeyHeaders).toEqual([]);
  });

  it('skips a health-check item: acked and stopped, never handed over', async () => {
    const hc = fake.queue.enqueue({ type: 'healthcheck', id: 'hc_1' });
    const client = createWorkerClient({ baseUrl: fake.url, credential: fake.environmentKey, helper: 'environments-work-poller' });
    const ac = new AbortController();
    let handed = 0;
    const poller = new WorkPoller({
      client,
      environmentId: fake.environmentId,
      workerId: 'w',
      acquireSlot: freeSlot(),
      emptySleepMs: [1, 2],
      onWork: () => handed++,
      onPoll: (o) => {
        if (o === 'skipped') ac.abort();
      },
    });
    await poller.run(ac.signal);
    expect(handed).toBe(0);
    expect(fake.queue.get(hc.id).state).toBe('stopped');
  });

  it('stops on a refused key with a clear error, after one poll', async () => {
    const client = createWorkerClient({ baseUrl: fake.url, credential: 'sk-ant-oat01-wrong', helper: 'environments-work-poller' });
    const poller = new WorkPoller({ client, environmentId: fake.environmentId, workerId: 'w', acquireSlot: freeSlot(), onWork: () => undefined });
    const err = await poller.run(new AbortController().signal).catch((e: unknown) => e);
    expect(isRunnerError(err, 'credential_invalid')).toBe(true);
    expect((err as Error).message).toMatch(/environment key was refused \(401\)/);
    expect((err as Error).message).not.toContain('wrong');
    expect(fake.hits.get('poll') ?? 0).toBe(0);
  });

  it('backs off on 5xx and carries on', async () => {
    fake.faults.push({ route: 'poll', status: 503, count: 2 });
    fake.createSession({});
    const client = createWorkerClient({ baseUrl: fake.url, credential: fake.environmentKey, helper: 'environments-work-poller' });
    const ac = new AbortController();
    const outcomes: PollOutcome[] = [];
    await new Promise<void>((resolve) => {
      void new WorkPoller({
        client,
        environmentId: fake.environmentId,
        workerId: 'w',
        acquireSlot: freeSlot(),
        errorBackoffMs: [5, 20],
        onPoll: (o) => outcomes.push(o),
        onWork: (_w, release) => {
          release();
          ac.abort();
          resolve();
        },
      }).run(ac.signal);
    });
    expect(outcomes).toEqual(['error', 'error', 'work']);
  });
});

describe('work lease', () => {
  async function claimed(): Promise<{ workId: string; lease: WorkLease }> {
    const { work } = fake.createSession({});
    fake.queue.ack(work.id);
    const client = createWorkerClient({ baseUrl: fake.url, credential: fake.environmentKey, helper: 'environments-worker' });
    const lease = new WorkLease({ client, environmentId: fake.environmentId, workId: work.id, intervalMs: () => 20 });
    return { workId: work.id, lease };
  }

  it('heartbeats at once with NO_HEARTBEAT, then echoes last_heartbeat; release force-stops', async () => {
    const { workId, lease } = await claimed();
    await lease.start();
    expect(fake.queue.get(workId).state).toBe('active');
    while (lease.beats < 3) await new Promise((r) => setTimeout(r, 10));
    expect(lease.ended.aborted).toBe(false);
    await lease.release();
    expect(fake.queue.get(workId).state).toBe('stopped');
  });

  it('a 412 loses the lease and the item is not stopped', async () => {
    const { workId, lease } = await claimed();
    await lease.start();
    fake.queue.clearLease(workId);
    await new Promise((r) => lease.ended.addEventListener('abort', r, { once: true }));
    expect((lease.ended.reason as LeaseEnd).kind).toBe('lost');
    await lease.release();
    expect(fake.queue.get(workId).state).toBe('queued');
    expect(fake.hits.get('stop') ?? 0).toBe(0);
  });

  it('a stopping state ends the lease gracefully; stop on an already stopped item (409) counts as done', async () => {
    const { workId, lease } = await claimed();
    await lease.start();
    fake.queue.requestStop(workId);
    await new Promise((r) => lease.ended.addEventListener('abort', r, { once: true }));
    expect((lease.ended.reason as LeaseEnd).kind).toBe('stopping');
    fake.queue.stop(workId, true);
    await expect(lease.release()).resolves.toBeUndefined();
    expect(fake.hits.get('stop')).toBe(1);
  });
});
