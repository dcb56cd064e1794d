import type Anthropic from '@anthropic-ai/sdk';
import { createHash } from 'node:crypto';
import { constants as C } from 'node:fs';
import { chmod, mkdir, open, opendir, rename, rm, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { noopLogger, type Logger } from '../util/logger.js';
import { RunnerError, describeError, isRunnerError } from '../util/errors.js';
import { atDir, MAX_WALK_DEPTH, readAtMost, WorkspaceFs } from '../tools/workspace-path.js';
import { apiStatus } from './api-client.js';
import type { HostMount } from './worker-host.js';

/** A memory store attached to the session. */
export interface MemoryStoreRef {
  id: string;
  name: string;
  /** `/mnt/memory/<slug>` as the session resource gives it. */
  mountPath: string | undefined;
  readOnly: boolean;
}

const MARKER = '.anthropic-memory-store';
const MEMORY_BETA = 'agent-memory-2026-07-22';
/** A local delete is pushed only when a later sync, this long after, still sees it gone. */
const DELETE_CONFIRM_MS = 30_000;
/** Largest local file read as a memory. */
const MAX_MEMORY_BYTES = 100 * 1024;
const sha256 = (s: string | Buffer): string => createHash('sha256').update(s).digest('hex');

interface Store extends MemoryStoreRef {
  slug: string;
  hostDir: string;
  /** path ("/notes.md") → content sha at the last agreement of both sides. */
  baseline: Map<string, string>;
  pendingDeletes: Map<string, number>;
}

/**
 * The session's memory stores as host folders bind-mounted at
 * `/mnt/memory/<store>/`: pulled at mount, synced both ways at most every
 * `intervalMs` (after a tool call), pushed a last time at the end, removed
 * after. Uploads carry a `content_sha256` precondition; on a conflict the
 * store wins and a warning is logged. Read-only stores pull but never push.
 */
export class MemoryMounts {
  readonly #client: Anthropic;
  readonly #log: Logger;
  readonly #dir: string;
  readonly #interval: number;
  readonly #stores: Store[];
  #lastSync = 0;
  #syncing: Promise<void> | undefined;
  /** Counters for tests and status. */
  readonly stats = { pulled: 0, pushed: 0, conflicts: 0, deleted: 0 };

  constructor(options: { client: Anthropic; root: string; sessionKey: string; stores: MemoryStoreRef[]; logger?: Logger; intervalMs: number }) {
    this.#client = options.client;
    this.#log = options.logger ?? noopLogger;
    this.#dir = path.join(options.root, options.sessionKey.replace(/[^A-Za-z0-9_-]/g, '_'));
    this.#interval = options.intervalMs;
    this.#stores = options.stores.map((s) => {
      const slug = path.posix.basename(s.mountPath ?? '') || s.name.toLowerCase().replace(/[^a-z0-9]+/g, '-');
      const safe = slug.replace(/[^A-Za-z0-9._-]/g, '-').replace(/^\.+/, '') || s.id;
      return { ...s, slug: safe, hostDir: path.join(this.#dir, safe), baseline: new Map(), pendingDeletes: new Map() };
    });
  }

  /** Bind mounts for the sandbox. */
  hostMounts(): HostMount[] {
    return this.#stores.map((s) => ({ hostPath: s.hostDir, path: `/mnt/memory/${s.slug}`, readOnly: s.readOnly }));
  }

  /** Creates each folder (refusing one that exists), stamps the marker, pulls every memory. */
  async mount(signal: AbortSignal): Promise<void> {
    if (this.#stores.length === 0) return;
    await mkdir(this.#dir, { recursive: true, mode: 0o711 });
    for (const s of this.#stores) {
      try {
        await mkdir(s.hostDir, { mode: 0o777 });
        // The sandbox runs as its own host uid: the mode given to mkdir is cut by the umask, so set it outright.
        await chmod(s.hostDir, 0o777);
      } catch (err) {
        throw new RunnerError('io', (err as NodeJS.ErrnoException).code === 'EEXIST'
          ? `something already exists at the memory store's path ${s.hostDir}; remove it (a crashed worker leaves it behind) and requeue the session`
          : `cannot create the memory store's folder ${s.hostDir}; check the runner's state directory`, { cause: err });
      }
      await writeFile(path.join(s.hostDir, MARKER), sha256(`version 1\n${s.id}`), { mode: 0o644 });
      for (const m of await this.#listRemote(s, signal)) {
        await this.#writeLocal(s, m.path, m.content);
        s.baseline.set(m.path, m.sha);
        this.stats.pulled++;
      }
    }
    this.#lastSync = Date.now();
  }

  /** Syncs when the interval has passed since the last sync. */
  async syncIfDue(): Promise<void> {
    if (this.#stores.length === 0 || Date.now() - this.#lastSync < this.#interval) return;
    await this.sync();
  }

  /** One two-way sync of every store; concurrent callers share it. */
  sync(): Promise<void> {
    this.#syncing ??= this.#syncAll().finally(() => {
      this.#syncing = undefined;
      this.#lastSync = Date.now();
    });
    return this.#syncing;
  }

  /** The last sync on a clean end (bounded to 30 s, like the SDK's flush). */
  async finalSync(): Promise<void> {
    if (this.#stores.length === 0) return;
    await Promise.race([this.sync(), new Promise((r) => setTimeout(r, 30_000).unref())]);
  }

  /** Removes the folders. Idempotent. */
  async unmount(): Promise<void> {
    await rm(this.#dir, { recursive: true, force: true });
  }

  async #syncAll(): Promise<void> {
    for (const s of this.#stores) {
      try {
        await this.#syncStore(s);
      } catch (err) {
        this.#log.warn({ store: s.id, status: apiStatus(err), err: describeError(err) }, 'memory sync failed; retrying at the next sync');
      }
    }
  }

  async #syncStore(s: Store): Promise<void> {
    if (!(await this.#markerOk(s))) {
      this.#log.warn({ store: s.id }, 'memory store folder lost its marker; not syncing it');
      return;
    }
    const remote = new Map((await this.#listRemote(s)).map((m) => [m.path, m]));
    const local = await this.#readLocal(s);
    const paths = new Set([...remote.keys(), ...local.keys(), ...s.baseline.keys()]);
    for (const p of paths) {
      const base = s.baseline.get(p);
      const r = remote.get(p);
      const l = local.get(p);
      const lsha = l === undefined ? undefined : sha256(l);
      const localChanged = lsha !== base;
      const remoteChanged = r?.sha !== base;
      if (!localChanged && !remoteChanged) continue;
      if (remoteChanged && (!localChanged || lsha === r?.sha)) {
        await this.#takeRemote(s, p, r);
        continue;
      }
      if (remoteChanged && localChanged) {
        this.stats.conflicts++;
        this.#log.warn({ store: s.id, path: p }, 'memory changed on both sides; the store wins');
        await this.#takeRemote(s, p, r);
        continue;
      }
      if (s.readOnly) continue;
      if (l === undefined) {
        // A local delete is confirmed by a later sync before it is pushed.
        const first = s.pendingDeletes.get(p);
        if (first === undefined) s.pendingDeletes.set(p, Date.now());
        else if (Date.now() - first >= DELETE_CONFIRM_MS && r) {
          await this.#client.beta.memoryStores.memories.delete(r.id, { memory_store_id: s.id, expected_content_sha256: r.sha, betas: [MEMORY_BETA] });
          s.baseline.delete(p);
          s.pendingDeletes.delete(p);
          this.stats.deleted++;
        }
        continue;
      }
      s.pendingDeletes.delete(p);
      try {
        if (r) {
          await this.#client.beta.memoryStores.memories.update(r.id, { memory_store_id: s.id, content: l, precondition: { type: 'content_sha256', content_sha256: base ?? r.sha }, betas: [MEMORY_BETA] });
        } else {
          await this.#client.beta.memoryStores.memories.create(s.id, { path: p, content: l, betas: [MEMORY_BETA] });
        }
        s.baseline.set(p, lsha!);
        this.stats.pushed++;
      } catch (err) {
        const status = apiStatus(err);
        if (status !== 409 && status !== 412) throw err;
        // Someone changed it since our baseline: the store wins.
        this.stats.conflicts++;
        this.#log.warn({ store: s.id, path: p }, 'memory upload hit a precondition conflict; the store wins');
        const fresh = (await this.#listRemote(s)).find((m) => m.path === p);
        await this.#takeRemote(s, p, fresh);
      }
    }
  }

  async #takeRemote(s: Store, p: string, r: { sha: string; content: string } | undefined): Promise<void> {
    if (r) {
      await this.#writeLocal(s, p, r.content);
      s.baseline.set(p, r.sha);
      this.stats.pulled++;
    } else {
      await this.#removeLocal(s, p);
      s.baseline.delete(p);
    }
  }

  async #listRemote(s: Store, signal?: AbortSignal): Promise<Array<{ id: string; path: string; sha: string; content: string }>> {
    const out: Array<{ id: string; path: string; sha: string; content: string }> = [];
    for await (const item of this.#client.beta.memoryStores.memories.list(s.id, { view: 'full', limit: 100, betas: [MEMORY_BETA] }, signal ? { signal } : {})) {
      const m = item as unknown as { type: string; id: string; path: string; content_sha256: string; content?: string | null };
      if (m.type !== 'memory') continue;
      out.push({ id: m.id, path: m.path, sha: m.content_sha256, content: m.content ?? '' });
    }
    return out;
  }

  /**
   * A memory path as a path relative to the store's folder. The folder is
   * bind-mounted read-write into a live sandbox, so every local read, write
   * and delete below goes through WorkspaceFs (fd-relative, O_NOFOLLOW): with
   * plain paths, a folder or file swapped for a symlink by sandboxed code
   * between a check and a use made the runner (root) read any host file into
   * the store, or write and chmod 0777 through it.
   */
  #rel(p: string): string {
    const rel = path.posix.normalize(`/${p}`).replace(/^\/+/, '').replace(/\/+$/, '');
    if (rel === '' || rel === '..' || rel.startsWith('../')) throw new RunnerError('invalid_input', `memory path ${p} leaves the store folder`);
    return rel;
  }

  #fs(s: Store): Promise<WorkspaceFs> {
    // Folders the sandbox's own uid may add to, whatever the runner's umask.
    return WorkspaceFs.open(s.hostDir, { dirMode: 0o777 });
  }

  async #removeLocal(s: Store, p: string): Promise<void> {
    const ws = await this.#fs(s);
    const parent = await ws.parent(this.#rel(p)).catch((err: unknown) => {
      if (isRunnerError(err, 'invalid_input')) return undefined; // its folder is gone or not one: nothing to remove
      throw err;
    });
    if (!parent) return;
    try {
      await unlink(atDir(parent.dir, parent.name)).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
    } finally {
      await parent.dir.close();
    }
  }

  async #writeLocal(s: Store, p: string, content: string): Promise<void> {
    const ws = await this.#fs(s);
    const parent = await ws.parent(this.#rel(p), { create: true });
    try {
      const tmp = `${parent.name}.sr-tmp`;
      await unlink(atDir(parent.dir, tmp)).catch(() => undefined);
      const handle = await ws.openForWrite(parent.dir, tmp, 0o666, p);
      try {
        await handle.writeFile(content);
        await handle.chmod(0o666);
      } finally {
        await handle.close();
      }
      // rename(2) replaces whatever is at the name (a symlink included) and follows nothing.
      await rename(atDir(parent.dir, tmp), atDir(parent.dir, parent.name));
    } finally {
      await parent.dir.close();
    }
  }

  /** Regular files only (up to 100 KiB): a symlink made by the agent is never followed, not even one swapped in mid-walk. */
  async #readLocal(s: Store): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    const walk = async (dir: FileHandle, rel: string, depth: number): Promise<void> => {
      if (depth > MAX_WALK_DEPTH) return;
      const listing = await opendir(`/proc/self/fd/${dir.fd}`);
      try {
        for await (const entry of listing) {
          const name = entry.name;
          if (rel === '' && name === MARKER) continue;
          const child = await open(atDir(dir, name), C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK).catch(() => undefined);
          if (!child) continue; // a symlink (ELOOP), a socket, or gone
          try {
            const st = await child.stat();
            if (st.isDirectory()) await walk(child, `${rel}/${name}`, depth + 1);
            else if (st.isFile() && st.size <= MAX_MEMORY_BYTES) {
              const { data, more } = await readAtMost(child, MAX_MEMORY_BYTES);
              if (!more) out.set(`${rel}/${name}`, data.toString('utf8'));
            }
          } finally {
            await child.close();
          }
        }
      } finally {
        await listing.close().catch(() => undefined);
      }
    };
    const root = await (await this.#fs(s)).openRoot();
    try {
      await walk(root, '', 1);
    } finally {
      await root.close();
    }
    return out;
  }

  async #markerOk(s: Store): Promise<boolean> {
    const root = await (await this.#fs(s)).openRoot();
    try {
      const marker = await open(atDir(root, MARKER), C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK).catch(() => undefined);
      if (!marker) return false;
      try {
        if (!(await marker.stat()).isFile()) return false;
        const { data } = await readAtMost(marker, 1024);
        return data.toString('utf8').trim() === sha256(`version 1\n${s.id}`);
      } finally {
        await marker.close();
      }
    } finally {
      await root.close();
    }
  }

}
