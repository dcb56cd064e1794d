import type { Command } from 'commander';
import { loadConfig } from '../../config/load-config.js';
import { out } from '../cli-context.js';

export function registerConfigCommand(program: Command): void {
  const config = program.command('config').description('configuration files');
  config
    .command('check <file>')
    .description('validate a config file (and SANDBOX_RUNNER_* variables); print the effective config')
    .option('--json', 'print the effective config as JSON')
    .action(async (file: string, opts: { json?: boolean }) => {
      const compiled = await loadConfig({ file });
      if (opts.json) out(JSON.stringify(compiled, null, 2));
      else out(`${file}: ok (state dir ${compiled.stateDir}, default driver ${compiled.sandbox.defaultDriver})`);
    });
}
