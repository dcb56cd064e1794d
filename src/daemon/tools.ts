import type { ToolDefinition } from '../tools/tool.js';
import { javascriptTool } from '../tools/javascript.js';

/** The tools this runner offers to its control plane. */
export function builtinTools(): ToolDefinition<any>[] {
  return [javascriptTool];
}
