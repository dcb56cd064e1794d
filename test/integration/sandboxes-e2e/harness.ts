import { chmod, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { CALL_LOG_FILE, parseCallLog } from '../../../src/control-plane/call-store.js';
import { Spine } from '../../helpers/spine.js';
import { waitUntil, type RunningProcess } from '../../helpers/processes.js';

/** A call record as the control plane's HTTP API returns it. */
export interface CallView {
  id: string;
  status: string;
  isError: boolean;
  content: any;
  [k: string]: unknown;
}

/**
 * The real reference control plane (in this process) with one real runner
 * process paired to it, plus the few HTTP calls the sandbox tests make.
 */
export class E2E {
  private constructor(
    readonly spine: Spine,
    readonly runnerId: string,
    readonly stateDir: string,
    readonly runner: RunningProcess,
  ) {}

  /** Where the runner puts sandbox workspaces (`<stateDir>-work`). */
  get workDir(): string {
    return `${this.stateDir}-work`;
  }

  static async start(env: Record<string, string> = {}): Promise<E2E> {
    const spine = await Spine.start();
    try {
      // mkdtemp makes the folder 0700; bwrap sandboxes run as their own host uid
      // and must be able to pass through every folder down to their workspace.
      await chmod(spine.dir, 0o711);
      const { runnerId, stateDir } = await spine.pair();
      // These tests count the sandbox folders a call leaves; the spare sandbox
      // (a folder that is always there) has its own tests in spare.test.ts.
      const runner = await spine.startRunner(runnerId, stateDir, { SANDBOX_RUNNER_SANDBOX__SPARE: 'false', ...env });
      // The control plane lists a runner as connected (and sends to it) a moment
      // before its welcome goes out; a request sent in that window is dropped by
      // the runner's handshake. Its own log line comes after the handshake.
      await runner.waitForOutput(/connected to the control plane/);
      return new E2E(spine, runnerId, stateDir, runner);
    } catch (err) {
      await spine.stop();
      throw err;
    }
  }

  async stop(): Promise<void> {
    await this.spine.stop();
  }

  /** Submits a call and waits for its end (`wait=true`). */
  async call(name: string, input: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<CallView> {
    const r = await this.spine.api.call(this.runnerId, { name, input, ...extra });
    if (r.status !== 200) throw new Error(`call ${name}: HTTP ${r.status} ${r.text}`);
    return r.body as CallView;
  }

  /** Submits a call without waiting (`wait=false`); returns its id. */
  async start(name: string, input: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<string> {
    const r = await this.spine.api.call(this.runnerId, { name, input, ...extra }, '?wait=false');
    if (r.status !== 202) throw new Error(`call ${name}: HTTP ${r.status} ${r.text}`);
    return r.body.id as string;
  }

  /** Reads a call record. */
  async get(id: string): Promise<CallView> {
    return (await this.spine.api.request('GET', `/v1/tool-calls/${id}`)).body as CallView;
  }

  /** Waits until a call has ended (any final status). */
  waitEnded(id: string, timeoutMs = 30_000): Promise<CallView> {
    return waitUntil(async () => {
      const c = await this.get(id);
      return ['completed', 'failed', 'cancelled', 'timed_out', 'refused'].includes(c.status) ? c : undefined;
    }, timeoutMs, `call ${id} to end`);
  }

  /** Waits until a process carrying each marker runs on the host; fails early, with the call's result, if the call ends first. */
  async waitProcesses(id: string, markers: string[]): Promise<void> {
    await waitUntil(async () => {
      let all = true;
      for (const m of markers) if ((await pidsWithMarker(m)).length === 0) all = false;
      if (all) return true;
      const c = await this.get(id);
      if (!['running', 'accepted', 'queued'].includes(c.status)) throw new Error(`call ended before its processes were seen: ${JSON.stringify(c)}`);
      return undefined;
    }, 20_000, `processes ${markers.join(', ')} of call ${id}`);
  }

  /**
   * Waits until the control plane has written the call's acceptance to disk.
   * Its acceptance write is deferred (100 ms) and holds a stale copy of the
   * record: a result stored inside that window (a quick cancel) is overwritten
   * back to `running` (src/control-plane/tool-calls.ts onAccepted; reported).
   */
  waitAcceptedOnDisk(id: string): Promise<true> {
    const file = path.join(this.spine.dir, 'cp', 'calls', CALL_LOG_FILE);
    return waitUntil(async () => (parseCallLog(await readFile(file, 'utf8')).get(id)?.accepted === true ? true : undefined), 20_000, `call ${id} accepted on disk`);
  }

  async openSession(body: Record<string, unknown> = {}): Promise<string> {
    const r = await this.spine.api.request('POST', `/v1/runners/${this.runnerId}/sessions`, body);
    if (r.status !== 201) throw new Error(`open session: HTTP ${r.status} ${r.text}`);
    return r.body.sessionId as string;
  }

  async closeSession(id: string): Promise<number> {
    return (await this.spine.api.request('DELETE', `/v1/sessions/${id}`)).status;
  }

  /** Sandbox folders the runner has under its work dir right now. */
  async sandboxDirs(): Promise<string[]> {
    return (await readdir(this.workDir).catch(() => [] as string[])).filter((n) => n.startsWith('sr-')).sort();
  }
}

/** Whether a host pid is a live process (a zombie, or gone, is not). */
export async function isAlive(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (!stat) return false;
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X';
}

/** Host pids whose command line contains `marker` (a unique string a test put there). */
export async function pidsWithMarker(marker: string): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const cmd = await readFile(path.join('/proc', name, 'cmdline'), 'utf8').catch(() => '');
    if (cmd.includes(marker) && (await isAlive(Number(name)))) pids.push(Number(name));
  }
  return pids;
}

/** Resident set size of a host process, bytes (VmRSS from /proc). */
export async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** The text of a call's content, whether a string or a list of text blocks. */
export function text(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((b: { text?: string }) => b.text ?? '').join('');
  return JSON.stringify(content);
}
