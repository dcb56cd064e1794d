import type { SandboxLimits } from '../driver.js';

/** Label on every container the runner makes; orphans are found by it. */
export const LABEL_SANDBOX = 'sandbox-runner.sandbox';
/** Label naming the runner instance that owns a container. */
export const LABEL_OWNER = 'sandbox-runner.owner';

export interface ContainerArgsInput {
  name: string;
  sandboxId: string;
  owner: string;
  image: string;
  limits: SandboxLimits;
  /** Host workspace dir, bound at /workspace. */
  workspaceDir: string;
  /** Extra read-only binds [host, inside] (injected files). */
  roBinds: Array<[string, string]>;
  /** Read-write binds [host, inside] (the egress proxy socket dir). */
  binds?: Array<[string, string]>;
  /** OCI runtime, e.g. `runsc` (gVisor); default the engine's. */
  runtime?: string;
  /** The container user's uid and gid: the sandbox's own host uid (no user-namespace remap). */
  uid: number;
}

/**
 * `docker run -d` arguments of a sandbox container, with every hardening flag
 * of issue 3. PID 1 is docker-init (--init) running `sleep infinity`: it reaps
 * the orphans of exec'd commands so zombies never eat the pids limit. No
 * runtime socket is ever mounted; only the workspace and injected files are.
 */
export function containerRunArgs(input: ContainerArgsInput): string[] {
  const l = input.limits;
  const mem = String(Math.max(6 * 1024 * 1024, Math.floor(l.memoryBytes)));
  const tmpBytes = Math.max(1024 * 1024, Math.min(l.workspaceBytes, l.memoryBytes));
  const a = ['run', '--detach', '--name', input.name];
  a.push('--label', `${LABEL_SANDBOX}=${input.sandboxId}`, '--label', `${LABEL_OWNER}=${input.owner}`);
  a.push('--init', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges');
  a.push('--read-only', '--tmpfs', `/tmp:rw,nosuid,nodev,size=${tmpBytes},mode=1777`);
  a.push('--pids-limit', String(Math.max(1, Math.floor(l.maxProcesses))));
  // Swap equal to memory: no swap at all on top of the limit.
  a.push('--memory', mem, '--memory-swap', mem);
  a.push('--cpus', String(l.cpus));
  a.push('--network', 'none');
  a.push('--user', `${input.uid}:${input.uid}`, '--hostname', 'sandbox', '--workdir', '/workspace');
  a.push('--ipc', 'private');
  // PID 1 runs as the sandbox user, so a command can write to /proc/1/fd/1:
  // with the engine's json-file default that lands, unbounded and JSON-escaped
  // (6x for a NUL), in a host file outside every limit, secrets included, kept
  // until the container is removed. Command output travels over exec streams.
  a.push('--log-driver', 'none');
  if (input.runtime) a.push('--runtime', input.runtime);
  a.push('--mount', `type=bind,source=${input.workspaceDir},target=/workspace`);
  for (const [host, inside] of input.roBinds) a.push('--mount', `type=bind,source=${host},target=${inside},readonly`);
  for (const [host, inside] of input.binds ?? []) a.push('--mount', `type=bind,source=${host},target=${inside}`);
  a.push('--entrypoint', 'sleep', input.image, 'infinity');
  return a;
}

/**
 * Script run by `docker exec` in front of each command: the command's pid (its
 * own process group: exec'd processes lead a new session) goes into a file so
 * that kill() can SIGKILL the whole group inside the container; killing the
 * docker CLI alone would leave it running. Then it gives the call's variables
 * their names: they travel as SANDBOX_RUNNER_ENV_<i> (see ENV_CARRIER) and the
 * names as arguments `$2` (how many) and after. Fixed text; argv comes as "$@";
 * eval only ever sees the fixed text and our own index.
 */
export const EXEC_WRAPPER =
  'echo $$ > "/tmp/.sandbox-runner-$1.pid"; SANDBOX_RUNNER_ENV_N=$2; SANDBOX_RUNNER_ENV_I=0; shift 2; ' +
  'while [ "$SANDBOX_RUNNER_ENV_I" -lt "$SANDBOX_RUNNER_ENV_N" ]; do ' +
  'eval "export \\"\\$1=\\$SANDBOX_RUNNER_ENV_$SANDBOX_RUNNER_ENV_I\\"; unset \\"SANDBOX_RUNNER_ENV_$SANDBOX_RUNNER_ENV_I\\""; ' +
  'SANDBOX_RUNNER_ENV_I=$((SANDBOX_RUNNER_ENV_I + 1)); shift; done; unset SANDBOX_RUNNER_ENV_N SANDBOX_RUNNER_ENV_I; exec "$@"';

/**
 * Prefix of the variables that carry a call's environment through the docker
 * CLI's own environment (values never go on a command line). The CLI runs on
 * the host as the runner: under their own names, a call's PATH chose the
 * binary the runner started (any executable the call could name), and
 * DOCKER_HOST, DOCKER_CONFIG, HOME, LD_* and the like steered the CLI itself.
 */
export const ENV_CARRIER = 'SANDBOX_RUNNER_ENV_';

/** Names a call's variable may have inside: a shell identifier, not one of the carriers. */
export const ENV_NAME = /^(?!SANDBOX_RUNNER_ENV_)[A-Za-z_][A-Za-z0-9_]*$/;
