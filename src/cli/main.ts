import { Command, CommanderError } from 'commander';
import { describeError, RunnerError } from '../util/errors.js';
import { VERSION } from '../util/package-info.js';
import { EXIT_USAGE, exitCodeFor } from './cli-context.js';
import type { Command as CommandType } from 'commander';

type Register = (program: CommandType) => void;

/**
 * Each command's module, loaded only when that command runs: `config check`
 * or `audit verify` should not pay for loading the daemon, the control plane
 * and OpenTelemetry. Help and unknown commands load them all.
 */
const COMMANDS: Record<string, () => Promise<Register>> = {
  pair: async () => (await import('./commands/pair.js')).registerPairCommand,
  start: async () => (await import('./commands/start.js')).registerStartCommand,
  dev: async () => (await import('./commands/dev.js')).registerDevCommand,
  config: async () => (await import('./commands/config.js')).registerConfigCommand,
  'control-plane': async () => (await import('./commands/control-plane.js')).registerControlPlaneCommand,
  vault: async () => (await import('./commands/vault.js')).registerVaultCommand,
  audit: async () => (await import('./commands/audit.js')).registerAuditCommand,
  images: async () => (await import('./commands/images.js')).registerImagesCommand,
  doctor: async () => (await import('./commands/doctor.js')).registerDoctorCommand,
  status: async () => (await import('./commands/status.js')).registerStatusCommand,
};

/** Exit codes: 0 ok, 1 failure, 2 usage. Messages go to stderr; output to stdout. */
async function main(argv: string[]): Promise<number> {
  const program = new Command('sandbox-runner')
    .version(VERSION)
    .description('Self-hosted sandbox runner: runs an agent\'s tool calls in sandboxes inside your network.')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  const name = argv[2];
  const wanted = name !== undefined && name in COMMANDS ? [COMMANDS[name]!] : Object.values(COMMANDS);
  for (const load of wanted) (await load())(program);
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
