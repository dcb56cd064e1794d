import { chmod, chown, lstat, mkdir, readdir, readlink, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { RunnerError } from '../../util/errors.js';
import { noopLogger, type Logger } from '../../util/logger.js';
import type { DriverStatus, Sandbox, SandboxDriver, SandboxSpec } from '../driver.js';
import { CgroupManager } from '../cgroups/cgroups.js';
import { resolveImage } from '../images/images.js';
import type { RootEntry } from './bwrap-args.js';
import { BwrapSandbox } from './bwrap-sandbox.js';
import { hostFallbackRoot, writeFallbackEtc } from './host-fallback.js';
import { hostMounts } from './host-mounts.js';
import { MountHelper } from './workspace-mount.js';
import { SandboxSpawner } from './sandbox-spawner.js';
import { WAITER_ARGV } from './waiting-process.js';
import { sandboxSeccompFilter } from './seccomp-filter.js';
import { closeInheritedFds } from './inherited-fds.js';
import type { EgressProxy } from '../egress/egress-proxy.js';
import { EGRESS_DIR_INSIDE, setupSandboxEgress, type SandboxEgress } from '../egress/sandbox-egress.js';

/** How limits are enforced: cgroups (memory, processes, CPU) or rlimits only. */
export type LimitEnforcement = 'cgroups-v1' | 'cgroups-v2' | 'rlimits';

export interface BwrapDriverOptions {
  /** The sandbox-images folder (image definitions). */
  imagesDir: string;
  /** Where built images are; default `<imagesDir>/out`. */
  imagesOutDir?: string;
  /** Host dir under which each sandbox's workspace is made (created 0711). */
  workRoot: string;
  logger?: Logger;
  /** The bwrap binary. Default `bwrap` from PATH. */
  bwrapPath?: string;
  /**
   * `auto` (default): cgroups when this process may write them, else rlimits.
   * `rlimits` forces the fallback (used by tests of it).
   */
  limits?: 'auto' | 'cgroups' | 'rlimits';
  /** cgroup folder for the sandboxes, relative to each hierarchy root. Default `sandbox-runner`. */
  cgroupParent?: string;
  cgroupMountRoot?: string;
  /**
   * When running as root, each sandbox runs as its own unprivileged host uid,
   * `hostUidBase + hash(id) % 50_000_000` (the next free one when a live
   * sandbox of this driver has it). Default 1_900_000_000, far above the
   * subordinate-id ranges that /etc/subuid hands out.
   */
  hostUidBase?: number;
  /** How often a running process's limits are checked, ms. Default 100. */
  monitorIntervalMs?: number;
  /** The runner's egress proxy, for sandboxes with `network.mode: 'proxy'`. */
  egress?: EgressProxy;
  /**
   * Starts the pre-started waiters of spare sandboxes (see sandbox-spawner.ts).
   * Default: a spawner of the driver's own; `false`: the runner spawns them itself.
   */
  spawner?: SandboxSpawner | false;
}

const SANDBOX_ID = /^[a-z0-9][a-z0-9-]{0,47}$/;
/** Where every sandbox mounts something: they must exist in an image bound as `/` in one piece. */
const FIXED_MOUNT_POINTS = ['/workspace', '/tmp', '/proc', '/dev'];
/** The shell a spare's pre-started waiter runs (see waiting-process.ts). */
const WAITER_SHELL = WAITER_ARGV[0]!;

/**
 * The bubblewrap driver: Linux namespaces, a read-only image root, a private
 * workspace. Limits:
 *   - as root: a cgroup per sandbox (v1 or v2) for memory, processes and CPU;
 *     the workspace is a tmpfs capped at `workspaceBytes` (its pages count
 *     toward the sandbox's memory too); the sandbox runs as its own host uid.
 *   - otherwise: rlimits (RLIMIT_NPROC — per user, RLIMIT_AS, RLIMIT_FSIZE for
 *     single files) and the runner's own uid; weaker, and said so by probe().
 */
export class BwrapDriver implements SandboxDriver {
  readonly name = 'bwrap' as const;
  private readonly logger: Logger;
  private readonly bwrapPath: string;
  private readonly cgroups: CgroupManager;
  private readonly warnedImages = new Set<string>();
  /** Images already warned about for having no shell for a spare's waiter. */
  private readonly warnedNoShell = new Set<string>();
  /** Host uids of this driver's sandboxes not yet fully disposed (see takeHostUid). */
  private readonly liveUids = new Set<number>();
  private readonly rootEntries = new Map<string, Promise<RootEntry[]>>();
  /** Whether a path exists in an image, per `rootfs + path`: built images do not change (as rootEntries). */
  private readonly imagePaths = new Map<string, Promise<boolean>>();
  private workRootChecked: Promise<void> | undefined;
  /** Runs the workspaces' mount/umount (one small helper process, started on first use). */
  private readonly mounts = new MountHelper();
  /** Starts pre-started waiters in a small helper process, so the runner does not fork for them. */
  private readonly spawner: SandboxSpawner | undefined;
  /** The seccomp program of every sandbox (no kernel keyrings, io_uring, userfaultfd, perf events), the same bytes for all. */
  private readonly seccomp = sandboxSeccompFilter();

  constructor(private readonly options: BwrapDriverOptions) {
    this.logger = options.logger ?? noopLogger;
    // Before anything is spawned (the spawner, the mount helper, any bwrap):
    // an fd the runner inherited would be passed into every sandbox.
    const inherited = closeInheritedFds();
    if (inherited.length > 0) {
      this.logger.warn(
        { fds: inherited },
        'closed file descriptors the runner inherited without close-on-exec: bwrap would pass them into every sandbox; start the runner without them',
      );
    }
    this.bwrapPath = options.bwrapPath ?? 'bwrap';
    this.spawner = options.spawner === false ? undefined : (options.spawner ?? new SandboxSpawner({ logger: this.logger }));
    this.cgroups = new CgroupManager({
      logger: this.logger,
      ...(options.cgroupParent ? { parent: options.cgroupParent } : {}),
      ...(options.cgroupMountRoot ? { mountRoot: options.cgroupMountRoot } : {}),
    });
  }

  private get isRoot(): boolean {
    return process.getuid?.() === 0;
  }

  /** Which mechanism enforces memory/process/CPU limits here. */
  async limitEnforcement(): Promise<LimitEnforcement> {
    if (this.options.limits === 'rlimits' || !this.isRoot) return 'rlimits';
    const support = await this.cgroups.detect();
    if (support.available) return support.version === 'v2' ? 'cgroups-v2' : 'cgroups-v1';
    if (this.options.limits === 'cgroups') {
      throw new RunnerError('driver_unavailable', `${support.reason}; run the runner as root with cgroups mounted writable, or set limits to auto`);
    }
    return 'rlimits';
  }

  /**
   * Removes what a previous runner left behind (killed processes, cgroups,
   * mounted workspaces under workRoot). Call once at start, before create().
   * Only one runner may use a workRoot and cgroup parent. `parentToo` also
   * removes the cgroup parent (tests, uninstall). Returns the ids removed.
   */
  async cleanupOrphans(options: { parentToo?: boolean } = {}): Promise<string[]> {
    const removed = new Set<string>();
    if (this.isRoot && this.options.limits !== 'rlimits') {
      for (const id of await this.cgroups.cleanupOrphans(options)) removed.add(id);
    }
    const entries = await readdir(this.options.workRoot, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      if (!e.isDirectory() || !SANDBOX_ID.test(e.name)) continue;
      const dir = path.join(this.options.workRoot, e.name);
      await execa('umount', ['-l', path.join(dir, 'workspace')], { reject: false });
      await rm(dir, { recursive: true, force: true });
      removed.add(e.name);
    }
    if (removed.size > 0) this.logger.info({ sandboxes: [...removed] }, 'removed orphaned bwrap sandboxes');
    return [...removed];
  }

  /**
   * At a clean stop, once every sandbox is disposed: ends the spawner helper
   * and removes this runner's cgroup parent, with anything still under it or
   * under workRoot, so that a stopped runner leaves nothing on the host.
   */
  async close(): Promise<void> {
    await this.spawner?.dispose();
    await this.cleanupOrphans({ parentToo: true });
  }

  async probe(): Promise<DriverStatus> {
    const fix = 'apt-get install -y bubblewrap';
    const r = await execa(this.bwrapPath, ['--unshare-all', '--ro-bind', '/', '/', '--', '/bin/true'], { reject: false, timeout: 10_000 });
    if (r.failed) {
      const missing = (r as { code?: string }).code === 'ENOENT';
      return missing
        ? { available: false, message: `bubblewrap (${this.bwrapPath}) is not installed`, fix }
        : {
            available: false,
            message: `bubblewrap cannot make namespaces here (${String(r.stderr).trim().slice(0, 200)}); allow unprivileged user namespaces`,
            fix: 'sysctl -w kernel.unprivileged_userns_clone=1 user.max_user_namespaces=10000',
          };
    }
    const limits = await this.limitEnforcement().catch((err: Error) => err.message);
    const image = await resolveImage('base', this.options.imagesDir, this.options.imagesOutDir);
    const notes = [`limits by ${limits}`, this.seccomp ? 'keyring, io_uring, userfaultfd and perf_event_open calls refused by seccomp' : `no seccomp filter for ${process.arch}`, image ? 'base image built' : 'base image not built, using a read-only view of the host /usr (run sandbox-images/base/build.sh)'];
    // Chosen in config, rlimits are what the operator asked for; as a fallback they deserve a warning.
    const weaker =
      limits === 'rlimits' && this.options.limits !== 'rlimits'
        ? [
            `limits fall back to rlimits (${this.isRoot ? 'cgroups cannot be written' : 'the runner is not root'}): memory is bounded per process (address space), ` +
              'processes per host user (shared by every sandbox and the runner itself), workspace size per file, and CPU not at all; ' +
              'run the runner as root with cgroups writable for cgroup limits',
          ]
        : [];
    return { available: true, message: notes.join('; '), ...(weaker.length ? { warnings: weaker } : {}) };
  }

  async create(spec: SandboxSpec, signal?: AbortSignal): Promise<Sandbox> {
    signal?.throwIfAborted();
    if (!SANDBOX_ID.test(spec.id)) {
      throw new RunnerError('invalid_input', `sandbox id ${JSON.stringify(spec.id)} is not valid; use 1-48 characters of a-z, 0-9 and -`);
    }
    const enforcement = await this.limitEnforcement();
    const rootfs = await resolveImage(spec.image, this.options.imagesDir, this.options.imagesOutDir);
    if (!rootfs && !this.warnedImages.has(spec.image)) {
      this.warnedImages.add(spec.image);
      this.logger.warn(
        { image: spec.image },
        `sandbox image ${spec.image} is not built: bwrap sandboxes use a read-only view of the host's /usr instead; build it with sandbox-runner images build ${spec.image} (or sandbox-images/${spec.image}/build.sh)`,
      );
    }

    await mkdir(this.options.workRoot, { recursive: true, mode: 0o711 });
    if (hostUidFor(this.isRoot, this.options.hostUidBase, spec.id) !== undefined) {
      this.workRootChecked ??= assertTraversable(this.options.workRoot);
      await this.workRootChecked;
    }
    const sandboxDir = path.join(this.options.workRoot, spec.id);
    const workspaceDir = path.join(sandboxDir, 'workspace');
    await mkdir(sandboxDir, { mode: 0o711 }).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'EEXIST') throw new RunnerError('invalid_input', `a sandbox with id ${spec.id} exists already; use a new id`);
      throw err;
    });
    await chmod(sandboxDir, 0o711);
    await mkdir(workspaceDir, { mode: 0o700 });

    const hostUid = this.takeHostUid(spec.id);
    let workspaceMounted = false;
    const unmountWorkspace = async (): Promise<void> => {
      if (workspaceMounted) await this.mounts.unmountWorkspace(workspaceDir);
      workspaceMounted = false;
    };
    const cleanup: Array<() => Promise<unknown>> = [];
    if (hostUid !== undefined) cleanup.push(async () => this.liveUids.delete(hostUid));
    let egress: SandboxEgress | undefined;
    try {
      if (this.isRoot) {
        // A tmpfs per workspace: a real cap on its size, and nothing left on disk after dispose.
        await this.mounts.mountWorkspace(workspaceDir, spec.limits.workspaceBytes, hostUid, signal);
        workspaceMounted = true;
        cleanup.push(unmountWorkspace);
      }
      const roBinds: Array<[string, string]> = [];
      let root: RootEntry[];
      if (rootfs) {
        root = await this.imageRoot(rootfs);
      } else {
        root = await hostFallbackRoot();
        const etc = await writeFallbackEtc(path.join(sandboxDir, 'etc'));
        root.push({ name: 'etc', hostPath: etc.dir });
        roBinds.push(...etc.binds);
      }
      await this.placeFiles(spec, sandboxDir, workspaceDir, hostUid, roBinds);
      const binds: Array<[string, string]> = [];
      for (const m of await hostMounts(spec)) (m.readOnly ? roBinds : binds).push([m.hostPath, m.path]);
      egress = await setupSandboxEgress(spec.network, spec.id, sandboxDir, this.options.egress);
      if (egress) {
        cleanup.push(egress.listener.close);
        roBinds.push([egress.hostDir, EGRESS_DIR_INSIDE]);
      }
      // One read-only bind of the whole image is ~10 mounts cheaper per process
      // than the tmpfs layout; it needs every mount point to exist in the image.
      let rootDir: string | undefined;
      if (rootfs) {
        const points = [...FIXED_MOUNT_POINTS, ...[...roBinds, ...binds].map(([, inside]) => inside)];
        const present = await Promise.all(points.map((p) => this.imageHas(rootfs, p)));
        if (present.every(Boolean)) rootDir = rootfs;
      }

      const cgroup = enforcement === 'rlimits' ? undefined : await this.cgroups.create(spec.id, spec.limits);
      if (cgroup) cleanup.push(() => cgroup.remove());
      // Under cgroups the controllers are the limits (and say when they were hit);
      // prlimit would only cost one more exec per process. Without them, rlimits:
      // RLIMIT_NPROC counts per user, RLIMIT_AS is virtual memory, RLIMIT_FSIZE per file.
      const rlimits = cgroup
        ? []
        : ['--core=0', `--nproc=${spec.limits.maxProcesses}`, `--as=${spec.limits.memoryBytes}`, `--fsize=${spec.limits.workspaceBytes}`];

      // Without the waiter's shell in the image a spare cannot pre-start its
      // process: bwrap would fail to exec it only once a call was handed to it.
      const waiterShell = rootfs ? await this.imageHas(rootfs, WAITER_SHELL) : true;
      if (!waiterShell && !this.warnedNoShell.has(spec.image)) {
        this.warnedNoShell.add(spec.image);
        this.logger.warn(
          { image: spec.image },
          `image ${spec.image} has no ${WAITER_SHELL}: its spare sandboxes cannot start their process ahead, and each call starts bwrap itself (slower); add bash to the image`,
        );
      }
      this.logger.debug({ sandbox: spec.id, image: rootfs ?? 'host', limits: enforcement }, 'bwrap sandbox created');
      return new BwrapSandbox({
        id: spec.id,
        bwrapPath: this.bwrapPath,
        sandboxDir,
        workspaceDir,
        workspaceMounted,
        root,
        rootDir,
        roBinds,
        binds,
        // Proxy mode keeps the sandbox network-less too: the proxy comes in through a unix socket.
        shareNet: false,
        env: { ...egress?.env, ...spec.env },
        egress,
        seccomp: this.seccomp,
        limits: spec.limits,
        cgroup,
        hostUid,
        rlimits,
        monitorIntervalMs: this.options.monitorIntervalMs ?? 100,
        logger: this.logger,
        waiterShell,
        unmountWorkspace,
        ...(hostUid !== undefined ? { releaseHostUid: () => this.liveUids.delete(hostUid) } : {}),
        spawner: this.spawner,
      });
    } catch (err) {
      for (const undo of cleanup.reverse()) await undo().catch(() => undefined);
      await rm(sandboxDir, { recursive: true, force: true }).catch(() => undefined);
      throw err;
    }
  }

  /**
   * The host uid of a new sandbox: the one its id hashes to, or the next free
   * one when a live sandbox of this driver has that. Two sandboxes on one uid
   * stay apart by their namespaces, but share what the kernel counts per user
   * (inotify instances and watches, pending signals, message queue bytes), so
   * one could use up the other's. Held until the sandbox is fully disposed.
   */
  private takeHostUid(id: string): number | undefined {
    const first = hostUidFor(this.isRoot, this.options.hostUidBase, id);
    if (first === undefined) return undefined;
    const base = this.options.hostUidBase ?? DEFAULT_HOST_UID_BASE;
    let uid = first;
    while (this.liveUids.has(uid)) uid = base + ((uid - base + 1) % HOST_UID_SPAN);
    this.liveUids.add(uid);
    return uid;
  }

  /**
   * Whether `inside` exists in the image (a mount point bwrap can use). The
   * fixed mount points are cached per image; a call's own (injected files,
   * host mounts) are looked up each time, so the cache stays bounded.
   */
  private imageHas(rootfs: string, inside: string): Promise<boolean> {
    const look = (): Promise<boolean> => lstat(path.join(rootfs, inside)).then(() => true, () => false);
    if (!FIXED_MOUNT_POINTS.includes(inside) && inside !== WAITER_SHELL) return look();
    const key = `${rootfs}\0${inside}`;
    let found = this.imagePaths.get(key);
    if (!found) {
      found = look();
      this.imagePaths.set(key, found);
    }
    return found;
  }

  /** The image's top-level entries, bound read-only (symlinks kept as symlinks); cached per rootfs. */
  private imageRoot(rootfs: string): Promise<RootEntry[]> {
    let entries = this.rootEntries.get(rootfs);
    if (!entries) {
      entries = (async () => {
        const out: RootEntry[] = [];
        for (const name of (await readdir(rootfs)).sort()) {
          // /run and /mnt (empty in an image) stay on the tmpfs root, so mount
          // points under them (the egress folder, host mounts) can be made.
          if (['proc', 'dev', 'tmp', 'workspace', 'sys', 'run', 'mnt'].includes(name)) continue;
          const p = path.join(rootfs, name);
          const st = await lstat(p);
          out.push(st.isSymbolicLink() ? { name, symlink: await readlink(p) } : { name, hostPath: p });
        }
        return out;
      })();
      this.rootEntries.set(rootfs, entries);
    }
    return entries.then((e) => [...e]);
  }

  /** Injected files: written into the workspace, or bound read-only from the sandbox dir. */
  private async placeFiles(spec: SandboxSpec, sandboxDir: string, workspaceDir: string, hostUid: number | undefined, roBinds: Array<[string, string]>): Promise<void> {
    let n = 0;
    for (const file of spec.files ?? []) {
      const inside = path.posix.normalize(file.path);
      if (!path.posix.isAbsolute(inside) || inside.includes('\0')) {
        throw new RunnerError('invalid_input', `injected file path ${JSON.stringify(file.path)} must be absolute`);
      }
      let host: string;
      if (inside === '/workspace' || inside.startsWith('/workspace/')) {
        host = path.join(workspaceDir, path.posix.relative('/workspace', inside));
        await mkdir(path.dirname(host), { recursive: true });
      } else {
        await mkdir(path.join(sandboxDir, 'files'), { recursive: true, mode: 0o711 });
        host = path.join(sandboxDir, 'files', String(n++));
        roBinds.push([host, inside]);
      }
      await writeFile(host, file.content, { mode: file.mode });
      await chmod(host, file.mode);
      if (hostUid !== undefined) await chown(host, hostUid, hostUid);
    }
  }
}

const DEFAULT_HOST_UID_BASE = 1_900_000_000;
const HOST_UID_SPAN = 50_000_000;

/** The host uid sandbox `id` hashes to when the runner is root (exported for tests that need two ids on one uid). */
export function hostUidFor(isRoot: boolean, base: number | undefined, id: string): number | undefined {
  return isRoot ? (base ?? DEFAULT_HOST_UID_BASE) + (fnv1a(id) % HOST_UID_SPAN) : undefined;
}

/** bwrap runs as the sandbox's own uid: every folder down to workRoot must let others pass (x). */
async function assertTraversable(dir: string): Promise<void> {
  let d = path.resolve(dir);
  for (;;) {
    const st = await stat(d);
    if ((st.mode & 0o001) === 0) {
      throw new RunnerError('config_invalid', `sandbox work root ${dir} is below ${d}, which other users cannot enter; run chmod o+x ${d} or choose another work root`);
    }
    const up = path.dirname(d);
    if (up === d) return;
    d = up;
  }
}

/** FNV-1a, 32 bits: a stable spread of sandbox ids over host uids. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}
