export { execOutcome, execTool, type ExecInput, type ExecSummary } from './exec-tool.js';
export { refusedEnvKeys } from './env-policy.js';
