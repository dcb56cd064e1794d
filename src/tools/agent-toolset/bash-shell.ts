import { randomBytes } from 'node:crypto';
import type { Sandbox, SandboxProcess } from '../../sandbox/driver.js';

/** Output kept per command: the last 100 KiB, as the SDK's reference bash. */
export const BASH_OUTPUT_LIMIT = 100 * 1024;
const ANSI = /\x1b\[[0-9;?]*[ -/]*[@-~]/g;

/** What one command gave. */
export interface ShellResult {
  output: string;
  exitCode: number | null;
  /** Set when the command did not finish: the shell was killed and must be restarted. */
  ended?: 'timed_out' | 'cancelled' | 'died';
}

/**
 * A persistent `/bin/bash --noprofile --norc` inside the session sandbox.
 * Each command is framed by a random sentinel that carries its exit code;
 * stdin is /dev/null and stderr is merged into stdout. A timeout or an abort
 * kills the shell; the next command starts a fresh one.
 */
export class BashShell {
  #proc: SandboxProcess | undefined;
  #buf = '';
  #truncated = false;
  #onData: (() => void) | undefined;
  #dead = false;

  constructor(private readonly sandbox: Sandbox, private readonly env: Record<string, string>) {}

  async #start(): Promise<SandboxProcess> {
    if (this.#proc && !this.#dead) return this.#proc;
    this.#dead = false;
    const proc = await this.sandbox.spawn({ argv: ['/bin/bash', '--noprofile', '--norc'], cwd: '/workspace', env: this.env });
    const take = (chunk: Buffer): void => {
      this.#buf += chunk.toString('utf8');
      // Keep the tail only: the sentinel is at the end, the model wants the last output.
      if (this.#buf.length > BASH_OUTPUT_LIMIT * 2) {
        this.#buf = this.#buf.slice(-BASH_OUTPUT_LIMIT * 2);
        this.#truncated = true;
      }
      this.#onData?.();
    };
    proc.stdout.on('data', take);
    proc.stderr.on('data', take);
    proc.stdin.on('error', () => undefined);
    void proc.exited.then(() => {
      this.#dead = true;
      this.#onData?.();
    });
    this.#proc = proc;
    return proc;
  }

  /** Runs one command; never throws for the command's own failure. */
  async run(command: string, timeoutMs: number, signal: AbortSignal): Promise<ShellResult> {
    const proc = await this.#start();
    const tag = randomBytes(12).toString('hex');
    const sentinel = `__SR_DONE_${tag}__`;
    this.#buf = '';
    this.#truncated = false;
    // The command goes through a quoted heredoc with a random delimiter: bash reads it verbatim.
    proc.stdin.write(`eval "$(cat <<'__SR_CMD_${tag}__'\n${command}\n__SR_CMD_${tag}__\n)" </dev/null 2>&1\nprintf '\\n${sentinel} %d\\n' "$?"\n`);
    const re = new RegExp(`\\n?${sentinel} (\\d+)\\n`);
    const outcome = await new Promise<ShellResult>((resolve) => {
      const finish = (r: ShellResult): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        this.#onData = undefined;
        resolve(r);
      };
      const check = (): void => {
        const m = re.exec(this.#buf);
        if (m) return finish({ output: this.#buf.slice(0, m.index), exitCode: Number(m[1]) });
        if (this.#dead) finish({ output: this.#buf, exitCode: null, ended: 'died' });
      };
      const onAbort = (): void => finish({ output: this.#buf, exitCode: null, ended: 'cancelled' });
      const timer = setTimeout(() => finish({ output: this.#buf, exitCode: null, ended: 'timed_out' }), timeoutMs);
      signal.addEventListener('abort', onAbort, { once: true });
      this.#onData = check;
      check();
    });
    if (outcome.ended) this.kill();
    let out = outcome.output.replace(ANSI, '').replace(/\n+$/, '');
    if (Buffer.byteLength(out) > BASH_OUTPUT_LIMIT || this.#truncated) {
      out = `[output truncated]\n${Buffer.from(out).subarray(-BASH_OUTPUT_LIMIT).toString('utf8')}`;
    }
    return { ...outcome, output: out };
  }

  /** Kills the shell (and everything it started); the next run starts a fresh one. */
  kill(): void {
    this.#proc?.kill();
    this.#proc = undefined;
    this.#dead = true;
  }

  async dispose(): Promise<void> {
    this.kill();
  }
}
