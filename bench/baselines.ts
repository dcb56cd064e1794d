import { spawn } from 'node:child_process';
import { once } from 'node:events';
import ivm from 'isolated-vm';
import { treeCpuMs } from './cpu.js';

/** Runs argv to its end; throws on a non-zero exit. */
export async function run(argv: string[]): Promise<void> {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`${argv.join(' ')} exited ${code}: ${err.slice(0, 400)}`);
}

/** Durations of the measured runs (ms), and the CPU the whole process tree spent per run (ms). */
export interface Timing {
  samples: number[];
  cpuMsPerRun: number;
}

/**
 * Times `n` runs of `fn` after `warmup` unmeasured ones, back to back, or
 * `pauseMs` apart (the pause is not timed, but the CPU spent in it is counted:
 * work a run leaves behind, such as making the next spare sandbox, is its cost).
 */
export async function timeIt(n: number, fn: () => Promise<unknown>, warmup = Math.min(5, n), pauseMs = 0): Promise<Timing> {
  for (let i = 0; i < warmup; i++) await fn();
  const samples: number[] = [];
  const cpu0 = treeCpuMs(process.pid);
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn();
    samples.push(performance.now() - t0);
    if (pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
  }
  return { samples, cpuMsPerRun: (treeCpuMs(process.pid) - cpu0) / n };
}

/** The raw bubblewrap floor: namespaces, the image as a read-only root, /proc and /dev, then `true`. */
export function rawBwrap(rootfs: string): () => Promise<void> {
  return () =>
    run(['bwrap', '--unshare-all', '--die-with-parent', '--new-session', '--clearenv', '--ro-bind', rootfs, '/', '--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp', '--', '/bin/true']);
}

/** The raw Docker floor: `docker run --rm` of the same image, no network, then `true`. */
export function rawDocker(image: string): () => Promise<void> {
  return () => run(['docker', 'run', '--rm', '--network', 'none', image, 'true']);
}

/** A bare isolated-vm context in this process: isolate, context, one eval, dispose. */
export async function bareIsolate(): Promise<void> {
  const isolate = new ivm.Isolate({ memoryLimit: 64 });
  try {
    const context = await isolate.createContext();
    await context.eval('1 + 1', { timeout: 1000 });
    context.release();
  } finally {
    isolate.dispose();
  }
}
