import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BwrapDriver } from '../../src/sandbox/bwrap/bwrap-driver.js';
import { DockerDriver } from '../../src/sandbox/docker/docker-driver.js';
import type { OutputStream, Sandbox, SandboxLimits, SandboxMount } from '../../src/sandbox/driver.js';
import { DEFAULT_LIMITS } from '../../src/sandbox/driver.js';
import type { IsolatePool } from '../../src/sandbox/isolate/isolate-pool.js';
import type { SessionState, ToolContext, ToolDefinition, ToolOutcome } from '../../src/tools/tool.js';
import { noopLogger } from '../../src/util/logger.js';

// The executor's own per-session state, so tools are tested with what the daemon gives them.
export { MemorySessionState } from '../../src/executor/session-manager.js';
import { MemorySessionState } from '../../src/executor/session-manager.js';

/** One chunk a tool emitted. */
export interface Emitted {
  stream: OutputStream;
  chunk: Buffer;
}

export interface TestToolContext extends ToolContext {
  /** Everything emitted so far, in order. */
  emitted: Emitted[];
  /** Cancels the call (aborts `signal` with a RunnerError like the executor does). */
  cancel(): void;
}

export interface ToolContextOptions {
  sandbox: Sandbox;
  session?: SessionState;
  timeoutMs?: number;
  env?: Record<string, string>;
  /** Called with each emitted chunk; awaited (lets a test observe streaming). */
  onEmit?: (e: Emitted) => void | Promise<void>;
}

/** A ToolContext over a real sandbox and a real in-memory session. */
export function makeToolContext(options: ToolContextOptions): TestToolContext {
  const controller = new AbortController();
  const emitted: Emitted[] = [];
  let n = 0;
  return {
    callId: `call-${process.pid}-${++n}`,
    signal: controller.signal,
    timeoutMs: options.timeoutMs ?? 30_000,
    logger: noopLogger,
    emitted,
    async emit(stream, chunk) {
      const e = { stream, chunk: Buffer.from(chunk) };
      emitted.push(e);
      await options.onEmit?.(e);
    },
    sandbox: () => Promise.resolve(options.sandbox),
    isolates: undefined as unknown as IsolatePool,
    session: options.session ?? new MemorySessionState(),
    env: options.env ?? {},
    cancel() {
      controller.abort(new Error('cancelled by test'));
    },
  };
}

/** Validates `input` with the tool's schema (as the runner does) and runs it. */
export async function callTool<I>(tool: ToolDefinition<I>, input: unknown, ctx: ToolContext): Promise<ToolOutcome> {
  return tool.run(tool.inputSchema.parse(input), ctx);
}

/** The result's text (all text blocks joined). */
export function outcomeText(outcome: ToolOutcome): string {
  return typeof outcome.content === 'string' ? outcome.content : outcome.content.map((b) => b.text).join('\n');
}

/**
 * A workspace-only sandbox over a real temporary directory, for the tools that
 * work on the workspace from the host (editor, files). It runs no processes.
 */
export async function hostWorkspace(): Promise<Sandbox & { cleanup(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'sr-ws-'));
  const refuse = (): never => {
    throw new Error('this test sandbox runs no processes; use the bwrap driver');
  };
  return {
    id: path.basename(dir).toLowerCase(),
    driver: 'bwrap',
    workspaceDir: dir,
    limits: DEFAULT_LIMITS,
    spawn: () => Promise.resolve(refuse()),
    run: () => Promise.resolve(refuse()),
    dispose: () => Promise.resolve(),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

/** A real bwrap sandbox (base image) with its driver, and how to remove both. */
export interface TestBwrap {
  sandbox: Sandbox;
  dispose(): Promise<void>;
}

let bwrapCounter = 0;

/** Creates a real bubblewrap sandbox for tool tests; `dispose` removes it and its cgroups. */
export async function bwrapSandbox(limits: Partial<SandboxLimits> = {}, extra: { mounts?: SandboxMount[] } = {}): Promise<TestBwrap> {
  const work = await mkdtemp(path.join(tmpdir(), 'sr-tools-'));
  // Sandboxes run as their own host uid: the way down to their workspaces must be traversable.
  await chmod(work, 0o711);
  const driver = new BwrapDriver({
    imagesDir: path.resolve(import.meta.dirname, '../../sandbox-images'),
    workRoot: path.join(work, 'sandboxes'),
    cgroupParent: `sandbox-runner-test-${process.pid}-tools`,
  });
  const sandbox = await driver.create({
    id: `tools-${process.pid}-${++bwrapCounter}`,
    image: 'base',
    limits: { ...DEFAULT_LIMITS, wallTimeMs: 60_000, memoryBytes: 256 * 1024 * 1024, ...limits },
    network: { mode: 'none' },
    env: { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: '/workspace', LANG: 'C.UTF-8' },
    ...(extra.mounts ? { mounts: extra.mounts } : {}),
  });
  return {
    sandbox,
    async dispose() {
      try {
        await sandbox.dispose();
        await driver.cleanupOrphans({ parentToo: true });
      } finally {
        await rm(work, { recursive: true, force: true });
      }
    },
  };
}

/** Creates a real Docker sandbox (base image) for tool tests; `dispose` removes it. */
export async function dockerSandbox(limits: Partial<SandboxLimits> = {}): Promise<TestBwrap> {
  const work = await mkdtemp(path.join(tmpdir(), 'sr-tools-dk-'));
  await chmod(work, 0o711);
  const driver = new DockerDriver({ workRoot: path.join(work, 'sandboxes'), owner: `tools-test-${process.pid}` });
  const sandbox = await driver.create({
    id: `tools-dk-${process.pid}-${++bwrapCounter}`,
    image: 'base',
    limits: { ...DEFAULT_LIMITS, wallTimeMs: 60_000, memoryBytes: 256 * 1024 * 1024, ...limits },
    network: { mode: 'none' },
    env: { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: '/workspace', LANG: 'C.UTF-8' },
  });
  return {
    sandbox,
    async dispose() {
      try {
        await sandbox.dispose();
        await driver.cleanupOrphans();
      } finally {
        await rm(work, { recursive: true, force: true });
      }
    },
  };
}
