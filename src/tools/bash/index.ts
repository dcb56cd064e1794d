export { BASH_SESSION_KEY, bashTool, type BashInput } from './bash-tool.js';
export { ansiCQuote, BashShell, type CommandEnd, type CommandResult } from './bash-shell.js';
