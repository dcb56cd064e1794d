import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { execa } from 'execa';
import { RunnerError } from '../../util/errors.js';
import type { Logger } from '../../util/logger.js';
import type { RunRequest, RunResult, Sandbox, SandboxLimits, SandboxProcess, SpawnOptions } from '../driver.js';
import type { CgroupEvents } from '../cgroups/cgroups.js';
import { runProcess } from '../run-process.js';
import { startDockerExec } from './docker-process.js';

export interface DockerSandboxInit {
  id: string;
  cli: string;
  containerId: string;
  sandboxDir: string;
  workspaceDir: string;
  workspaceMounted: boolean;
  unmountWorkspace: () => Promise<void>;
  env: Record<string, string>;
  limits: SandboxLimits;
  events: (() => Promise<CgroupEvents>) | undefined;
  /** The container's first process, when the engine runs on this host (see DockerExecOptions.initPid). */
  initPid?: number;
  monitorIntervalMs: number;
  logger: Logger;
  /** Runs after the container is gone (closes the egress listener). */
  onDispose?: () => Promise<void>;
}

/** A sandbox container: one per sandbox, commands run in it with `docker exec`. */
export class DockerSandbox implements Sandbox {
  readonly driver = 'docker' as const;
  readonly id: string;
  readonly workspaceDir: string;
  readonly limits: SandboxLimits;
  /** The container's id, for `docker inspect`. */
  readonly containerId: string;
  private readonly live = new Set<SandboxProcess>();
  private disposing: Promise<void> | undefined;

  constructor(private readonly init: DockerSandboxInit) {
    this.id = init.id;
    this.workspaceDir = init.workspaceDir;
    this.limits = init.limits;
    this.containerId = init.containerId;
  }

  async spawn(options: SpawnOptions): Promise<SandboxProcess> {
    if (this.disposing) throw new RunnerError('sandbox_failed', `sandbox ${this.id} is disposed; create a new sandbox`);
    if (options.argv.length === 0) throw new RunnerError('invalid_input', 'argv is empty; give at least the program to run');
    const proc = await startDockerExec({
      cli: this.init.cli,
      containerId: this.containerId,
      execId: randomBytes(6).toString('hex'),
      argv: options.argv,
      cwd: options.cwd ?? '/workspace',
      env: { ...this.init.env, ...options.env },
      events: this.init.events,
      ...(this.init.initPid !== undefined ? { initPid: this.init.initPid } : {}),
      workspaceDir: this.workspaceDir,
      workspaceCapped: this.init.workspaceMounted,
      monitorIntervalMs: this.init.monitorIntervalMs,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    this.live.add(proc);
    void proc.exited.finally(() => this.live.delete(proc));
    return proc;
  }

  async run(request: RunRequest): Promise<RunResult> {
    const startedAt = Date.now();
    const proc = await this.spawn({
      argv: request.argv,
      ...(request.cwd ? { cwd: request.cwd } : {}),
      ...(request.env ? { env: request.env } : {}),
    });
    return runProcess(proc, {
      outputBytes: this.limits.outputBytes,
      wallTimeMs: Math.min(request.timeoutMs ?? this.limits.wallTimeMs, this.limits.wallTimeMs),
      startedAt,
      ...(request.stdin !== undefined ? { stdin: request.stdin } : {}),
      ...(request.onOutput ? { onOutput: request.onOutput } : {}),
      ...(request.signal ? { signal: request.signal } : {}),
    });
  }

  /** Removes the container (killing everything in it), then the workspace. Idempotent. */
  dispose(): Promise<void> {
    this.disposing ??= this.disposeOnce();
    return this.disposing;
  }

  private async disposeOnce(): Promise<void> {
    let first: unknown;
    const r = await execa(this.init.cli, ['rm', '--force', '--volumes', this.containerId], { reject: false });
    if (r.exitCode !== 0 && !/No such container/i.test(String(r.stderr))) {
      first = new RunnerError('sandbox_failed', `container of sandbox ${this.id} was not removed; run docker rm -f ${this.containerId}`, { detail: String(r.stderr) });
    }
    await Promise.all([...this.live].map((p) => p.exited.catch(() => undefined)));
    for (const step of [async () => this.init.onDispose?.(), () => this.init.unmountWorkspace(), () => rm(this.init.sandboxDir, { recursive: true, force: true })]) {
      try {
        await step();
      } catch (err) {
        first ??= err;
      }
    }
    if (first !== undefined) {
      this.init.logger.warn({ err: first, sandbox: this.id }, 'sandbox dispose was incomplete');
      throw first;
    }
  }
}
