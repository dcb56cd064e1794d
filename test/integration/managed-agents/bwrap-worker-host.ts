import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BwrapDriver } from '../../../src/sandbox/bwrap/bwrap-driver.js';
import { DEFAULT_LIMITS, type Sandbox } from '../../../src/sandbox/driver.js';
import type { SessionState, ToolContext, ToolDefinition } from '../../../src/tools/tool.js';
import { agentToolset } from '../../../src/tools/agent-toolset/index.js';
import { noopLogger } from '../../../src/util/logger.js';
import { describeError } from '../../../src/util/errors.js';
import { stripAnthropicEnv, type HostSession, type HostSessionSpec, type HostToolCall, type HostToolResult, type WorkerHost } from '../../../src/managed-agents/worker-host.js';

interface TestSession extends HostSession {
  sandbox: Sandbox;
  state: SessionState & { disposeAll(): Promise<void> };
}

/**
 * A WorkerHost for tests and the demo: the real bubblewrap driver and the
 * agent toolset, with the input check the daemon's dispatcher does. (The
 * daemon's own host adds policy, audit, spans and redaction.)
 */
export class BwrapWorkerHost implements WorkerHost {
  readonly tools = new Map<string, ToolDefinition>(agentToolset().map((t) => [t.name, t]));
  readonly sessions = new Set<TestSession>();
  /** Every call dispatched, for assertions. */
  readonly calls: Array<{ session: string; name: string; isError: boolean }> = [];
  readonly #driver: BwrapDriver;
  readonly #workRoot: string;

  private constructor(workRoot: string) {
    this.#workRoot = workRoot;
    this.#driver = new BwrapDriver({
      imagesDir: path.resolve('sandbox-images'),
      workRoot,
      cgroupParent: `sr-ma-test-${process.pid}-${randomBytes(3).toString('hex')}`,
    });
  }

  static async create(): Promise<BwrapWorkerHost> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'sr-ma-host-'));
    // Each sandbox runs as its own uid and must be able to enter the work root.
    await chmod(dir, 0o711);
    return new BwrapWorkerHost(dir);
  }

  toolNames(): readonly string[] {
    return [...this.tools.keys()];
  }

  async openSession(spec: HostSessionSpec): Promise<HostSession> {
    const id = `ma-${createHash('sha256').update(spec.sessionKey).digest('hex').slice(0, 10)}-${randomBytes(3).toString('hex')}`;
    const sandbox = await this.#driver.create(
      {
        id,
        image: 'base',
        limits: { ...DEFAULT_LIMITS, workspaceBytes: 64 * 1024 * 1024 },
        network: { mode: 'none' },
        // Built from nothing: the runner's own environment (and its ANTHROPIC_* keys) never goes in.
        env: stripAnthropicEnv({ PATH: '/usr/local/bin:/usr/bin:/bin', HOME: '/workspace', LANG: 'C.UTF-8' }),
      },
      spec.signal,
    );
    const values = new Map<string, { dispose(): Promise<void> }>();
    const state = {
      get: <T>(k: string) => values.get(k) as T | undefined,
      set: (k: string, v: { dispose(): Promise<void> }) => void values.set(k, v),
      delete: (k: string) => void values.delete(k),
      disposeAll: async () => {
        for (const v of values.values()) await v.dispose().catch(() => undefined);
        values.clear();
      },
    } as TestSession['state'];
    const session: TestSession = {
      sessionKey: spec.sessionKey,
      workspaceDir: sandbox.workspaceDir,
      sandbox,
      state,
      dispose: async () => {
        if (!this.sessions.delete(session)) return;
        await state.disposeAll();
        await sandbox.dispose();
      },
    };
    this.sessions.add(session);
    return session;
  }

  async dispatch(call: HostToolCall): Promise<HostToolResult> {
    const session = call.session as TestSession;
    const tool = this.tools.get(call.toolUse.name);
    const record = (r: HostToolResult): HostToolResult => {
      this.calls.push({ session: session.sessionKey, name: call.toolUse.name, isError: r.isError });
      return r;
    };
    if (!tool) return record({ content: `unknown tool ${call.toolUse.name}`, isError: true, status: 'failed' });
    const parsed = tool.inputSchema.safeParse(call.toolUse.input);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      return record({ content: `invalid input for ${tool.name}: ${issue?.path.join('.') || 'input'}: ${issue?.message}`, isError: true, status: 'failed' });
    }
    const signal = AbortSignal.any([call.signal, AbortSignal.timeout(call.timeoutMs)]);
    const ctx: ToolContext = {
      callId: call.toolUse.id,
      signal,
      timeoutMs: call.timeoutMs,
      logger: noopLogger,
      emit: async () => undefined,
      sandbox: async () => session.sandbox,
      isolates: undefined as never,
      session: session.state,
      env: {},
    };
    try {
      const out = await tool.run(parsed.data, ctx);
      return record({ content: out.content as HostToolResult['content'], isError: out.isError, status: out.status });
    } catch (err) {
      return record({ content: `Error: ${describeError(err)}`, isError: true, status: 'failed' });
    }
  }

  async close(): Promise<void> {
    for (const s of [...this.sessions]) await s.dispose().catch(() => undefined);
    await this.#driver.cleanupOrphans({ parentToo: true }).catch(() => undefined);
    await rm(this.#workRoot, { recursive: true, force: true });
  }
}
