import { readJsonFile, writeFileAtomic, type KeyedQueue } from './atomic-file.js';

/**
 * A small keyed collection kept in memory and persisted as one JSON file,
 * rewritten atomically after each change. Fit for tens of thousands of entries
 * (runners, pairing tokens, sessions); tool calls use one file each instead.
 */
export class JsonCollection<T> {
  readonly #path: string;
  readonly #queue: KeyedQueue;
  readonly #items = new Map<string, T>();

  private constructor(path: string, queue: KeyedQueue) {
    this.#path = path;
    this.#queue = queue;
  }

  /** Loads `path` (an object of id → item), or starts empty when it is missing. */
  static async load<T>(path: string, queue: KeyedQueue): Promise<JsonCollection<T>> {
    const c = new JsonCollection<T>(path, queue);
    const data = await readJsonFile<Record<string, T>>(path);
    for (const [k, v] of Object.entries(data ?? {})) c.#items.set(k, v);
    return c;
  }

  get(id: string): T | undefined {
    return this.#items.get(id);
  }

  values(): T[] {
    return [...this.#items.values()];
  }

  /** Sets an item and resolves once the file holding it is on disk. */
  set(id: string, item: T): Promise<void> {
    this.#items.set(id, item);
    return this.#persist();
  }

  delete(id: string): Promise<void> {
    this.#items.delete(id);
    return this.#persist();
  }

  #persist(): Promise<void> {
    // The snapshot is taken when the write runs, so queued writes always end
    // with the newest state even if an earlier one is still in flight.
    return this.#queue.run(this.#path, () =>
      writeFileAtomic(this.#path, JSON.stringify(Object.fromEntries(this.#items)), 0o600),
    );
  }
}
