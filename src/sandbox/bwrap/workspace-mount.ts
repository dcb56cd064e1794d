import { spawn } from 'node:child_process';
import { RunnerError } from '../../util/errors.js';

/**
 * The tmpfs of a bwrap sandbox's workspace: mounted at create, lazily
 * unmounted at dispose. Both are on the path of every fresh sandbox, so they
 * run `mount`/`umount` through a bare child_process.spawn (argv array, no
 * shell, stderr kept for the error) rather than execa, whose per-call set-up
 * costs a few ms of the runner's CPU on a call's critical path.
 */

/** Mounts a tmpfs of `sizeBytes` at `dir`, owned by `uid` (the sandbox's host uid), nosuid and nodev. */
export function mountWorkspaceTmpfs(dir: string, sizeBytes: number, uid: number | undefined, signal?: AbortSignal): Promise<void> {
  const owner = uid === undefined ? '' : `,uid=${uid},gid=${uid}`;
  const opts = `size=${Math.max(1024 * 1024, Math.floor(sizeBytes))},mode=0700${owner},nosuid,nodev`;
  return runQuiet('mount', ['-t', 'tmpfs', '-o', opts, 'sandbox-workspace', dir], signal);
}

/** Lazily unmounts `dir` (a process still holding it cannot keep the mount busy). */
export function unmountWorkspaceTmpfs(dir: string): Promise<void> {
  return runQuiet('umount', ['-l', dir]);
}

/** Runs a short system command; rejects with a RunnerError carrying its stderr when it fails. */
function runQuiet(command: string, args: string[], signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    signal?.throwIfAborted();
    const child = spawn(command, args, {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
      ...(signal ? { signal, killSignal: 'SIGKILL' as const } : {}),
    });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => {
      if (stderr.length < 4000) stderr += c.toString();
    });
    child.once('error', (err) => reject(signal?.aborted ? signal.reason : new RunnerError('sandbox_failed', `${command} could not run; check that it is installed (util-linux)`, { cause: err })));
    child.once('close', (code, sig) => {
      if (code === 0) return resolve();
      if (signal?.aborted) return reject(signal.reason);
      reject(
        new RunnerError('sandbox_failed', `${command} of a sandbox workspace failed (${sig ?? `exit ${code}`}); check the detail and run sandbox-runner doctor`, {
          detail: stderr.trim().slice(0, 2000),
        }),
      );
    });
  });
}
