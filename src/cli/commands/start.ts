import type { Command } from 'commander';
import { loadConfig } from '../../config/load-config.js';
import { createLogRedaction, Redactor } from '../../credentials/index.js';
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
      // The same sources every time: SIGHUP reads the file (and env) again with the same flags.
      const load = () =>
        loadConfig({
          ...(opts.config ? { file: opts.config } : {}),
          overrides: { ...(opts.stateDir ? { stateDir: opts.stateDir } : {}), ...(opts.logLevel ? { logLevel: opts.logLevel } : {}) },
        });
      const config = await load();
      // One redactor for the process: every log line is masked with the secrets of the calls running.
      const redactor = new Redactor();
      const logger = createLogger({ level: config.logLevel, redact: createLogRedaction(redactor) });
      const daemon = await Daemon.create({ config, logger, redactor, reloadConfig: load });
      const remove = installSignalHandlers({
        logger,
        shutdown: (reason) => daemon.shutdown(reason),
        reload: () => daemon.reload(),
        force: () => daemon.executor.cancelAll('stop signal received twice'),
      });
      try {
        await daemon.run();
      } finally {
        remove();
      }
    });
}
