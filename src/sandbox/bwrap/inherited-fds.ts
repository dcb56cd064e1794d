import { closeSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** O_CLOEXEC as /proc/<pid>/fdinfo's octal `flags` shows it. */
const O_CLOEXEC = 0o2000000;

/** An fd the runner inherited without close-on-exec, as it was found. */
export interface InheritedFd {
  fd: number;
  /** What it pointed to (`pipe:[123]`, a path), for the operator. */
  target: string;
}

/**
 * Closes every file descriptor above 2 that this process holds without
 * close-on-exec, and returns what they were.
 *
 * Why: such an fd is inherited by every process the runner starts, and
 * bubblewrap passes any fd it inherits on to the sandboxed program (it closes
 * only its own). Node and libuv open every fd close-on-exec, so the only ones
 * without it came from whoever started the runner: a supervisor's or CI job's
 * pipe, a terminal, a log file. Each reached inside every sandbox, where
 * hostile code could write to it (seen here: the write end of the starting
 * shell's pipe as fd 251 inside the sandbox). Node marks fds 0-15 close-on-exec
 * at start (libuv's uv_disable_stdio_inheritance), not those above. The runner uses none of them:
 * its logs go to fd 1 and 2, its IPC channel (when forked) is close-on-exec.
 *
 * Linux only (reads /proc/self/fdinfo); elsewhere it finds nothing.
 */
export function closeInheritedFds(): InheritedFd[] {
  let names: string[];
  try {
    names = readdirSync('/proc/self/fdinfo');
  } catch {
    return [];
  }
  const closed: InheritedFd[] = [];
  for (const name of names) {
    const fd = Number(name);
    if (!Number.isInteger(fd) || fd <= 2) continue;
    let info: string;
    try {
      info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    } catch {
      // The fd of the directory listing itself, closed by now.
      continue;
    }
    const flags = /^flags:\s*([0-7]+)/m.exec(info);
    if (!flags || (parseInt(flags[1]!, 8) & O_CLOEXEC) !== 0) continue;
    let target = '?';
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      // gone meanwhile
    }
    try {
      closeSync(fd);
      closed.push({ fd, target });
    } catch {
      // closed meanwhile
    }
  }
  return closed;
}
