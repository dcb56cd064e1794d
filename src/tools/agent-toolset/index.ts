import type { ToolDefinition } from '../tool.js';
import { agentBashTool } from './bash-tool.js';
import { agentFileTools, type FileToolRoots } from './file-tools.js';

export { AGENT_TOOLSET_NAMES } from './schemas.js';
export type { FileToolRoots } from './file-tools.js';

/**
 * The six worker-run tools of `agent_toolset_20260401` (bash, read, write,
 * edit, glob, grep) as the runner's ToolDefinitions: the shared dispatcher
 * validates their input and runs them in the session's process sandbox.
 * `roots` gives the memory mounts of the session the call belongs to.
 */
export function agentToolset(roots: () => FileToolRoots = () => ({ roots: ['/mnt/memory'], readOnlyRoots: [] })): ToolDefinition[] {
  return [agentBashTool() as ToolDefinition, ...agentFileTools(roots)];
}
