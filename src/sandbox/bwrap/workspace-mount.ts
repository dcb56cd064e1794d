import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { RunnerError } from '../../util/errors.js';

/**
 * The tmpfs of a bwrap sandbox's workspace: mounted at create, lazily
 * unmounted at dispose, both on the path of every fresh sandbox.
 *
 * They run through one long-lived helper, a small bash process that forks
 * `mount`/`umount` for the runner, rather than a spawn from the runner each:
 * Node forks its whole address space to spawn, which takes milliseconds of the
 * runner's main thread (more the larger its heap) and blocks its event loop
 * meanwhile, while the helper's fork of a small shell costs a fraction of that.
 *
 * The helper's script is fixed text; each request is an argv array sent as
 * NUL-terminated fields on its private stdin (read with `read -r -d ''`, never
 * evaluated), and it runs only `mount` or `umount`. Requests run one at a time,
 * answered in order with the exit status and the command's stderr. The helper
 * is started on first use, started again if it dies, and ends by itself when
 * the runner does (its stdin closes); it never keeps the runner alive.
 */

const HELPER_SCRIPT = [
  "while IFS= read -r -d '' n; do",
  '  [[ $n =~ ^[1-9][0-9]{0,2}$ ]] || exit 2',
  '  a=()',
  "  for ((i = 0; i < n; i++)); do IFS= read -r -d '' x || exit 2; a+=(\"$x\"); done",
  '  case ${a[0]} in',
  '    mount | umount) err=$("${a[@]}" 2>&1 >/dev/null); s=$? ;;',
  '    *) err="refused: ${a[0]}"; s=126 ;;',
  '  esac',
  "  printf '%s\\0%s\\0' \"$s\" \"$err\"",
  'done',
].join('\n');

interface Pending {
  resolve: (r: { status: number; stderr: string }) => void;
  reject: (err: Error) => void;
}

/** Runs `mount`/`umount` for the runner through one small helper process. */
export class MountHelper {
  private child: ChildProcessWithoutNullStreams | undefined;
  private readonly pending: Pending[] = [];
  private buffered = Buffer.alloc(0);

  /** Mounts a tmpfs of `sizeBytes` at `dir`, owned by `uid` (the sandbox's host uid), nosuid and nodev. */
  async mountWorkspace(dir: string, sizeBytes: number, uid: number | undefined, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    const owner = uid === undefined ? '' : `,uid=${uid},gid=${uid}`;
    const opts = `size=${Math.max(1024 * 1024, Math.floor(sizeBytes))},mode=0700${owner},nosuid,nodev`;
    // Not cancelled half-way: a mount that happened must be known, or nothing would unmount it.
    await this.run(['mount', '-t', 'tmpfs', '-o', opts, 'sandbox-workspace', dir]);
  }

  /** Lazily unmounts `dir` (a process still holding it cannot keep the mount busy). */
  unmountWorkspace(dir: string): Promise<void> {
    return this.run(['umount', '-l', dir]);
  }

  private async run(argv: string[]): Promise<void> {
    if (argv.some((a) => a.includes('\0'))) throw new RunnerError('internal', `a ${argv[0]} argument holds a NUL byte; this is a bug in the runner`);
    const child = this.helper();
    const answer = new Promise<{ status: number; stderr: string }>((resolve, reject) => this.pending.push({ resolve, reject }));
    this.holdAlive(child, true);
    child.stdin.write([String(argv.length), ...argv].map((a) => `${a}\0`).join(''));
    const { status, stderr } = await answer.finally(() => this.holdAlive(child, this.pending.length > 0));
    if (status !== 0) {
      throw new RunnerError('sandbox_failed', `${argv[0]} of a sandbox workspace failed (exit ${status}); check the detail and run sandbox-runner doctor`, {
        detail: stderr.trim().slice(0, 2000),
      });
    }
  }

  private helper(): ChildProcessWithoutNullStreams {
    if (this.child) return this.child;
    const child = spawn('/bin/bash', ['--norc', '--noprofile', '-c', HELPER_SCRIPT, 'sandbox-mount-helper'], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' },
    });
    this.child = child;
    this.buffered = Buffer.alloc(0);
    child.stdout.on('data', (chunk: Buffer) => this.onData(chunk));
    child.stderr.resume();
    child.stdin.on('error', () => undefined);
    const gone = (err: Error): void => {
      if (this.child !== child) return;
      this.child = undefined;
      for (const p of this.pending.splice(0)) p.reject(err);
    };
    child.once('error', (err) => gone(new RunnerError('sandbox_failed', 'the mount helper (/bin/bash) could not start; check that bash and util-linux are installed', { cause: err })));
    child.once('exit', (code, sig) => gone(new RunnerError('sandbox_failed', `the mount helper ended (${sig ?? `exit ${code}`}); the next sandbox starts a new one`)));
    handle(child.stderr).unref?.();
    this.holdAlive(child, false);
    return child;
  }

  /**
   * An idle helper never keeps the runner alive (it ends when the runner's end
   * closes its stdin); one with a request in flight does, so the answer comes.
   */
  private holdAlive(child: ChildProcessWithoutNullStreams, busy: boolean): void {
    if (busy) {
      child.ref();
      handle(child.stdout).ref?.();
    } else {
      child.unref();
      handle(child.stdout).unref?.();
      handle(child.stdin).unref?.();
    }
  }

  private onData(chunk: Buffer): void {
    this.buffered = Buffer.concat([this.buffered, chunk]);
    for (;;) {
      const a = this.buffered.indexOf(0);
      if (a < 0) return;
      const b = this.buffered.indexOf(0, a + 1);
      if (b < 0) return;
      const status = Number(this.buffered.subarray(0, a).toString());
      const stderr = this.buffered.subarray(a + 1, b).toString();
      this.buffered = this.buffered.subarray(b + 1);
      this.pending.shift()?.resolve({ status, stderr });
    }
  }
}

/** A child's stdio stream is a net.Socket underneath, which can be (un)referenced. */
function handle(stream: object): { ref?: () => void; unref?: () => void } {
  return stream as { ref?: () => void; unref?: () => void };
}
