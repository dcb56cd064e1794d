import { join } from 'node:path';
import { readJsonFile, writeFileAtomic, type KeyedQueue } from './atomic-file.js';

/** A signed audit checkpoint a runner sent (issue 5), kept as received. */
export interface StoredCheckpoint {
  seq: number;
  hash: string;
  signature: string;
  at: string;
  receivedAt: string;
}

/**
 * Audit checkpoints per runner, one JSON file per runner under `audit/`. The
 * control plane keeps them so that a runner's log rewritten after the fact
 * disagrees with a copy held elsewhere. A checkpoint seen twice is kept once (by seq).
 */
export class AuditStore {
  readonly #dir: string;
  readonly #queue: KeyedQueue;

  constructor(dir: string, queue: KeyedQueue) {
    this.#dir = dir;
    this.#queue = queue;
  }

  add(runnerId: string, checkpoint: StoredCheckpoint): Promise<void> {
    const path = this.#path(runnerId);
    return this.#queue.run(path, async () => {
      const list = (await readJsonFile<StoredCheckpoint[]>(path)) ?? [];
      if (list.some((c) => c.seq === checkpoint.seq)) return;
      list.push(checkpoint);
      list.sort((a, b) => a.seq - b.seq);
      await writeFileAtomic(path, JSON.stringify(list), 0o600);
    });
  }

  list(runnerId: string): Promise<StoredCheckpoint[]> {
    const path = this.#path(runnerId);
    return this.#queue.run(path, async () => (await readJsonFile<StoredCheckpoint[]>(path)) ?? []);
  }

  #path(runnerId: string): string {
    // Runner ids are made by the control plane at pairing (rnr_ + hex), safe as file names.
    return join(this.#dir, `${runnerId}.json`);
  }
}
