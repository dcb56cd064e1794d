import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { FakeHttpError, badRequest, notFound, readBody, sendError, sendJson } from './http-util.js';
import { FakeWorkQueue, type FakeWork } from './work-queue.js';
import { FakeSession, type FakeSessionInit } from './fake-session.js';
import { FakeMemoryStore } from './fake-memory.js';

/** A skill version the fake serves: its name and its archive bytes (zip or tar.gz). */
export interface FakeSkillVersion {
  name: string;
  archive: Buffer;
}

type Principal = { kind: 'environment'; environmentId: string } | { kind: 'session'; sessionId: string; workId: string };

/**
 * A faithful fake of Anthropic's side for a self_hosted environment, on a
 * real HTTP server at 127.0.0.1 (port 0): the Work API with leases and its
 * error bodies, the session events (list, SSE stream, send) with a scripted
 * agent, the skills routes and the memory store routes. Point the real SDK at
 * `url` through `baseURL`.
 */
export class FakeAnthropic {
  readonly environmentId: string;
  readonly environmentKey: string;
  readonly queue: FakeWorkQueue;
  readonly sessions = new Map<string, FakeSession>();
  readonly skills = new Map<string, Map<string, FakeSkillVersion>>();
  readonly memoryStores = new Map<string, FakeMemoryStore>();
  /** Every Authorization / X-Api-Key value seen, to check what went on the wire. */
  readonly credentialsSeen = new Set<string>();
  readonly apiKeyHeaders: string[] = [];
  /** Sessions tokens minted, by token. */
  readonly tokens = new Map<string, { sessionId: string; workId: string }>();
  /** Skills accept the sessions token (true) or the environment key only (false). */
  skillsAcceptSessionsToken = true;
  /** Count of requests by route name, for assertions. */
  readonly hits = new Map<string, number>();
  /** Fault injection: answer the next N matching requests with this status. */
  readonly faults: Array<{ route: string; status: number; count: number }> = [];
  url = '';
  #server: Server | undefined;
  #open = new Set<import('node:net').Socket>();

  constructor(options: { environmentId?: string; environmentKey?: string } = {}) {
    this.environmentId = options.environmentId ?? `env_${randomBytes(6).toString('hex')}`;
    this.environmentKey = options.environmentKey ?? `sk-ant-oat01-${randomBytes(24).toString('base64url')}`;
    this.queue = new FakeWorkQueue(this.environmentId, (work) => this.#mintSecret(work));
  }

  async start(): Promise<string> {
    this.#server = createServer((req, res) => {
      this.#handle(req, res).catch((err) => {
        if (res.headersSent) return res.destroy();
        if (err instanceof FakeHttpError) return sendError(res, err);
        sendError(res, new FakeHttpError(500, 'api_error', `fake server error: ${String(err)}`));
      });
    });
    this.#server.on('connection', (s) => {
      this.#open.add(s);
      s.on('close', () => this.#open.delete(s));
    });
    await new Promise<void>((r) => this.#server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
    return this.url;
  }

  async close(): Promise<void> {
    for (const s of this.sessions.values()) s.close();
    for (const s of this.#open) s.destroy();
    await new Promise<void>((r) => (this.#server ? this.#server.close(() => r()) : r()));
  }

  /** Creates a session and enqueues its work item (work id = session id, as Anthropic's testing saw). */
  createSession(init: Omit<FakeSessionInit, 'id' | 'environmentId'> & { id?: string }, workOptions: { withSecret?: boolean; rawSecret?: string } = {}): { session: FakeSession; work: FakeWork } {
    const id = init.id ?? `sesn_${randomBytes(8).toString('hex')}`;
    const session = new FakeSession({ ...init, id, environmentId: this.environmentId });
    this.sessions.set(id, session);
    for (const s of init.memoryStores ?? []) if (!this.memoryStores.has(s.memory_store_id)) this.memoryStores.set(s.memory_store_id, new FakeMemoryStore(s.memory_store_id));
    const work = this.queue.enqueue({ type: 'session', id }, { ...workOptions, id });
    return { session, work };
  }

  addSkill(skillId: string, version: string, v: FakeSkillVersion): void {
    if (!this.skills.has(skillId)) this.skills.set(skillId, new Map());
    this.skills.get(skillId)!.set(version, v);
  }

  #mintSecret(work: FakeWork): string {
    const token = `sk-ant-req-${randomBytes(24).toString('base64url')}`;
    this.tokens.set(token, { sessionId: work.data.id, workId: work.id });
    return Buffer.from(JSON.stringify({ sessions_token: token, api_base_url: this.url }), 'utf8').toString('base64url');
  }

  #auth(req: IncomingMessage): Principal {
    const apiKey = req.headers['x-api-key'];
    if (typeof apiKey === 'string') {
      this.apiKeyHeaders.push(apiKey);
      throw new FakeHttpError(401, 'authentication_error', 'X-Api-Key is not accepted on worker routes; use Authorization: Bearer');
    }
    const auth = req.headers.authorization ?? '';
    const m = /^Bearer (.+)$/.exec(auth);
    if (!m) throw new FakeHttpError(401, 'authentication_error', 'missing Authorization: Bearer credential');
    const cred = m[1]!;
    this.credentialsSeen.add(cred);
    if (cred === this.environmentKey) return { kind: 'environment', environmentId: this.environmentId };
    const t = this.tokens.get(cred);
    if (t) return { kind: 'session', ...t };
    throw new FakeHttpError(401, 'authentication_error', 'invalid bearer credential');
  }

  #hit(route: string): void {
    this.hits.set(route, (this.hits.get(route) ?? 0) + 1);
    const f = this.faults.find((x) => x.route === route && x.count > 0);
    if (f) {
      f.count--;
      throw new FakeHttpError(f.status, f.status >= 500 ? 'api_error' : 'invalid_request_error', `injected fault ${f.status} on ${route}`);
    }
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const q = url.searchParams;
    const parts = url.pathname.split('/').filter(Boolean);
    const method = req.method ?? 'GET';
    const who = this.#auth(req);
    const beta = String(req.headers['anthropic-beta'] ?? '');

    // /v1/environments/{env}/work...
    if (parts[0] === 'v1' && parts[1] === 'environments' && parts[3] === 'work') {
      if (!beta.includes('managed-agents-2026-04-01')) throw badRequest('anthropic-beta: managed-agents-2026-04-01 is required');
      if (parts[2] !== this.environmentId) throw notFound(`environment ${parts[2]} not found`);
      const workId = parts[4];
      const op = parts[5];
      const envOnly = (): void => {
        if (who.kind !== 'environment') throw new FakeHttpError(403, 'permission_error', 'this route needs the environment key');
      };
      const mine = (): void => {
        if (who.kind === 'session' && who.workId !== workId) throw new FakeHttpError(403, 'permission_error', 'the sessions token is for another work item');
      };
      if (method === 'GET' && workId === 'poll') {
        envOnly();
        this.#hit('poll');
        const ac = new AbortController();
        res.on('close', () => ac.abort());
        const work = await this.queue.poll(q, req.headers['anthropic-worker-id'] as string | undefined, ac.signal);
        if (!work) {
          const enc = this.queue.nextEmptyEncoding();
          if (enc === '204') {
            res.writeHead(204);
            return void res.end();
          }
          return sendJson(res, 200, enc === 'null' ? null : {});
        }
        const secret = work.rawSecret ?? (work.withSecret ? this.#mintSecret(work) : null);
        return sendJson(res, 200, this.queue.view(work, secret));
      }
      if (method === 'GET' && workId === 'stats') {
        envOnly();
        return sendJson(res, 200, this.queue.stats());
      }
      if (!workId) throw notFound('no such route');
      mine();
      if (method === 'POST' && op === 'ack') {
        envOnly();
        this.#hit('ack');
        return sendJson(res, 200, this.queue.view(this.queue.ack(workId)));
      }
      if (method === 'POST' && op === 'heartbeat') {
        this.#hit('heartbeat');
        return sendJson(res, 200, this.queue.heartbeat(workId, q.get('expected_last_heartbeat')));
      }
      if (method === 'POST' && op === 'stop') {
        this.#hit('stop');
        const body = (await readBody(req)) as { force?: boolean } | undefined;
        return sendJson(res, 200, this.queue.view(this.queue.stop(workId, body?.force === true)));
      }
      if (method === 'GET' && !op) return sendJson(res, 200, this.queue.view(this.queue.get(workId)));
      throw notFound('no such work route');
    }

    // /v1/sessions/{id}...
    if (parts[0] === 'v1' && parts[1] === 'sessions' && parts[2]) {
      if (!beta.includes('managed-agents-2026-04-01')) throw badRequest('anthropic-beta: managed-agents-2026-04-01 is required');
      const session = this.sessions.get(parts[2]);
      if (!session) throw notFound(`session ${parts[2]} not found`);
      if (who.kind === 'session' && who.sessionId !== session.id) throw new FakeHttpError(403, 'permission_error', 'the sessions token is for another session');
      if (parts.length === 3 && method === 'GET') {
        this.#hit('session.get');
        return sendJson(res, 200, session.view());
      }
      if (parts[3] === 'events' && parts[4] === 'stream' && method === 'GET') {
        this.#hit('events.stream');
        return session.subscribe(res);
      }
      if (parts[3] === 'events' && parts.length === 4 && method === 'GET') {
        this.#hit('events.list');
        const limit = Math.min(Number(q.get('limit') ?? 100), 1000);
        const start = Number(q.get('page') ?? 0);
        const page = session.events.slice(start, start + limit);
        return sendJson(res, 200, { data: page, next_page: start + limit < session.events.length ? String(start + limit) : null });
      }
      if (parts[3] === 'events' && parts.length === 4 && method === 'POST') {
        this.#hit('events.send');
        const accepted = session.accept(await readBody(req), true);
        return sendJson(res, 200, { data: accepted });
      }
      throw notFound('no such session route');
    }

    // /v1/skills/{id}/versions[/{v}[/content]]
    if (parts[0] === 'v1' && parts[1] === 'skills' && parts[3] === 'versions') {
      this.#hit('skills');
      if (who.kind === 'session' && !this.skillsAcceptSessionsToken) throw new FakeHttpError(403, 'permission_error', 'the skills API accepts the environment key only');
      const versions = this.skills.get(parts[2]!);
      if (!versions) throw notFound(`skill ${parts[2]} not found`);
      if (parts.length === 4) {
        return sendJson(res, 200, { data: [...versions.keys()].map((v) => ({ type: 'skill_version', version: v, skill_id: parts[2], name: versions.get(v)!.name })), next_page: null });
      }
      const v = versions.get(parts[4]!);
      if (!v) throw notFound(`skill version ${parts[4]} not found`);
      if (parts[5] === 'content') {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': v.archive.length });
        return void res.end(v.archive);
      }
      return sendJson(res, 200, { type: 'skill_version', id: `skillver_${parts[4]}`, skill_id: parts[2], version: parts[4], name: v.name, description: '', directory: v.name, created_at: new Date().toISOString() });
    }

    // /v1/memory_stores/{id}/memories[/{mem}]
    if (parts[0] === 'v1' && parts[1] === 'memory_stores' && parts[3] === 'memories') {
      this.#hit('memory');
      if (who.kind !== 'session') throw new FakeHttpError(401, 'authentication_error', 'memory stores need the per-session sessions token, not the environment key');
      const session = this.sessions.get(who.sessionId)!;
      const attach = session.init.memoryStores?.find((s) => s.memory_store_id === parts[2]);
      if (!attach) throw new FakeHttpError(403, 'permission_error', 'memory store not attached to this session');
      const store = this.memoryStores.get(parts[2]!)!;
      const write = method !== 'GET';
      if (write && attach.access === 'read_only') throw new FakeHttpError(403, 'permission_error', 'memory store is attached read_only');
      const memId = parts[4];
      if (!memId && method === 'GET') return sendJson(res, 200, store.list(q));
      if (!memId && method === 'POST') return sendJson(res, 200, store.view(store.create((await readBody(req)) as never), true));
      if (memId && method === 'GET') return sendJson(res, 200, store.view(store.get(memId), true));
      if (memId && method === 'POST') return sendJson(res, 200, store.view(store.update(memId, (await readBody(req)) as never), true));
      if (memId && method === 'DELETE') {
        store.delete(memId, q.get('expected_content_sha256'));
        return sendJson(res, 200, { type: 'memory_deleted', id: memId });
      }
    }
    throw notFound(`no route for ${method} ${url.pathname}`);
  }
}
