import type { z } from 'zod';
import type { ToolContext, ToolDefinition, ToolOutcome } from '../tool.js';
import { FS_HELPER_SOURCE } from './fs-helper-source.js';
import {
  AgentEditInputSchema,
  AgentGlobInputSchema,
  AgentGrepInputSchema,
  AgentReadInputSchema,
  AgentWriteInputSchema,
} from './schemas.js';

/** Where the file tools may reach besides /workspace. */
export interface FileToolRoots {
  /** Extra roots, e.g. the memory mounts (`/mnt/memory`). */
  roots: string[];
  /** Roots that write and edit refuse (read-only memory stores). */
  readOnlyRoots: string[];
  /** Largest file read returns whole; default 256 KiB. */
  maxReadBytes?: number;
}

type Op = 'read' | 'write' | 'edit' | 'glob' | 'grep';

/**
 * Runs one file operation inside the call's sandbox with the helper; the
 * answer is the helper's text, an error when it says so.
 */
async function runInSandbox(op: Op, args: unknown, ctx: ToolContext, roots: () => FileToolRoots): Promise<ToolOutcome> {
  const sandbox = await ctx.sandbox();
  const r = roots();
  const request = JSON.stringify({ op, args, roots: r.roots, readOnlyRoots: r.readOnlyRoots, maxReadBytes: r.maxReadBytes ?? 256 * 1024 });
  const res = await sandbox.run({
    argv: ['python3', '-I', '-c', FS_HELPER_SOURCE],
    stdin: request,
    cwd: '/workspace',
    timeoutMs: ctx.timeoutMs,
    signal: ctx.signal,
  });
  if (res.ended === 'cancelled') return { status: 'cancelled', content: `${op}: cancelled`, isError: true };
  if (res.ended === 'wall_time') return { status: 'timed_out', content: `${op}: timed out after ${ctx.timeoutMs} ms`, isError: true };
  let answer: { ok?: boolean; text?: string } | undefined;
  try {
    answer = JSON.parse(res.stdout.toString('utf8')) as { ok?: boolean; text?: string };
  } catch {
    answer = undefined;
  }
  if (!answer || typeof answer.text !== 'string') {
    const err = res.stderr.toString('utf8').trim().split('\n').slice(-3).join('\n');
    return { status: 'failed', content: `${op}: the file helper failed in the sandbox (exit ${res.exitCode ?? res.signal ?? '?'})${err ? `: ${err}` : ''}`, isError: true };
  }
  return answer.ok ? { status: 'completed', content: answer.text, isError: false } : { status: 'failed', content: answer.text, isError: true };
}

function fileTool<S extends z.ZodType>(name: Op, schema: S, roots: () => FileToolRoots): ToolDefinition<z.infer<S>> {
  return {
    name,
    inputSchema: schema as unknown as z.ZodType<z.infer<S>>,
    sandbox: 'process',
    run: (input, ctx) => runInSandbox(name, input, ctx, roots),
  };
}

/** read, write, edit, glob, grep of agent_toolset_20260401, run inside the session sandbox. */
export function agentFileTools(roots: () => FileToolRoots): ToolDefinition[] {
  return [
    fileTool('read', AgentReadInputSchema, roots),
    fileTool('write', AgentWriteInputSchema, roots),
    fileTool('edit', AgentEditInputSchema, roots),
    fileTool('glob', AgentGlobInputSchema, roots),
    fileTool('grep', AgentGrepInputSchema, roots),
  ] as ToolDefinition[];
}
