import { createHash, randomBytes } from 'node:crypto';
import { FakeHttpError, badRequest, notFound, now } from './http-util.js';

export interface FakeMemory {
  id: string;
  path: string;
  content: string;
  sha: string;
  version: number;
  created_at: string;
  updated_at: string;
}

const sha256 = (s: string): string => createHash('sha256').update(s, 'utf8').digest('hex');

/** A memory store: text documents by path, with content-hash preconditions. */
export class FakeMemoryStore {
  readonly memories = new Map<string, FakeMemory>();
  constructor(readonly id: string) {}

  /** Remote mutation hook (another session or the app edits a memory). */
  put(path: string, content: string): FakeMemory {
    const existing = [...this.memories.values()].find((m) => m.path === path);
    if (existing) {
      existing.content = content;
      existing.sha = sha256(content);
      existing.version++;
      existing.updated_at = now();
      return existing;
    }
    const m: FakeMemory = { id: `mem_${randomBytes(6).toString('hex')}`, path, content, sha: sha256(content), version: 1, created_at: now(), updated_at: now() };
    this.memories.set(m.id, m);
    return m;
  }

  byPath(path: string): FakeMemory | undefined {
    return [...this.memories.values()].find((m) => m.path === path);
  }

  view(m: FakeMemory, full: boolean): Record<string, unknown> {
    return {
      type: 'memory',
      id: m.id,
      memory_store_id: this.id,
      memory_version_id: `memver_${m.id}_${m.version}`,
      path: m.path,
      content_sha256: m.sha,
      content_size_bytes: Buffer.byteLength(m.content),
      created_at: m.created_at,
      updated_at: m.updated_at,
      ...(full ? { content: m.content } : {}),
    };
  }

  list(query: URLSearchParams): Record<string, unknown> {
    const full = query.get('view') === 'full';
    const limit = Number(query.get('limit') ?? 20);
    const start = Number(query.get('page') ?? 0);
    const all = [...this.memories.values()].sort((a, b) => a.path.localeCompare(b.path));
    const page = all.slice(start, start + limit);
    return { data: page.map((m) => this.view(m, full)), next_page: start + limit < all.length ? String(start + limit) : null };
  }

  get(id: string): FakeMemory {
    const m = this.memories.get(id);
    if (!m) throw notFound(`memory ${id} not found`);
    return m;
  }

  create(body: { path?: unknown; content?: unknown }): FakeMemory {
    if (typeof body?.path !== 'string' || !body.path.startsWith('/')) throw badRequest('path: must be an absolute path');
    if (typeof body.content !== 'string') throw badRequest('content: required');
    const existing = this.byPath(body.path);
    if (existing) {
      throw new FakeHttpError(409, 'memory_path_conflict_error', `a memory already exists at ${body.path}`, {
        conflicting_memory_id: existing.id,
        conflicting_path: body.path,
      });
    }
    return this.put(body.path, body.content);
  }

  update(id: string, body: { content?: unknown; precondition?: { type?: string; content_sha256?: string } }): FakeMemory {
    const m = this.get(id);
    const pre = body?.precondition;
    if (pre?.type === 'content_sha256' && pre.content_sha256 !== m.sha) {
      throw new FakeHttpError(409, 'memory_precondition_failed_error', `memory ${id} changed: its content_sha256 is no longer ${pre.content_sha256}`);
    }
    if (typeof body.content !== 'string') throw badRequest('content: required');
    return this.put(m.path, body.content);
  }

  delete(id: string, expected: string | null): void {
    const m = this.get(id);
    if (expected && expected !== m.sha) throw new FakeHttpError(409, 'memory_precondition_failed_error', `memory ${id} changed`);
    this.memories.delete(id);
  }
}
