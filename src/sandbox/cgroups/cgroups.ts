import { readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { access, mkdir, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { noopLogger, type Logger } from '../../util/logger.js';
import type { CgroupTarget } from './cgroup-self-move.js';

/**
 * Per-sandbox cgroups, for cgroup v2 (unified) and v1 (one hierarchy a
 * controller), detected at runtime. Bubblewrap has no limits of its own; the
 * cgroup holds memory (swap none), processes and CPU of everything a sandbox
 * starts, tells afterwards which limit was hit, and kills the whole tree.
 */
export type CgroupVersion = 'v2' | 'v1';

export interface CgroupLimits {
  memoryBytes: number;
  maxProcesses: number;
  cpus: number;
}

/** Counters of limit hits since the cgroup was made. */
export interface CgroupEvents {
  /** Processes the kernel OOM-killed because of the memory limit. */
  oomKills: number;
  /** Forks refused because of the process limit. */
  pidsMax: number;
}

export interface CgroupManagerOptions {
  /** Mount point of the cgroup filesystems. Default `/sys/fs/cgroup`. */
  mountRoot?: string;
  /** Folder (relative to each hierarchy's root) that holds the sandboxes' cgroups. Default `sandbox-runner`. */
  parent?: string;
  logger?: Logger;
}

/** What applies on this host, as found by detect(). */
export type CgroupSupport = { available: true; version: CgroupVersion } | { available: false; reason: string };

const V1_CONTROLLERS = ['memory', 'pids', 'cpu'] as const;

/** Makes and removes the cgroups of sandboxes. */
export class CgroupManager {
  private readonly mountRoot: string;
  private readonly parent: string;
  private readonly logger: Logger;
  private support: Promise<CgroupSupport> | undefined;

  constructor(options: CgroupManagerOptions = {}) {
    this.mountRoot = options.mountRoot ?? '/sys/fs/cgroup';
    this.parent = options.parent ?? 'sandbox-runner';
    this.logger = options.logger ?? noopLogger;
  }

  /** Finds the cgroup version and whether this process may make cgroups; cached. */
  detect(): Promise<CgroupSupport> {
    this.support ??= this.detectOnce();
    return this.support;
  }

  private async detectOnce(): Promise<CgroupSupport> {
    const root = this.mountRoot;
    try {
      const controllers = await readFile(path.join(root, 'cgroup.controllers'), 'utf8').catch(() => undefined);
      if (controllers !== undefined) {
        const have = controllers.trim().split(/\s+/);
        for (const c of ['memory', 'pids', 'cpu']) {
          if (!have.includes(c)) return { available: false, reason: `cgroup v2 controller ${c} is not enabled at ${root}` };
        }
        // Controllers must be enabled on each level down to the sandbox's cgroup.
        const parentDir = path.join(root, this.parent);
        await writeFile(path.join(root, 'cgroup.subtree_control'), '+memory +pids +cpu');
        await mkdir(parentDir, { recursive: true });
        await writeFile(path.join(parentDir, 'cgroup.subtree_control'), '+memory +pids +cpu');
        return { available: true, version: 'v2' };
      }
      for (const c of V1_CONTROLLERS) {
        await access(path.join(root, c, 'cgroup.procs'));
        await mkdir(path.join(root, c, this.parent), { recursive: true });
      }
      return { available: true, version: 'v1' };
    } catch (err) {
      const reason = `cgroups under ${root} cannot be written (${(err as Error).message}); limits fall back to rlimits`;
      this.logger.debug({ err }, reason);
      return { available: false, reason };
    }
  }

  /**
   * Kills and removes every sandbox cgroup under the parent: the leftovers of a
   * runner that died. Only one runner may use a parent. With `parentToo`, the
   * parent goes as well (tests, uninstall). Returns the ids removed.
   */
  async cleanupOrphans(options: { parentToo?: boolean } = {}): Promise<string[]> {
    const support = await this.detect();
    if (!support.available) return [];
    const probeDir = support.version === 'v2' ? path.join(this.mountRoot, this.parent) : path.join(this.mountRoot, 'pids', this.parent);
    const entries = await readdir(probeDir, { withFileTypes: true }).catch(() => []);
    const ids = entries.filter((e) => e.isDirectory()).map((e) => e.name);
    for (const id of ids) {
      await new SandboxCgroup(support.version, this.mountRoot, this.parent, id).remove();
      this.logger.info({ sandbox: id }, 'removed orphaned sandbox cgroup');
    }
    if (options.parentToo) {
      const parents = support.version === 'v2' ? [path.join(this.mountRoot, this.parent)] : V1_CONTROLLERS.map((c) => path.join(this.mountRoot, c, this.parent));
      for (const d of parents) await rmdir(d).catch(() => undefined);
      this.support = undefined;
    }
    return ids;
  }

  /** Makes the cgroup of sandbox `id` with its limits, or undefined when cgroups are not usable. */
  async create(id: string, limits: CgroupLimits): Promise<SandboxCgroup | undefined> {
    const support = await this.detect();
    if (!support.available) return undefined;
    const cg = new SandboxCgroup(support.version, this.mountRoot, this.parent, id);
    await cg.setup(limits);
    return cg;
  }
}

/** What a wrapper writes to put itself into a sandbox's cgroups (see SandboxCgroup.join). */
export interface CgroupJoin {
  files: string[];
  /** `pid`: its own pid (`cgroup.procs`); `current-thread`: `0`, meaning the writing thread (v1 `tasks`). */
  write: 'pid' | 'current-thread';
}

/**
 * Removes a cgroup parent's folders (v2: one; v1: one per controller) when
 * they are empty; anything else is left as it is. For probes that made a
 * parent of their own (doctor), never for a parent a runner may be using.
 */
export async function removeEmptyCgroupParent(parent: string, mountRoot = '/sys/fs/cgroup'): Promise<void> {
  const dirs = [path.join(mountRoot, parent), ...V1_CONTROLLERS.map((c) => path.join(mountRoot, c, parent))];
  await Promise.all(dirs.map((d) => rmdir(d).catch(() => undefined)));
}

/** The cgroup (v2) or cgroups (v1, one per controller) of one sandbox. */
export class SandboxCgroup {
  constructor(
    readonly version: CgroupVersion,
    private readonly mountRoot: string,
    private readonly parent: string,
    readonly id: string,
  ) {}

  private dir(controller?: (typeof V1_CONTROLLERS)[number]): string {
    return this.version === 'v2'
      ? path.join(this.mountRoot, this.parent, this.id)
      : path.join(this.mountRoot, controller ?? 'pids', this.parent, this.id);
  }

  private dirs(): string[] {
    return this.version === 'v2' ? [this.dir()] : V1_CONTROLLERS.map((c) => this.dir(c));
  }

  /**
   * The `cgroup.procs` files a process must write its pid into to join: the
   * wrapper does so before it execs bwrap, so nothing forks outside the limits.
   */
  get procsFiles(): string[] {
    return this.dirs().map((d) => path.join(d, 'cgroup.procs'));
  }

  /**
   * How a process joins before it execs bwrap: the files to write and what to
   * write. On v1 the wrapper writes `0` (itself) into each `tasks` file: a
   * one-thread move skips the global threadgroup lock, whose write side waits
   * for an RCU grace period (~10–20 ms on an otherwise idle host) on every
   * `cgroup.procs` write. The wrapper is a single-threaded shell, so moving its
   * thread moves the whole process, and everything it starts inherits the
   * cgroups. v2 has no such move across domains, so it writes its pid to
   * `cgroup.procs`.
   */
  get join(): CgroupJoin {
    return this.version === 'v2'
      ? { files: this.procsFiles, write: 'pid' }
      : { files: this.dirs().map((d) => path.join(d, 'tasks')), write: 'current-thread' };
  }

  /**
   * The join as the sandbox spawner does it for itself around a spawn (see
   * cgroup-self-move.ts): the same files and writes as {@link join}, with the
   * controller of each and the mount point, so it can find its way back.
   */
  get target(): CgroupTarget {
    return { ...this.join, controllers: this.version === 'v2' ? [''] : [...V1_CONTROLLERS], mountRoot: this.mountRoot };
  }

  async setup(limits: CgroupLimits): Promise<void> {
    for (const d of this.dirs()) await mkdir(d, { recursive: true });
    const mem = String(Math.max(4 * 1024 * 1024, Math.floor(limits.memoryBytes)));
    const pids = String(Math.max(1, Math.floor(limits.maxProcesses)));
    const period = 100_000;
    const quota = Math.max(1000, Math.round(limits.cpus * period));
    // Written synchronously, as events() reads: a few bytes into kernel memory
    // each, where an async write costs three thread-pool round trips (open,
    // write, close) of runner CPU per file, on every sandbox made.
    const optional = (file: string, value: string): void => {
      try {
        writeFileSync(file, value);
      } catch {
        // not there on this kernel or config
      }
    };
    if (this.version === 'v2') {
      const d = this.dir();
      writeFileSync(path.join(d, 'memory.max'), mem);
      optional(path.join(d, 'memory.swap.max'), '0');
      writeFileSync(path.join(d, 'pids.max'), pids);
      writeFileSync(path.join(d, 'cpu.max'), `${quota} ${period}`);
      return;
    }
    writeFileSync(path.join(this.dir('memory'), 'memory.limit_in_bytes'), mem);
    // memsw exists only with swap accounting; without swap there is nothing to cap.
    optional(path.join(this.dir('memory'), 'memory.memsw.limit_in_bytes'), mem);
    writeFileSync(path.join(this.dir('pids'), 'pids.max'), pids);
    writeFileSync(path.join(this.dir('cpu'), 'cpu.cfs_period_us'), String(period));
    writeFileSync(path.join(this.dir('cpu'), 'cpu.cfs_quota_us'), String(quota));
  }

  /**
   * Limit hits so far. Read synchronously: two small cgroupfs files answered
   * from kernel memory in microseconds, while an async read waits for a free
   * libuv thread, which the removal of other sandboxes (rm -r, rmdir retries)
   * may hold for milliseconds — on the path of every run's start and end.
   */
  async events(): Promise<CgroupEvents> {
    const field = async (file: string, key: string): Promise<number> => {
      const text = readSmallFileSync(file);
      const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(text);
      return m ? Number(m[1]) : 0;
    };
    if (this.version === 'v2') {
      return {
        oomKills: await field(path.join(this.dir(), 'memory.events'), 'oom_kill'),
        pidsMax: await field(path.join(this.dir(), 'pids.events'), 'max'),
      };
    }
    return {
      oomKills: await field(path.join(this.dir('memory'), 'memory.oom_control'), 'oom_kill'),
      pidsMax: await field(path.join(this.dir('pids'), 'pids.events'), 'max'),
    };
  }

  /** Pids of every process in the sandbox. Read synchronously, as events() is (a small kernel file). */
  async pids(): Promise<number[]> {
    const text = readSmallFileSync(this.procsFiles[this.version === 'v2' ? 0 : 1]!);
    return text.split('\n').filter(Boolean).map(Number);
  }

  /** SIGKILLs every process in the cgroup, until none is left (a fork bomb races the loop). */
  async killAll(): Promise<void> {
    if (this.version === 'v2') {
      // cgroup.kill (Linux 5.14) kills atomically, forks included.
      const ok = await writeFile(path.join(this.dir(), 'cgroup.kill'), '1').then(() => true, () => false);
      if (ok) return this.waitEmpty();
    }
    for (let round = 0; round < 200; round++) {
      const pids = await this.pids();
      if (pids.length === 0) return;
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      await sleep(5);
    }
  }

  private async waitEmpty(): Promise<void> {
    for (let round = 0; round < 200 && (await this.pids()).length > 0; round++) await sleep(5);
  }

  /** Kills what is left and removes the cgroup. Idempotent. */
  async remove(): Promise<void> {
    await this.killAll();
    for (const d of this.dirs()) {
      // rmdir fails with EBUSY until the kernel has reaped the last task.
      for (let round = 0; round < 100; round++) {
        try {
          // Synchronous: an empty cgroup's rmdir only unlinks it in the kernel (the
          // memory controller's clean-up runs later on its own); on every disposal.
          rmdirSync(d);
          break;
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') break;
          if (code !== 'EBUSY' || round === 99) throw err;
          await sleep(10);
        }
      }
    }
  }
}

/** A cgroupfs or procfs file's text, or '' when it cannot be read (the cgroup is gone). */
function readSmallFileSync(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
