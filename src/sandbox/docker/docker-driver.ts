import { chmod, chown, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { RunnerError } from '../../util/errors.js';
import { noopLogger, type Logger } from '../../util/logger.js';
import type { DriverStatus, Sandbox, SandboxDriver, SandboxSpec } from '../driver.js';
import { cgroupEventsOfPid } from '../cgroups/process-cgroup.js';
import { dockerTagFor } from '../images/images.js';
import { containerRunArgs, LABEL_OWNER, LABEL_SANDBOX } from './docker-args.js';
import { DockerSandbox } from './docker-sandbox.js';
// Shared with the bwrap driver: the same rules for host mounts.
import { hostMounts } from '../bwrap/host-mounts.js';
import { hostUidFor } from '../bwrap/bwrap-driver.js';
import type { EgressProxy } from '../egress/egress-proxy.js';
import { EGRESS_DIR_INSIDE, setupSandboxEgress, type SandboxEgress } from '../egress/sandbox-egress.js';

export interface DockerDriverOptions {
  /** Host dir under which each sandbox's workspace is made (bind-mounted at /workspace). */
  workRoot: string;
  logger?: Logger;
  /** The CLI: `docker` (default), `podman`, or a path. */
  cli?: string;
  /**
   * OCI runtime, e.g. `runsc` for gVisor. gVisor has its own network stack:
   * register it in /etc/docker/daemon.json with `"runtimeArgs": ["--network=none"]`
   * so a network-less container has no stack at all.
   */
  runtime?: string;
  /** Value of the owner label: one per runner on a host, so cleanupOrphans() removes only ours. Default `default`. */
  owner?: string;
  /** How often a running command's limits are checked, ms. Default 100. */
  monitorIntervalMs?: number;
  /** The runner's egress proxy, for sandboxes with `network.mode: 'proxy'`. */
  egress?: EgressProxy;
}

const SANDBOX_ID = /^[a-z0-9][a-z0-9-]{0,47}$/;
/**
 * Host uids of docker sandboxes when the runner is root: a range of their own,
 * after the bwrap driver's (1.9e9 + 50e6), so two drivers of one runner never
 * hand out the same uid.
 */
const UID_BASE = 1_950_000_000;
const UID_SPAN = 50_000_000;
/** The container user when the runner is not root (a rootless engine maps it into its subuid range). */
const UNPRIVILEGED_UID = 1000;

/**
 * The Docker/Podman driver, through the CLI. One long-lived container per
 * sandbox (`run -d … sleep infinity`) and a `docker exec -i` per command.
 * Measured here: `docker run --rm … true` ≈ 740 ms, `docker exec … true` ≈ 130 ms
 * into a running container. A container per sandbox pays the start once, lets
 * a session keep its shell and files across calls, and gives the same
 * code path to one-shot runs; `run --rm` per command would pay 740 ms each time.
 */
export class DockerDriver implements SandboxDriver {
  readonly name = 'docker' as const;
  private readonly logger: Logger;
  private readonly cli: string;
  private readonly owner: string;
  /** Host uids of live sandboxes: never two at once on one uid. */
  private readonly liveUids = new Set<number>();

  constructor(private readonly options: DockerDriverOptions) {
    this.logger = options.logger ?? noopLogger;
    this.cli = options.cli ?? 'docker';
    this.owner = options.owner ?? 'default';
  }

  /** The image reference for a sandbox image name (`base` → `sandbox-runner/base:latest`); a full reference passes through. */
  imageRef(image: string): string {
    return /[:/]/.test(image) ? image : dockerTagFor(image);
  }

  async probe(): Promise<DriverStatus> {
    const v = await execa(this.cli, ['version', '--format', '{{.Server.Version}}'], { reject: false, timeout: 15_000 });
    if ((v as { code?: string }).code === 'ENOENT') {
      return { available: false, message: `the ${this.cli} command line is not installed`, fix: 'apt-get install -y docker.io' };
    }
    if (v.exitCode !== 0 && /permission denied/i.test(String(v.stderr))) {
      return {
        available: false,
        message: `this user (uid ${process.getuid?.()}) may not use the engine's socket (${String(v.stderr).trim().slice(0, 200)})`,
        fix: "add the runner's user to the docker group (usermod -aG docker USER; that group is root on this host), or run rootless Docker or Podman for that user and set DOCKER_HOST to its socket",
      };
    }
    if (v.exitCode !== 0) {
      return {
        available: false,
        message: `no container engine answers the ${this.cli} command line (${String(v.stderr).trim().slice(0, 200)})`,
        fix: 'systemctl start docker (or, without systemd: dockerd >/var/log/dockerd.log 2>&1 &)',
      };
    }
    if (this.options.runtime) {
      const info = await execa(this.cli, ['info', '--format', '{{json .Runtimes}}'], { reject: false });
      if (!String(info.stdout).includes(`"${this.options.runtime}"`)) {
        return {
          available: false,
          message: `the container runtime ${this.options.runtime} is not registered with the engine`,
          fix: `install it and add to /etc/docker/daemon.json: {"runtimes":{"${this.options.runtime}":{"path":"/usr/local/bin/${this.options.runtime}","runtimeArgs":["--network=none"]}}}, then restart dockerd`,
        };
      }
    }
    const img = await execa(this.cli, ['image', 'inspect', '--format', '{{.Id}}', this.imageRef('base')], { reject: false });
    if (img.exitCode !== 0) {
      return { available: false, message: `the sandbox image ${this.imageRef('base')} is not imported`, fix: 'sandbox-images/base/build.sh' };
    }
    return { available: true, message: `engine ${String(v.stdout).trim()}${this.options.runtime ? `, runtime ${this.options.runtime}` : ''}; base image imported` };
  }

  /**
   * Removes every container labelled as ours (a previous run's leftovers), then
   * their workspaces: a killed runner left each one mounted on the host with
   * whatever its call wrote there, until reboot. Returns the container ids.
   */
  async cleanupOrphans(): Promise<string[]> {
    const ps = await execa(this.cli, ['ps', '--all', '--no-trunc', '--format', `{{.ID}} {{.Label "${LABEL_SANDBOX}"}}`, '--filter', `label=${LABEL_OWNER}=${this.owner}`], { reject: false });
    const rows = String(ps.stdout).split('\n').filter(Boolean).map((l) => l.split(' '));
    const ids = rows.map(([id]) => id!);
    if (ids.length > 0) {
      await execa(this.cli, ['rm', '--force', '--volumes', ...ids], { reject: false });
      // Only the sandbox dirs of our own containers: another runner's owner label means its own sandboxes.
      for (const sandboxId of rows.map(([, sid]) => sid ?? '').filter((sid) => SANDBOX_ID.test(sid))) {
        const sandboxDir = path.join(path.resolve(this.options.workRoot), sandboxId);
        await execa('umount', ['-l', path.join(sandboxDir, 'workspace')], { reject: false });
        await rm(sandboxDir, { recursive: true, force: true }).catch(() => undefined);
      }
      this.logger.info({ containers: ids.length }, 'removed orphaned sandbox containers');
    }
    return ids;
  }

  async create(spec: SandboxSpec, signal?: AbortSignal): Promise<Sandbox> {
    signal?.throwIfAborted();
    if (!SANDBOX_ID.test(spec.id)) {
      throw new RunnerError('invalid_input', `sandbox id ${JSON.stringify(spec.id)} is not valid; use 1-48 characters of a-z, 0-9 and -`);
    }
    if (/[,=]/.test(this.options.workRoot)) {
      throw new RunnerError('config_invalid', `sandbox work root ${this.options.workRoot} holds a comma or an equals sign, which docker --mount cannot take; choose another path`);
    }
    const isRoot = process.getuid?.() === 0;
    const sandboxDir = path.join(path.resolve(this.options.workRoot), spec.id);
    const workspaceDir = path.join(sandboxDir, 'workspace');
    await mkdir(sandboxDir, { recursive: true, mode: 0o711 });
    await mkdir(workspaceDir, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'EEXIST') throw new RunnerError('invalid_input', `a sandbox with id ${spec.id} exists already; use a new id`);
      throw err;
    });
    // A uid of its own: the engine does not remap users, so a fixed 1000 was a
    // real host account (able to read a call's secrets in /proc/PID/environ and
    // to signal or ptrace its processes) and one per-uid budget (inotify
    // instances, message queues) shared by every sandbox on the host.
    const uid = isRoot ? this.takeUid(spec.id) : UNPRIVILEGED_UID;
    const releaseUid = (): void => {
      if (isRoot) this.liveUids.delete(uid);
    };
    let workspaceMounted = false;
    const unmountWorkspace = async (): Promise<void> => {
      if (!workspaceMounted) return;
      const r = await execa('umount', ['-l', workspaceDir], { reject: false });
      // Gone already: a later runner's cleanupOrphans() unmounted it.
      if (r.exitCode !== 0 && !/not mounted|no mount point|No such file/i.test(String(r.stderr))) {
        throw new RunnerError('sandbox_failed', `the workspace of sandbox ${spec.id} was not unmounted; run umount -l ${workspaceDir}`, { detail: String(r.stderr).slice(0, 2000) });
      }
      workspaceMounted = false;
    };
    let containerId: string | undefined;
    let egress: SandboxEgress | undefined;
    try {
      if (isRoot) {
        // The workspace belongs to the container user.
        const opts = `size=${Math.max(1024 * 1024, spec.limits.workspaceBytes)},mode=0700,uid=${uid},gid=${uid},nosuid,nodev`;
        await execa('mount', ['-t', 'tmpfs', '-o', opts, 'sandbox-workspace', workspaceDir], { cancelSignal: signal });
        workspaceMounted = true;
      } else {
        await chmod(workspaceDir, 0o777);
      }
      const roBinds = await this.placeFiles(spec, sandboxDir, workspaceDir, isRoot ? uid : undefined);
      const binds: Array<[string, string]> = [];
      for (const m of await hostMounts(spec)) (m.readOnly ? roBinds : binds).push([m.hostPath, m.path]);
      egress = await setupSandboxEgress(spec.network, spec.id, sandboxDir, this.options.egress);
      // The container stays on --network none: the proxy comes in as a unix socket.
      if (egress) roBinds.push([egress.hostDir, EGRESS_DIR_INSIDE]);
      const args = containerRunArgs({
        name: `sandbox-runner-${spec.id}`,
        sandboxId: spec.id,
        owner: this.owner,
        image: this.imageRef(spec.image),
        limits: spec.limits,
        workspaceDir,
        roBinds,
        binds,
        ...(this.options.runtime ? { runtime: this.options.runtime } : {}),
        uid,
      });
      const r = await execa(this.cli, args, { reject: false, cancelSignal: signal });
      if (r.exitCode !== 0) {
        const noImage = /No such image|Unable to find image|pull access denied/i.test(String(r.stderr));
        throw new RunnerError(
          'sandbox_failed',
          noImage
            ? `sandbox image ${this.imageRef(spec.image)} is not in the engine; build it with sandbox-runner images build ${spec.image}`
            : `the container of sandbox ${spec.id} did not start; see the detail`,
          { detail: String(r.stderr).slice(0, 2000) },
        );
      }
      containerId = String(r.stdout).trim();
      const pid = await execa(this.cli, ['inspect', '--format', '{{.State.Pid}}', containerId], { reject: false });
      const initPid = Number(String(pid.stdout).trim());
      // Readable cgroups mean the engine runs on this host, and so does its pid.
      const events = await cgroupEventsOfPid(initPid);
      if (egress) {
        // One forwarder for the container's lifetime (one network namespace); it detaches and is reaped by docker-init.
        const fwd = await execa(this.cli, ['exec', containerId, ...egress.wrap(['true'])], { reject: false, cancelSignal: signal });
        if (fwd.exitCode !== 0) {
          throw new RunnerError('sandbox_failed', `the egress forwarder of sandbox ${spec.id} did not start; the image needs python3`, { detail: String(fwd.stderr).slice(0, 2000) });
        }
      }
      this.logger.debug({ sandbox: spec.id, container: containerId.slice(0, 12) }, 'docker sandbox created');
      return new DockerSandbox({
        id: spec.id,
        cli: this.cli,
        containerId,
        sandboxDir,
        workspaceDir,
        workspaceMounted,
        unmountWorkspace,
        env: { ...egress?.env, ...spec.env },
        limits: spec.limits,
        events,
        ...(events && initPid > 0 ? { initPid } : {}),
        onDispose: async () => {
          releaseUid();
          await egress?.listener.close();
        },
        monitorIntervalMs: this.options.monitorIntervalMs ?? 100,
        logger: this.logger,
      });
    } catch (err) {
      if (containerId) await execa(this.cli, ['rm', '--force', containerId], { reject: false });
      await egress?.listener.close().catch(() => undefined);
      await unmountWorkspace().catch(() => undefined);
      await rm(sandboxDir, { recursive: true, force: true }).catch(() => undefined);
      releaseUid();
      throw err;
    }
  }

  /** The first free host uid from the one sandbox `id` hashes to. */
  private takeUid(id: string): number {
    let uid = hostUidFor(true, UID_BASE, id)!;
    while (this.liveUids.has(uid)) uid = UID_BASE + ((uid - UID_BASE + 1) % UID_SPAN);
    this.liveUids.add(uid);
    return uid;
  }

  private async placeFiles(spec: SandboxSpec, sandboxDir: string, workspaceDir: string, ownerUid: number | undefined): Promise<Array<[string, string]>> {
    const roBinds: Array<[string, string]> = [];
    let n = 0;
    for (const file of spec.files ?? []) {
      const inside = path.posix.normalize(file.path);
      if (!path.posix.isAbsolute(inside)) throw new RunnerError('invalid_input', `injected file path ${JSON.stringify(file.path)} must be absolute`);
      let host: string;
      if (inside.startsWith('/workspace/')) {
        host = path.join(workspaceDir, path.posix.relative('/workspace', inside));
        await mkdir(path.dirname(host), { recursive: true });
      } else {
        await mkdir(path.join(sandboxDir, 'files'), { recursive: true, mode: 0o711 });
        host = path.join(sandboxDir, 'files', String(n++));
        roBinds.push([host, inside]);
      }
      await writeFile(host, file.content, { mode: file.mode });
      await chmod(host, file.mode);
      if (ownerUid !== undefined) await chown(host, ownerUid, ownerUid);
    }
    return roBinds;
  }
}
