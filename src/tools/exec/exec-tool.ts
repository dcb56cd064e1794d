import { constants as osConstants } from 'node:os';
import path from 'node:path';
import type { z } from 'zod';
import type { CallStatus } from '../../protocol/index.js';
import { ExecInputSchema } from '../../protocol/tool-inputs.js';
import type { RunResult } from '../../sandbox/driver.js';
import { textOutcome, type ToolDefinition, type ToolOutcome } from '../tool.js';
import { failureOutcome, SANDBOX_WORKSPACE } from '../workspace-path.js';
import { refusedEnvKeys } from './env-policy.js';

export type ExecInput = z.infer<typeof ExecInputSchema>;

/** The machine-readable summary, the second text block of an exec result. */
export interface ExecSummary {
  exitCode: number | null;
  signal: string | null;
  ended: RunResult['ended'];
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  durationMs: number;
}

const ENDED_TEXT: Record<Exclude<RunResult['ended'], 'exited'>, string> = {
  wall_time: 'killed at the time limit',
  cancelled: 'killed because the call was cancelled',
  memory: 'killed at the memory limit',
  processes: 'killed at the process limit',
  disk: 'stopped at the workspace size limit',
  output: 'killed for flooding output far past the output limit',
  sandbox_stopped: 'killed because its sandbox stopped under it (under gVisor, a process or memory overrun stops the whole sandbox)',
};

/**
 * `exec`: one process in the call's sandbox, argv as given, no shell. The
 * result is text a model reads (how it ended, then stdout and stderr, each
 * cut with a visible marker by the driver) plus a JSON block
 * ({@link ExecSummary}). is_error when the exit code is non-zero or the
 * process was killed; status `timed_out` at the deadline, `cancelled` on cancel.
 */
export const execTool: ToolDefinition<ExecInput> = {
  name: 'exec',
  inputSchema: ExecInputSchema,
  sandbox: 'process',
  async run(input, ctx) {
    const refused = refusedEnvKeys(input.env);
    if (refused.length > 0) {
      return textOutcome(
        `env may not set ${refused.join(', ')}: these names belong to the runner (credentials and egress settings are injected by it); remove them and retry.`,
        'failed',
        true,
      );
    }
    if (ctx.signal.aborted) return textOutcome('The call was cancelled before it started.', 'cancelled', true);
    try {
      const sandbox = await ctx.sandbox();
      const cwd = input.cwd === undefined ? undefined : path.posix.resolve(SANDBOX_WORKSPACE, input.cwd);
      const result = await sandbox.run({
        argv: input.argv,
        env: { ...ctx.env, ...input.env },
        timeoutMs: Math.min(input.timeoutMs ?? ctx.timeoutMs, ctx.timeoutMs),
        signal: ctx.signal,
        onOutput: (stream, chunk) => ctx.emit(stream, chunk),
        ...(cwd === undefined ? {} : { cwd }),
        ...(input.stdin === undefined ? {} : { stdin: input.stdin }),
      });
      return execOutcome(result);
    } catch (err) {
      if (ctx.signal.aborted) return textOutcome('The exec call was cancelled.', 'cancelled', true);
      return failureOutcome(err, ctx.logger, 'exec');
    }
  },
};

/**
 * Inside a sandbox a signal death usually reaches us as exit code 128+N (the
 * sandbox's init, or a shell, reports it that way), so name the likely signal.
 */
function signalHint(code: number | null): string {
  if (code === null || code <= 128 || code > 128 + 64) return '';
  const name = Object.entries(osConstants.signals).find(([, n]) => n === code - 128)?.[0];
  return name ? ` (128+${code - 128}: killed by ${name})` : '';
}

/** The tool result of a finished run. */
export function execOutcome(r: RunResult): ToolOutcome {
  const how =
    r.ended !== 'exited'
      ? `${ENDED_TEXT[r.ended]}${r.signal ? ` (${r.signal})` : ''}`
      : r.signal
        ? `killed by signal ${r.signal}`
        : `exit code ${r.exitCode ?? 'unknown'}${signalHint(r.exitCode)}`;
  const status: CallStatus = r.ended === 'wall_time' ? 'timed_out' : r.ended === 'cancelled' ? 'cancelled' : 'completed';
  const isError = r.ended !== 'exited' || r.signal !== null || r.exitCode !== 0;
  const text =
    `${how}\n` +
    `--- stdout${r.stdoutTruncated ? ' (truncated)' : ''} ---\n${r.stdout.toString('utf8')}` +
    `${r.stdout.length > 0 && !r.stdout.toString('utf8').endsWith('\n') ? '\n' : ''}` +
    `--- stderr${r.stderrTruncated ? ' (truncated)' : ''} ---\n${r.stderr.toString('utf8')}`;
  const summary: ExecSummary = {
    exitCode: r.exitCode,
    signal: r.signal,
    ended: r.ended,
    stdoutTruncated: r.stdoutTruncated,
    stderrTruncated: r.stderrTruncated,
    durationMs: r.durationMs,
  };
  return {
    status,
    isError,
    content: [
      { type: 'text', text },
      { type: 'text', text: JSON.stringify(summary) },
    ],
  };
}
