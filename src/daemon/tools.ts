import type { ToolDefinition } from '../tools/tool.js';
import { bashTool } from '../tools/bash/index.js';
import { editorTool } from '../tools/editor/index.js';
import { execTool } from '../tools/exec/index.js';
import { filesTool } from '../tools/files/index.js';
import { javascriptTool } from '../tools/javascript.js';

/** The tools this runner offers to its control plane. */
export function builtinTools(): ToolDefinition<any>[] {
  return [javascriptTool, bashTool, editorTool, execTool, filesTool];
}
