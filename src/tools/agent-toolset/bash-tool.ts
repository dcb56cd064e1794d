import type { ToolDefinition } from '../tool.js';
import { AgentBashInputSchema, type AgentBashInput } from './schemas.js';
import { BashShell } from './bash-shell.js';

const SHELL_KEY = 'agent-toolset.bash';
/** The SDK's default bash timeout. */
export const BASH_DEFAULT_TIMEOUT_MS = 120_000;

/**
 * `bash` of agent_toolset_20260401: one persistent shell per session, in the
 * session's sandbox. A non-zero exit is an error carrying the output (or
 * `exit N`); a timeout or cancel kills the shell and says so.
 */
export function agentBashTool(): ToolDefinition<AgentBashInput> {
  return {
    name: 'bash',
    inputSchema: AgentBashInputSchema,
    sandbox: 'process',
    async run(input, ctx) {
      let shell = ctx.session.get<BashShell>(SHELL_KEY);
      if (input.restart) {
        await shell?.dispose();
        ctx.session.delete(SHELL_KEY);
        shell = undefined;
        if (input.command === undefined) return { status: 'completed', content: 'bash session restarted', isError: false };
      }
      if (!shell) {
        shell = new BashShell(await ctx.sandbox(), ctx.env);
        ctx.session.set(SHELL_KEY, shell);
      }
      const timeoutMs = Math.min(input.timeout_ms || BASH_DEFAULT_TIMEOUT_MS, ctx.timeoutMs);
      const r = await shell.run(input.command ?? '', timeoutMs, ctx.signal);
      if (r.ended === 'timed_out') {
        return { status: 'timed_out', content: `${r.output}\nbash: command timed out after ${timeoutMs} ms; the shell was restarted`.trim(), isError: true };
      }
      if (r.ended === 'cancelled') return { status: 'cancelled', content: `${r.output}\nbash: command cancelled; the shell was restarted`.trim(), isError: true };
      if (r.ended === 'died') return { status: 'failed', content: `${r.output}\nbash: the shell exited; the next command starts a fresh one`.trim(), isError: true };
      if (r.exitCode !== 0) return { status: 'failed', content: r.output || `exit ${r.exitCode}`, isError: true };
      return { status: 'completed', content: r.output, isError: false };
    },
  };
}
