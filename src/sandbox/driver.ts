import type { Readable, Writable } from 'node:stream';

/**
 * The sandbox driver interface. A driver makes sandboxes; a sandbox runs
 * processes in a private workspace under limits until it is disposed.
 *
 * The `isolate` driver (V8 isolates) has its own evaluate() surface in
 * `sandbox/isolate/`; the process drivers (`bwrap`, `docker`) implement this one.
 */
export type DriverName = 'isolate' | 'bwrap' | 'docker';
export const DRIVER_NAMES = ['isolate', 'bwrap', 'docker'] as const;

/** Resource limits applied to every run in a sandbox. */
export interface SandboxLimits {
  /** Wall time of one run, in milliseconds. */
  wallTimeMs: number;
  /** Memory of the whole sandbox, in bytes (swap equal to none). */
  memoryBytes: number;
  /** Processes and threads at once. */
  maxProcesses: number;
  /** Bytes kept of each of stdout and stderr per run; the rest is cut with a marker. */
  outputBytes: number;
  /** Bytes the workspace may hold. */
  workspaceBytes: number;
  /** CPU share, in cores (docker --cpus, cgroup cpu quota). */
  cpus: number;
}

/** Network reach of a sandbox: none, or only through the runner's egress proxy. */
export type NetworkSpec =
  | { mode: 'none' }
  | {
      mode: 'proxy';
      /** host:port of the egress proxy reachable from inside */ proxyUrl: string;
      /** Host names reachable through the proxy: `example.com`, or `*.example.com` for its subdomains. */
      allow?: string[];
    };

/** A file placed in the sandbox before anything runs (credential injection, issue 4). */
export interface InjectedFile {
  /** Absolute path inside the sandbox. */
  path: string;
  content: Uint8Array;
  mode: number;
}

export interface SandboxSpec {
  /** Unique id, safe for container and cgroup names: [a-z0-9-], at most 48 chars. */
  id: string;
  /** Sandbox image name (a directory under the images dir for bwrap, an image tag for docker). */
  image: string;
  limits: SandboxLimits;
  network: NetworkSpec;
  /** The whole environment of processes inside; nothing is inherited from the runner. */
  env: Record<string, string>;
  /** Files placed inside before the first run; wiped at dispose. */
  files?: InjectedFile[];
  /** Host directories bound inside (Managed Agents memory stores at /mnt/memory/<store>). */
  mounts?: SandboxMount[];
}

/** A host directory bound into a sandbox. */
export interface SandboxMount {
  hostPath: string;
  /** Absolute path inside; never over /workspace, /proc, /dev or the image's system folders. */
  path: string;
  readOnly: boolean;
}

export interface SpawnOptions {
  argv: string[];
  /** Working directory inside the sandbox; default the workspace (/workspace). */
  cwd?: string;
  /** Added to the sandbox environment for this process only. */
  env?: Record<string, string>;
  /** Aborting kills the whole process tree. */
  signal?: AbortSignal;
}

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when a limit ended the process: which one; `sandbox_stopped` when its container stopped under it. */
  limit?: 'memory' | 'processes' | 'disk' | 'wall_time' | 'sandbox_stopped';
}

/** A live process inside a sandbox (the bash tool's shell, or one run). */
export interface SandboxProcess {
  readonly stdin: Writable;
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Settles once the process (and everything it started) has exited. */
  readonly exited: Promise<ProcessExit>;
  /** SIGKILL the whole process tree. Idempotent. */
  kill(): void;
}

export type OutputStream = 'stdout' | 'stderr';

export interface RunRequest {
  argv: string[];
  stdin?: string | Uint8Array;
  env?: Record<string, string>;
  cwd?: string;
  /** Overrides limits.wallTimeMs for this run (never above it). */
  timeoutMs?: number;
  /**
   * Receives output as it arrives. The returned promise is awaited before more
   * output is read, so a slow consumer pauses the process (backpressure).
   */
  onOutput?: (stream: OutputStream, chunk: Buffer) => void | Promise<void>;
  signal?: AbortSignal;
}

export interface RunResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: Buffer;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  /** 'wall_time' when the deadline ended it, 'cancelled' when the signal did. */
  ended: 'exited' | 'wall_time' | 'cancelled' | 'memory' | 'processes' | 'disk' | 'output' | 'sandbox_stopped';
  durationMs: number;
}

export interface Sandbox {
  readonly id: string;
  readonly driver: DriverName;
  /** Host path of the workspace, seen inside as `/workspace`. */
  readonly workspaceDir: string;
  readonly limits: SandboxLimits;
  spawn(options: SpawnOptions): Promise<SandboxProcess>;
  run(request: RunRequest): Promise<RunResult>;
  /**
   * Optional: starts the first process ahead of the first run, so that run
   * costs less (bwrap's pre-started waiter). For sandboxes made ahead (the spare).
   */
  prestart?(): Promise<void>;
  /** Kills everything inside and removes the sandbox. Idempotent; keeps the first error. */
  dispose(): Promise<void>;
}

export interface DriverStatus {
  available: boolean;
  /** Why not, as a sentence. */
  message?: string;
  /** The command that fixes it, e.g. `apt-get install bubblewrap`. */
  fix?: string;
  /** What works, but less well than an operator would expect (logged as warnings at start). */
  warnings?: string[];
}

export interface SandboxDriver {
  readonly name: Exclude<DriverName, 'isolate'>;
  /** Checks the driver can run here (binary present, engine answering, image built). */
  probe(): Promise<DriverStatus>;
  create(spec: SandboxSpec, signal?: AbortSignal): Promise<Sandbox>;
  /** At a clean stop, once every sandbox is disposed: releases what the driver holds on the host. */
  close?(): Promise<void>;
}

/** Default limits; local config and policy narrow them. */
export const DEFAULT_LIMITS: SandboxLimits = {
  wallTimeMs: 120_000,
  memoryBytes: 512 * 1024 * 1024,
  maxProcesses: 256,
  outputBytes: 1024 * 1024,
  workspaceBytes: 1024 * 1024 * 1024,
  cpus: 1,
};
