import { Command, CommanderError } from 'commander';
import { describeError, RunnerError } from '../util/errors.js';
import { VERSION } from '../util/package-info.js';
import { EXIT_USAGE, exitCodeFor } from './cli-context.js';
import { registerAuditCommand } from './commands/audit.js';
import { registerConfigCommand } from './commands/config.js';
import { registerControlPlaneCommand } from './commands/control-plane.js';
import { registerDevCommand } from './commands/dev.js';
import { registerImagesCommand } from './commands/images.js';
import { registerDoctorCommand } from './commands/doctor.js';
import { registerPairCommand } from './commands/pair.js';
import { registerStartCommand } from './commands/start.js';
import { registerStatusCommand } from './commands/status.js';
import { registerVaultCommand } from './commands/vault.js';

/** Exit codes: 0 ok, 1 failure, 2 usage. Messages go to stderr; output to stdout. */
async function main(argv: string[]): Promise<number> {
  const program = new Command('sandbox-runner')
    .version(VERSION)
    .description('Self-hosted sandbox runner: runs an agent\'s tool calls in sandboxes inside your network.')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  registerPairCommand(program);
  registerStartCommand(program);
  registerDevCommand(program);
  registerConfigCommand(program);
  registerControlPlaneCommand(program);
  registerVaultCommand(program);
  registerAuditCommand(program);
  registerImagesCommand(program);
  registerDoctorCommand(program);
  registerStatusCommand(program);
  for (const cmd of program.commands) cmd.exitOverride();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
      return EXIT_USAGE;
    }
    if (err instanceof RunnerError) {
      process.stderr.write(`sandbox-runner: ${err.message}\n`);
      if (err.detail) process.stderr.write(`${err.detail}\n`);
    } else if (!(err instanceof Error && err.name === 'CliExit')) {
      process.stderr.write(`sandbox-runner: unexpected failure: ${describeError(err)}\n`);
    }
    return exitCodeFor(err);
  }
}

// Only the CLI ends the process, and only once everything it started has stopped.
process.exitCode = await main(process.argv);
// Anything left (a stray timer in a library) must not keep a finished command alive.
setTimeout(() => process.exit(), 2000).unref();
