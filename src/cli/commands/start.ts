import type { Command } from 'commander';
import { loadConfig } from '../../config/load-config.js';
import { Daemon } from '../../daemon/daemon.js';
import { installSignalHandlers } from '../../daemon/signals.js';
import { createLogger } from '../../util/logger.js';

export function registerStartCommand(program: Command): void {
  program
    .command('start')
    .description('run the daemon: connect to the control plane and serve tool calls')
    .option('--config <file>', 'config file (YAML)')
    .option('--state-dir <dir>', 'state directory (overrides the config)')
    .option('--log-level <level>', 'fatal, error, warn, info, debug or trace')
    .action(async (opts: { config?: string; stateDir?: string; logLevel?: string }) => {
      const config = await loadConfig({
        ...(opts.config ? { file: opts.config } : {}),
        overrides: { ...(opts.stateDir ? { stateDir: opts.stateDir } : {}), ...(opts.logLevel ? { logLevel: opts.logLevel } : {}) },
      });
      const logger = createLogger({ level: config.logLevel });
      const daemon = await Daemon.create({ config, logger });
      const remove = installSignalHandlers({
        logger,
        shutdown: (reason) => daemon.shutdown(reason),
        force: () => daemon.executor.cancelAll('stop signal received twice'),
      });
      try {
        await daemon.run();
      } finally {
        remove();
      }
    });
}
