import type { z } from 'zod';
import { EditorInputSchema } from '../../protocol/tool-inputs.js';
import { textOutcome, type ToolDefinition } from '../tool.js';
import { failureOutcome, WorkspaceFs } from '../workspace-path.js';
import { create, type EditorLimits, insert, strReplace, view } from './editor-commands.js';

export type EditorInput = z.infer<typeof EditorInputSchema>;

export interface EditorToolOptions {
  /** Largest file the editor reads or writes; default 10 MiB. */
  maxFileBytes?: number;
  /**
   * Characters `view` shows when the call gives no max_characters; default the
   * sandbox's limits.outputBytes.
   */
  defaultMaxCharacters?: number;
}

/**
 * `str_replace_based_edit_tool` (as Anthropic's `text_editor_20250728`):
 * view, create, str_replace and insert on files of the session's workspace,
 * working from the host on the workspace directory, confined by
 * {@link WorkspaceFs}. Every refusal is an `is_error` result whose text says
 * what to do.
 */
export function createEditorTool(options: EditorToolOptions = {}): ToolDefinition<EditorInput> {
  return {
    name: 'str_replace_based_edit_tool',
    inputSchema: EditorInputSchema,
    sandbox: 'process',
    async run(input, ctx) {
      if (ctx.signal.aborted) return textOutcome('The call was cancelled before it started.', 'cancelled', true);
      try {
        const sandbox = await ctx.sandbox();
        const ws = await WorkspaceFs.open(sandbox.workspaceDir);
        const limits: EditorLimits = {
          maxFileBytes: options.maxFileBytes ?? 10 * 1024 * 1024,
          defaultMaxCharacters: options.defaultMaxCharacters ?? sandbox.limits.outputBytes,
        };
        switch (input.command) {
          case 'view':
            return textOutcome(await view(ws, input.path, input.view_range, input.max_characters, limits));
          case 'create':
            return textOutcome(await create(ws, input.path, input.file_text, limits));
          case 'str_replace':
            return textOutcome(await strReplace(ws, input.path, input.old_str, input.new_str ?? '', limits));
          case 'insert':
            return textOutcome(await insert(ws, input.path, input.insert_line, input.insert_text ?? input.new_str ?? '', limits));
        }
      } catch (err) {
        return failureOutcome(err, ctx.logger, 'str_replace_based_edit_tool');
      }
    },
  };
}

/** The editor tool with default options. */
export const editorTool = createEditorTool();
