import { join } from 'node:path';
import type { KeyedQueue } from './atomic-file.js';
import { JsonCollection } from './json-collection.js';

/** What a runner told us in its last `auth`. */
export interface RunnerCapabilities {
  tools: string[];
  drivers: string[];
  maxConcurrentCalls: number;
}

/** A paired runner, as persisted in `runners.json`. */
export interface RunnerRecord {
  id: string;
  name: string;
  labels: Record<string, string>;
  /** base64 Ed25519 public key; verifies the runner's auth signature. */
  signingPublicKey: string;
  /** base64 X25519 public key; credentials are sealed to it (issue 4). */
  boxPublicKey: string;
  version: string;
  capabilities: RunnerCapabilities | null;
  pairedAt: string;
  lastSeenAt: string | null;
}

/** Paired runners, persisted across restarts. */
export class RunnerRegistry {
  readonly #runners: JsonCollection<RunnerRecord>;

  private constructor(runners: JsonCollection<RunnerRecord>) {
    this.#runners = runners;
  }

  static async load(root: string, queue: KeyedQueue): Promise<RunnerRegistry> {
    return new RunnerRegistry(await JsonCollection.load<RunnerRecord>(join(root, 'runners.json'), queue));
  }

  get(id: string): RunnerRecord | undefined {
    return this.#runners.get(id);
  }

  list(): RunnerRecord[] {
    return this.#runners.values().sort((a, b) => a.pairedAt.localeCompare(b.pairedAt));
  }

  /** Stores a new or changed runner; resolves once on disk. */
  save(runner: RunnerRecord): Promise<void> {
    return this.#runners.set(runner.id, runner);
  }
}
