import os from 'node:os';

/**
 * The seccomp program every bwrap sandbox runs under (bwrap `--seccomp FD`):
 * it refuses, with EPERM, the system calls below and allows everything else.
 *
 * - `add_key`, `request_key`, `keyctl`: keyrings are not namespaced. A
 *   process keeps the session keyring of whoever started it, across bwrap's
 *   user namespace, and possesses it, so every sandbox possessed the runner's
 *   session keyring (systemd gives each service one, with an `invocation_id`
 *   key in it): a sandbox could read and change the keys there, and one
 *   sandbox could leave a key that another session reads.
 * - `io_uring_setup`, `io_uring_enter`, `io_uring_register`, `userfaultfd`,
 *   `perf_event_open`: no break through them is known here, but they are
 *   among the kernel's largest attack surfaces for unprivileged code (the
 *   source of many local privilege escalations), which is why several
 *   distributions and Google's production kernels turn io_uring off.
 *   Ordinary programs do not need them: glibc and the tools in the images
 *   fall back to read/write and poll.
 *
 * Docker's default seccomp profile refuses all of these for the same reasons.
 *
 * A classic BPF program (struct sock_filter: u16 code, u8 jt, u8 jf, u32 k, in
 * the host's byte order), one block per ABI the host can run, so a 32-bit
 * process (int 0x80, arm32 compat) cannot reach the calls by their other numbers.
 * Pure and deterministic: the same bytes for every sandbox.
 */

/** A set of syscall numbers for one ABI (seccomp_data.arch). */
interface AbiBlock {
  arch: number;
  /** ANDed into the number before comparing (x32 sets 0x40000000 on the x86_64 numbers). */
  mask?: number;
  nrs: number[];
}

// Each ABI's `nrs`, in this order: add_key, request_key, keyctl,
// io_uring_setup, io_uring_enter, io_uring_register, userfaultfd, perf_event_open.
// AUDIT_ARCH_* from linux/audit.h; numbers from each ABI's syscall table
// (asm/unistd_64.h, unistd_32.h, asm-generic/unistd.h for arm64, the ARM EABI table).
const ABIS: Partial<Record<NodeJS.Architecture, AbiBlock[]>> = {
  x64: [
    { arch: 0xc000003e, mask: ~0x40000000 >>> 0, nrs: [248, 249, 250, 425, 426, 427, 323, 298] },
    { arch: 0x40000003, nrs: [286, 287, 288, 425, 426, 427, 374, 336] },
  ],
  arm64: [
    { arch: 0xc00000b7, nrs: [217, 218, 219, 425, 426, 427, 282, 241] },
    { arch: 0x40000028, nrs: [309, 310, 311, 425, 426, 427, 388, 364] },
  ],
};

const BPF_LD_W_ABS = 0x20;
const BPF_ALU_AND_K = 0x54;
const BPF_JEQ_K = 0x15;
const BPF_RET_K = 0x06;
const SECCOMP_RET_ALLOW = 0x7fff0000;
const SECCOMP_RET_ERRNO = 0x00050000;
const EPERM = 1;
/** offsetof(struct seccomp_data, nr) and (…, arch). */
const OFF_NR = 0;
const OFF_ARCH = 4;

type Insn = [code: number, jt: number, jf: number, k: number];

/**
 * The filter for this host's architecture, or undefined where the runner does
 * not know the syscall numbers (then sandboxes run without one; the driver's
 * probe says so).
 */
export function sandboxSeccompFilter(arch: NodeJS.Architecture = process.arch): Buffer | undefined {
  const blocks = ABIS[arch];
  if (!blocks) return undefined;
  // Layout: load arch; per ABI [jeq arch, load nr, (and mask), jeq nr → deny …, allow]; allow; deny.
  const prog: Insn[] = [[BPF_LD_W_ABS, 0, 0, OFF_ARCH]];
  const denyJumps: number[] = [];
  for (const b of blocks) {
    const size = 2 + (b.mask !== undefined ? 1 : 0) + b.nrs.length + 1;
    // Not this ABI: on to the next block, where A still holds the arch.
    prog.push([BPF_JEQ_K, 0, size - 1, b.arch]);
    prog.push([BPF_LD_W_ABS, 0, 0, OFF_NR]);
    if (b.mask !== undefined) prog.push([BPF_ALU_AND_K, 0, 0, b.mask]);
    for (const nr of b.nrs) {
      denyJumps.push(prog.length);
      prog.push([BPF_JEQ_K, 0, 0, nr]);
    }
    prog.push([BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW]);
  }
  prog.push([BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW]);
  const deny = prog.length;
  prog.push([BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | EPERM]);
  for (const i of denyJumps) prog[i]![1] = deny - (i + 1);

  const le = os.endianness() === 'LE';
  const out = Buffer.alloc(prog.length * 8);
  prog.forEach(([code, jt, jf, k], i) => {
    const o = i * 8;
    if (le) {
      out.writeUInt16LE(code, o);
      out.writeUInt32LE(k >>> 0, o + 4);
    } else {
      out.writeUInt16BE(code, o);
      out.writeUInt32BE(k >>> 0, o + 4);
    }
    out.writeUInt8(jt, o + 2);
    out.writeUInt8(jf, o + 3);
  });
  return out;
}
