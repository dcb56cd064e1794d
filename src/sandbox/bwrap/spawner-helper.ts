/**
 * The sandbox spawner: a small Node process, started once by the runner (see
 * sandbox-spawner.ts), that starts the pre-started bwrap waiters of spare
 * sandboxes so that the runner itself never forks for them.
 *
 * Why a process of its own: a spawn forks the calling process's whole address
 * space, and while the kernel copies the ~115 MB runner's page tables its event
 * loop stands still for milliseconds (measured 2.5–17 ms here) — in a stream
 * of calls, right when the next call arrives. This process holds a few MB of
 * heap, and its forks stall nobody.
 *
 * What it does, and only that: spawn an argv array the runner gives (bwrap
 * directly — dropping to the sandbox's uid/gid through the spawn options and
 * joining its cgroups by moving itself there around the spawn, see
 * cgroup-self-move.ts — or, when it cannot join them, the wrapper + bwrap
 * line of a waiter), hand the process's stdin, stdout, stderr
 * and spec pipe to the runner as sockets over the IPC channel (SCM_RIGHTS; its
 * own copies are closed once sent), report bwrap's init pid and the exit, and
 * SIGKILL a process when asked. It never sees a call's environment or spec:
 * those are written by the runner into the passed pipes. The environment
 * pipe of bwrap (`--args`) is closed empty, as a waiter's always is.
 *
 * Lifetime: it exits, killing every process it started, when the runner's
 * channel closes (the runner ended, however it ended). Each bwrap it started
 * runs with --die-with-parent, so a SIGKILL of this process takes them along.
 *
 * Imports nothing from the runner but message types: it must start fast.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { checkHome, CgroupJoinError, homeFiles, selfCgroupText, spawnInCgroups, type CgroupTarget } from '../cgroups/cgroup-self-move.js';
import { SPAWNED_PIPES, type DirectSpawn, type SpawnerEvent, type SpawnerRequest } from './spawner-messages.js';

/**
 * fds in the child: 0-2 stdio, 3 bwrap's --info-fd, 4 the waiter's spec, 5 bwrap's --args (empty),
 * and 6 bwrap's --seccomp program when the request carries one.
 */
const STDIO = ['pipe', 'pipe', 'pipe', 'pipe', 'pipe', 'pipe'] as const;
const stdioFor = (seccomp: Buffer | undefined): Array<'pipe'> => (seccomp ? [...STDIO, 'pipe'] : [...STDIO]);

function main(): void {
  const send = process.send?.bind(process);
  if (!send) {
    process.stderr.write('sandbox-spawner: start this only through the runner (it needs an IPC channel)\n');
    process.exitCode = 2;
    return;
  }
  process.title = 'sandbox-spawner';
  const children = new Map<number, ChildProcess>();
  const emit = (ev: SpawnerEvent, handle?: Readable | Writable): void => {
    // A closed channel means the runner is gone; 'disconnect' below ends this process.
    if (process.connected) send(ev, handle as never, undefined, () => undefined);
  };

  // Where this process moves back to after a spawn in a sandbox's cgroups,
  // per layout; null: it cannot (then every spawn takes the wrapper).
  const homes = new Map<string, string[] | null>();
  const homesFor = (target: CgroupTarget): string[] | undefined => {
    const key = JSON.stringify([target.mountRoot, target.write, target.controllers]);
    if (!homes.has(key)) {
      let found = homeFiles(target, selfCgroupText());
      try {
        if (found) checkHome(target, found);
      } catch {
        found = undefined;
      }
      homes.set(key, found ?? null);
    }
    return homes.get(key) ?? undefined;
  };
  // The move back failed: this process sits in a sandbox's cgroups, whose
  // removal kills it. It must not spawn anything more; the runner starts a new one.
  let stuck: Error | undefined;

  const spawnDirect = (direct: DirectSpawn, env: Record<string, string>, seccomp: Buffer | undefined): ChildProcess => {
    const options = {
      stdio: stdioFor(seccomp),
      env,
      ...(direct.uid !== undefined ? { uid: direct.uid } : {}),
      ...(direct.gid !== undefined ? { gid: direct.gid } : {}),
    };
    const run = (): ChildProcess => spawn(direct.argv[0]!, direct.argv.slice(1), options);
    if (!direct.cgroup) return run();
    const back = homesFor(direct.cgroup);
    if (!back) throw new CgroupJoinError('the spawner cannot find or write its own cgroup to move back to');
    return spawnInCgroups(direct.cgroup, back, run, (err) => (stuck ??= err));
  };

  const start = (id: number, argv: string[], env: Record<string, string>, direct: DirectSpawn | undefined, seccomp: Buffer | undefined): void => {
    const spawnWrapped = (): ChildProcess => spawn(argv[0]!, argv.slice(1), { stdio: stdioFor(seccomp), env });
    let child: ChildProcess;
    let isDirect = false;
    try {
      if (direct) {
        try {
          child = spawnDirect(direct, env, seccomp);
          isDirect = true;
        } catch (err) {
          if (!(err instanceof CgroupJoinError)) throw err;
          emit({ kind: 'note', id, message: `${err.message}; started through the cgroup wrapper instead` });
          child = spawnWrapped();
        }
      } else {
        child = spawnWrapped();
      }
    } catch (err) {
      emit({ kind: 'error', id, message: (err as Error).message });
      return;
    }
    if (stuck) {
      try {
        child.kill('SIGKILL');
      } catch {
        // gone already
      }
      emit({ kind: 'error', id, message: `the spawner could not leave the sandbox's cgroup (${stuck.message}); it exits` });
      process.stderr.write(`sandbox-spawner: could not move back to its own cgroup (${stuck.message}); exiting\n`);
      shutdown(70);
      return;
    }
    child.once('error', (err) => {
      children.delete(id);
      emit({ kind: 'error', id, message: err.message });
    });
    if (child.pid === undefined) return; // 'error' follows
    children.set(id, child);
    const stdio = child.stdio as unknown as Array<(Readable & Writable) | null>;
    const envInput = stdio[5]!;
    envInput.on('error', () => undefined);
    envInput.end();
    if (seccomp) {
      const seccompInput = stdio[6]!;
      seccompInput.on('error', () => undefined);
      seccompInput.end(seccomp);
    }
    let info: string | undefined = '';
    const infoStream = stdio[3]!;
    infoStream.on('error', () => undefined);
    // Read to its end: bwrap writes the rest of its info after the pid, and a
    // closed pipe would end it with SIGPIPE.
    infoStream.on('data', (c: Buffer) => {
      if (info === undefined) return;
      info += c.toString();
      const m = /"child-pid":\s*(\d+)/.exec(info);
      if (m) {
        emit({ kind: 'info', id, childPid: Number(m[1]) });
        info = undefined;
      }
    });
    const fds: Record<(typeof SPAWNED_PIPES)[number], Readable | Writable> = {
      stdin: child.stdin!,
      stdout: child.stdout!,
      stderr: child.stderr!,
      spec: stdio[4]!,
    };
    for (const pipe of SPAWNED_PIPES) {
      // Sending detaches the socket from this process (keepOpen false): the runner holds the only end.
      emit({ kind: 'pipe', id, pipe }, fds[pipe]);
    }
    emit({ kind: 'spawned', id, pid: child.pid, direct: isDirect });
    child.once('exit', (code, signal) => {
      children.delete(id);
      emit({ kind: 'exit', id, code, signal });
    });
  };

  process.on('message', (req: SpawnerRequest) => {
    if (req.kind === 'spawn') start(req.id, req.argv, req.env, req.direct, req.seccomp === undefined ? undefined : Buffer.from(req.seccomp, 'base64'));
    else if (req.kind === 'kill') {
      try {
        children.get(req.id)?.kill('SIGKILL');
      } catch {
        // gone already
      }
    }
  });
  function shutdown(code: number): void {
    for (const child of children.values()) {
      try {
        child.kill('SIGKILL');
      } catch {
        // gone already
      }
    }
    process.exit(code);
  }
  process.on('disconnect', () => shutdown(0));
  // A Ctrl-C or a service manager's SIGTERM reaches the whole process group;
  // the runner drains its calls first, and this process ends with its channel.
  process.on('SIGINT', () => undefined);
  process.on('SIGTERM', () => undefined);
  emit({ kind: 'ready' });
}

main();
