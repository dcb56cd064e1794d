import { z } from 'zod';

/**
 * Input schemas of the runner's tools. Both ends use them: the control plane
 * refuses a bad input with 400 before it reaches a runner, and the runner checks
 * again whatever arrives (any control plane), answering `is_error` naming the field.
 * Shapes follow Anthropic's client tools so `tool_use` blocks pass straight through.
 */

/** `javascript`: code run in a fresh V8 isolate; the result is the last expression's value. */
export const JavascriptInputSchema = z
  .object({
    code: z.string().min(1).max(1_000_000).describe('JavaScript source; the value of the last expression is returned'),
    timeoutMs: z.number().int().positive().max(600_000).optional().describe('time limit, default 5000'),
  })
  .strict();

/** `bash` (as bash_20250124): one persistent shell per session. */
export const BashInputSchema = z
  .object({
    command: z.string().max(1_000_000).optional().describe('the bash command to run'),
    restart: z.boolean().optional().describe('true to start a fresh shell'),
  })
  .strict()
  .refine((v) => v.command !== undefined || v.restart === true, {
    message: 'give a command, or restart: true',
    path: ['command'],
  });

const path = z.string().min(1).max(4096);

/** `str_replace_based_edit_tool` (as text_editor_20250728). */
export const EditorInputSchema = z.discriminatedUnion('command', [
  z
    .object({
      command: z.literal('view'),
      path,
      view_range: z.tuple([z.number().int(), z.number().int()]).optional(),
      max_characters: z.number().int().positive().optional(),
    })
    .strict(),
  z.object({ command: z.literal('create'), path, file_text: z.string() }).strict(),
  z.object({ command: z.literal('str_replace'), path, old_str: z.string(), new_str: z.string().optional() }).strict(),
  z
    .object({
      command: z.literal('insert'),
      path,
      insert_line: z.number().int().nonnegative(),
      insert_text: z.string().optional(),
      new_str: z.string().optional(),
    })
    .strict()
    .refine((v) => v.insert_text !== undefined || v.new_str !== undefined, {
      message: 'give insert_text (or new_str) with the text to insert',
      path: ['insert_text'],
    }),
]);

/** `exec`: one process, no shell. */
export const ExecInputSchema = z
  .object({
    argv: z.array(z.string().max(131_072)).min(1).max(4096),
    stdin: z.string().max(64 * 1024 * 1024).optional(),
    env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string()).optional(),
    cwd: z.string().max(4096).optional(),
    timeoutMs: z.number().int().positive().max(24 * 3600_000).optional(),
  })
  .strict();

/** `files`: tar upload into, and download out of, the workspace (base64 tar over the wire). */
export const FilesInputSchema = z.discriminatedUnion('action', [
  z
    .object({
      action: z.literal('upload'),
      path: z.string().max(4096).default('.').describe('directory in the workspace to extract into'),
      tar: z.string().describe('base64 tar archive'),
    })
    .strict(),
  z.object({ action: z.literal('download'), path: z.string().min(1).max(4096) }).strict(),
]);

/** Input schemas by tool name, for the control plane's first check. */
export const TOOL_INPUT_SCHEMAS: Record<string, z.ZodType> = {
  javascript: JavascriptInputSchema,
  bash: BashInputSchema,
  str_replace_based_edit_tool: EditorInputSchema,
  exec: ExecInputSchema,
  files: FilesInputSchema,
};
