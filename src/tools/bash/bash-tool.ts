import type { z } from 'zod';
import { BashInputSchema } from '../../protocol/tool-inputs.js';
import { truncationMarker } from '../../sandbox/run-process.js';
import { textOutcome, type ToolContext, type ToolDefinition, type ToolOutcome } from '../tool.js';
import { failureOutcome } from '../workspace-path.js';
import { BashShell, type CommandResult } from './bash-shell.js';

export type BashInput = z.infer<typeof BashInputSchema>;

/** Key of the shell in the session state. */
export const BASH_SESSION_KEY = 'bash';

/**
 * The session's bash: the live shell, or why there is none that may be used
 * (it timed out, was cancelled or exited, and must be restarted explicitly so
 * the model knows its cd, variables and jobs are gone). Calls are serialised.
 */
class BashSlot {
  shell: BashShell | undefined;
  /** Set when the shell died; the next call without restart is refused with it. */
  deadReason: string | undefined;
  private lock: Promise<unknown> = Promise.resolve();

  /** Runs `fn` after every earlier call on this slot. */
  serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.lock.then(fn);
    this.lock = next.catch(() => undefined);
    return next;
  }

  async dispose(): Promise<void> {
    const shell = this.shell;
    this.shell = undefined;
    await shell?.dispose();
  }
}

const RESTART_HINT = 'call bash with restart: true to start a fresh shell (the working directory, variables and background jobs are lost).';

/**
 * `bash` (as Anthropic's `bash_20250124`): one persistent shell per session in
 * the session's sandbox. The result is stdout then stderr; a non-zero exit
 * status is noted on a last line and makes the result is_error. At the
 * per-command timeout (ctx.timeoutMs) the shell is killed and must be
 * restarted; cancel kills it too.
 */
export const bashTool: ToolDefinition<BashInput> = {
  name: 'bash',
  inputSchema: BashInputSchema,
  sandbox: 'process',
  async run(input, ctx) {
    let slot = ctx.session.get<BashSlot>(BASH_SESSION_KEY);
    if (!slot) {
      slot = new BashSlot();
      ctx.session.set(BASH_SESSION_KEY, slot);
    }
    const s = slot;
    return s.serial(async () => {
      try {
        return await runInSlot(s, input, ctx);
      } catch (err) {
        return failureOutcome(err, ctx.logger, 'bash');
      }
    });
  },
};

async function runInSlot(slot: BashSlot, input: BashInput, ctx: ToolContext): Promise<ToolOutcome> {
  if (ctx.signal.aborted) return textOutcome('The call was cancelled before it started.', 'cancelled', true);
  if (input.restart === true) {
    await slot.dispose();
    slot.deadReason = undefined;
    if (input.command === undefined) return textOutcome('tool has been restarted.');
  }
  const command = input.command ?? '';
  if (slot.deadReason !== undefined) return textOutcome(`${slot.deadReason}; ${RESTART_HINT}`, 'failed', true);
  if (command.includes('\0')) return textOutcome('The command contains a NUL byte, which bash cannot run; remove it.', 'failed', true);
  const sandbox = await ctx.sandbox();
  if (!slot.shell || slot.shell.exited) {
    slot.shell = await BashShell.start(sandbox);
  }
  const result = await slot.shell.run(command, {
    timeoutMs: ctx.timeoutMs,
    signal: ctx.signal,
    outputBytes: sandbox.limits.outputBytes,
    emit: (stream, chunk) => ctx.emit(stream, chunk),
    env: ctx.env,
  });
  const output = formatOutput(result);
  switch (result.end.kind) {
    case 'done': {
      const code = result.end.exitCode;
      return textOutcome(code === 0 ? output : join(output, `[exit status ${code}]`), 'completed', code !== 0);
    }
    case 'timeout':
      slot.shell = undefined;
      slot.deadReason = 'The shell was killed because a command timed out, and must be restarted';
      return textOutcome(
        join(output, `timed out: bash has not returned in ${ctx.timeoutMs / 1000} seconds and was killed; it must be restarted: ${RESTART_HINT}`),
        'timed_out',
        true,
      );
    case 'cancelled':
      slot.shell = undefined;
      slot.deadReason = 'The shell was killed when a command was cancelled, and must be restarted';
      return textOutcome(join(output, `The command was cancelled and the shell killed; ${RESTART_HINT}`), 'cancelled', true);
    case 'flood':
      slot.shell = undefined;
      slot.deadReason = 'The shell was killed because a command flooded its output, and must be restarted';
      return textOutcome(
        join(output, `The command printed far more than the output limit and the shell was killed; redirect big output to a file and look at parts of it. ${RESTART_HINT[0]?.toUpperCase()}${RESTART_HINT.slice(1)}`),
        'failed',
        true,
      );
    case 'shell_exited': {
      slot.shell = undefined;
      const how = result.end.exit.signal ? `was killed by ${result.end.exit.signal}` : `has exited with status ${result.end.exit.code}`;
      const limit = result.end.exit.limit ? ` (the sandbox's ${result.end.exit.limit} limit)` : '';
      slot.deadReason = `The shell ${how}${limit}, and must be restarted`;
      return textOutcome(join(output, `bash ${how}${limit}; ${RESTART_HINT}`), 'failed', true);
    }
  }
}

/** stdout, then stderr, each without its final newline, with a marker where a stream was cut. */
function formatOutput(r: CommandResult): string {
  const part = (text: string, dropped: number): string => {
    const full = dropped > 0 ? text + truncationMarker(dropped) : text;
    // Not replace(/\n$/): the regex tries every newline of the output (MBs of it) for the end.
    return full.endsWith('\n') ? full.slice(0, -1) : full;
  };
  return join(part(r.stdout, r.stdoutDropped), part(r.stderr, r.stderrDropped));
}

function join(a: string, b: string): string {
  if (a === '') return b;
  if (b === '') return a;
  return `${a}\n${b}`;
}
