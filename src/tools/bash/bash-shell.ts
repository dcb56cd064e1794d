import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { OutputStream, ProcessExit, Sandbox, SandboxProcess } from '../../sandbox/driver.js';
import { OutputPump } from '../../sandbox/output-pump.js';
import { OutputCollector } from './output-collector.js';

/** How one command ended. */
export type CommandEnd =
  | { kind: 'done'; exitCode: number }
  | { kind: 'timeout' }
  | { kind: 'cancelled' }
  /** Output ran far past the cap (a flood): the shell was killed rather than read forever. */
  | { kind: 'flood' }
  /** The shell itself exited (`exit`, `set -e`, a crash) before the command's end. */
  | { kind: 'shell_exited'; exit: ProcessExit };

export interface CommandResult {
  end: CommandEnd;
  stdout: string;
  stderr: string;
  stdoutDropped: number;
  stderrDropped: number;
}

export interface RunCommandOptions {
  timeoutMs: number;
  signal: AbortSignal;
  /** Bytes kept of each stream. */
  outputBytes: number;
  emit: (stream: OutputStream, chunk: Buffer) => Promise<void>;
  /**
   * Variables for this command only (the call's injected credentials): set as
   * temporary assignments on the eval, so they reach the command and its
   * children but do not stay in the shell for later calls.
   */
  env?: Record<string, string>;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Bytes of output kept from between commands (background jobs) for the next one. */
const IDLE_KEEP = 64 * 1024;

/**
 * Quotes any text as a bash ANSI-C string ($'...'): printable ASCII as is,
 * every other byte as \xHH. Nothing in it is interpreted by the shell.
 */
export function ansiCQuote(text: string): string {
  let out = "$'";
  for (const byte of Buffer.from(text, 'utf8')) {
    if (byte >= 0x20 && byte <= 0x7e && byte !== 0x27 && byte !== 0x5c) out += String.fromCharCode(byte);
    else out += `\\x${byte.toString(16).padStart(2, '0')}`;
  }
  return `${out}'`;
}

/**
 * One persistent bash inside a sandbox, fed commands on its stdin. Each
 * command is sent as `eval $'<command>' </dev/null` followed by a printf of a
 * fresh random sentinel with `$?` on stdout and on stderr: eval runs it in the
 * shell itself (cd and variables carry over), parses it whole (a trailing
 * comment, a trailing `&`, a here-document or even a syntax error cannot eat
 * the sentinel line), and </dev/null keeps a stdin-reading command from
 * consuming the next command. Commands run one at a time.
 */
export class BashShell {
  private readonly idle: Record<OutputStream, Buffer[]> = { stdout: [], stderr: [] };
  private onData: Record<OutputStream, ((chunk: Buffer) => void) | undefined> = { stdout: undefined, stderr: undefined };
  private exit: ProcessExit | undefined;
  private readonly streamsEnded: Promise<void>;
  private queue: Promise<unknown> = Promise.resolve();
  /** Ends the command in flight when the shell dies (one listener for the shell's life, not one per command). */
  private onShellExit: ((exit: ProcessExit) => void) | undefined;

  private constructor(private readonly proc: SandboxProcess) {
    const wire = (name: OutputStream, stream: Readable): Promise<void> => {
      stream.on('data', (chunk: Buffer) => {
        const handler = this.onData[name];
        if (handler) handler(chunk);
        else this.keepIdle(name, chunk);
      });
      return new Promise((resolve) => {
        stream.once('close', resolve);
        stream.once('end', resolve);
        stream.once('error', () => resolve());
      });
    };
    this.streamsEnded = Promise.all([wire('stdout', proc.stdout), wire('stderr', proc.stderr)]).then(() => undefined);
    // A write to a shell that just died must not crash the runner.
    proc.stdin.on('error', () => undefined);
    void proc.exited.then(async (e) => {
      this.exit = e;
      // Let the pipes drain first: the last sentinel may still be in flight.
      await Promise.race([this.streamsEnded, new Promise((r) => setTimeout(r, 1000))]);
      this.onShellExit?.(e);
    });
  }

  /** Starts `bash --noprofile --norc` in `sandbox` (the sandbox's environment, no prompts). */
  static async start(sandbox: Sandbox): Promise<BashShell> {
    const proc = await sandbox.spawn({
      argv: ['bash', '--noprofile', '--norc'],
      env: { PS1: '', PS2: '', TERM: 'dumb' },
    });
    return new BashShell(proc);
  }

  /** The shell's exit, once it has exited. */
  get exited(): ProcessExit | undefined {
    return this.exit;
  }

  /** Runs one command (after any command still running). */
  run(command: string, options: RunCommandOptions): Promise<CommandResult> {
    const next = this.queue.then(() => this.runNow(command, options));
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Kills the shell and everything it started; resolves once it is gone. */
  async dispose(): Promise<void> {
    this.proc.kill();
    await this.proc.exited.catch(() => undefined);
  }

  private keepIdle(name: OutputStream, chunk: Buffer): void {
    const held = this.idle[name].reduce((n, b) => n + b.length, 0);
    if (held < IDLE_KEEP) this.idle[name].push(chunk.subarray(0, IDLE_KEEP - held));
  }

  private async runNow(command: string, options: RunCommandOptions): Promise<CommandResult> {
    const token = randomUUID().replace(/-/g, '');
    const sentinel = `__SR_${token}_END__`;
    // Split in two so the sentinel itself never appears in what we write.
    const half = sentinel.length >> 1;
    const [a, b] = [sentinel.slice(0, half), sentinel.slice(half)];
    const collectors = {
      stdout: new OutputCollector(Buffer.from(sentinel), options.outputBytes, (c) => options.emit('stdout', c)),
      stderr: new OutputCollector(Buffer.from(sentinel), options.outputBytes, (c) => options.emit('stderr', c)),
    };
    // As in run-process: past this much output the command is a flood, not worth reading to its end.
    const ceiling = Math.max(16 * options.outputBytes, 16 * 1024 * 1024);
    let statusText = '';
    let stdoutDone = false;
    let stderrDone = false;
    let settle: (end: CommandEnd) => void = () => undefined;
    const ended = new Promise<CommandEnd>((resolve) => (settle = resolve));
    const checkDone = (): void => {
      if (stdoutDone && stderrDone) settle({ kind: 'done', exitCode: Number.parseInt(statusText.slice(1), 10) });
    };

    const handle = async (name: OutputStream, chunk: Buffer): Promise<void> => {
      const c = collectors[name];
      if (name === 'stdout' && stdoutDone) return this.keepIdle('stdout', chunk);
      if (name === 'stderr' && stderrDone) return this.keepIdle('stderr', chunk);
      if (name === 'stdout' && c.found) return this.afterStatus(chunk, (t) => (statusText += t), () => ((stdoutDone = true), checkDone()));
      const after = await c.push(chunk);
      if (collectors.stdout.dropped + collectors.stderr.dropped > ceiling) return settle({ kind: 'flood' });
      if (after === undefined) return;
      if (name === 'stdout') this.afterStatus(after, (t) => (statusText += t), () => ((stdoutDone = true), checkDone()));
      else {
        stderrDone = true;
        // The stderr sentinel line ends with a newline; anything after belongs to later output.
        const rest = after.subarray(after.indexOf(10) + 1);
        if (rest.length > 0) this.keepIdle('stderr', rest);
        checkDone();
      }
    };
    // Batched and in order; the pump pauses the pipe while the consumer lags,
    // so a slow control plane slows the shell.
    const pumps = {
      stdout: new OutputPump(this.proc.stdout, (chunk) => handle('stdout', chunk)),
      stderr: new OutputPump(this.proc.stderr, (chunk) => handle('stderr', chunk)),
    };
    const feed = (name: OutputStream) => (chunk: Buffer) => pumps[name].push(chunk);
    this.onData = { stdout: feed('stdout'), stderr: feed('stderr') };

    const timer = setTimeout(() => settle({ kind: 'timeout' }), options.timeoutMs);
    const onAbort = (): void => settle({ kind: 'cancelled' });
    options.signal.addEventListener('abort', onAbort, { once: true });
    if (options.signal.aborted) onAbort();
    this.onShellExit = (exit) => settle({ kind: 'shell_exited', exit });
    if (this.exit) this.onShellExit(this.exit);

    try {
      for (const name of ['stdout', 'stderr'] as const) {
        const held = this.idle[name].splice(0);
        for (const chunk of held) this.onData[name]?.(chunk);
      }
      const assignments = Object.entries(options.env ?? {})
        .filter(([k]) => ENV_NAME.test(k))
        .map(([k, v]) => `${k}=${ansiCQuote(v)} `)
        .join('');
      this.proc.stdin.write(
        `${assignments}eval ${ansiCQuote(command)} </dev/null\n` +
          `printf '%s%s:%d\\n' '${a}' '${b}' "$?"\n` +
          `printf '%s%s\\n' '${a}' '${b}' >&2\n`,
      );
      const end = await ended;
      if (end.kind === 'timeout' || end.kind === 'cancelled' || end.kind === 'flood') await this.dispose();
      if (end.kind !== 'done') {
        // What was read before the end still belongs to the command, but a
        // stalled consumer must not hold up a timeout or cancel for long.
        await Promise.race([Promise.all([pumps.stdout.idle(), pumps.stderr.idle()]), new Promise((r) => setTimeout(r, 1000).unref())]);
        await Promise.all([collectors.stdout.flush(), collectors.stderr.flush()]);
      }
      return {
        end,
        stdout: collectors.stdout.text(),
        stderr: collectors.stderr.text(),
        stdoutDropped: collectors.stdout.dropped,
        stderrDropped: collectors.stderr.dropped,
      };
    } finally {
      clearTimeout(timer);
      options.signal.removeEventListener('abort', onAbort);
      this.onData = { stdout: undefined, stderr: undefined };
      this.onShellExit = undefined;
    }
  }

  /** Reads `:<status>\n` after the stdout sentinel; what follows it is kept for the next command. */
  private afterStatus(bytes: Buffer, append: (text: string) => void, done: () => void): void {
    const nl = bytes.indexOf(10);
    if (nl < 0) return append(bytes.toString('latin1'));
    append(bytes.subarray(0, nl).toString('latin1'));
    const rest = bytes.subarray(nl + 1);
    if (rest.length > 0) this.keepIdle('stdout', rest);
    done();
  }
}
