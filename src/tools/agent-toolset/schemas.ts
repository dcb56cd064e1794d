import { z } from 'zod';

/**
 * Input schemas of the six tools of `agent_toolset_20260401` that a
 * self-hosted worker runs (the API's own types, section 3.2 of the reference).
 * Unknown keys are refused so a typo is named back to the model.
 */
const filePath = z.string().min(1).max(4096).describe('path relative to /workspace, or absolute inside /workspace or /mnt/memory');

export const AgentBashInputSchema = z
  .object({
    command: z.string().max(1_000_000).optional().describe('the command to run in the persistent shell'),
    restart: z.boolean().optional().describe('true starts a fresh shell'),
    timeout_ms: z.number().int().min(0).max(600_000).optional().describe('time limit of this command; 0 or absent means the default (120 s)'),
  })
  .strict()
  .refine((v) => v.command !== undefined || v.restart === true, { message: 'give a command, or restart: true', path: ['command'] });

export const AgentReadInputSchema = z
  .object({
    file_path: filePath,
    view_range: z.tuple([z.number().int(), z.number().int()]).optional().describe('[start_line, end_line], 1-indexed, inclusive; end ≤ 0 reads to the end'),
  })
  .strict();

export const AgentWriteInputSchema = z.object({ file_path: filePath, content: z.string().max(64 * 1024 * 1024) }).strict();

export const AgentEditInputSchema = z
  .object({
    file_path: filePath,
    old_string: z.string().min(1).describe('text to replace; must occur exactly once unless replace_all'),
    new_string: z.string(),
    replace_all: z.boolean().optional(),
  })
  .strict();

export const AgentGlobInputSchema = z
  .object({ pattern: z.string().min(1).max(4096).describe('doublestar glob, e.g. **/*.ts'), path: filePath.optional() })
  .strict();

export const AgentGrepInputSchema = z
  .object({ pattern: z.string().min(1).max(4096).describe('regular expression'), path: filePath.optional() })
  .strict();

export type AgentBashInput = z.infer<typeof AgentBashInputSchema>;
export type AgentReadInput = z.infer<typeof AgentReadInputSchema>;
export type AgentWriteInput = z.infer<typeof AgentWriteInputSchema>;
export type AgentEditInput = z.infer<typeof AgentEditInputSchema>;
export type AgentGlobInput = z.infer<typeof AgentGlobInputSchema>;
export type AgentGrepInput = z.infer<typeof AgentGrepInputSchema>;

/** The tool names of agent_toolset_20260401 run by the worker. */
export const AGENT_TOOLSET_NAMES = ['bash', 'read', 'write', 'edit', 'glob', 'grep'] as const;
