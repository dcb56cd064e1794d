import type { Command } from 'commander';
import path from 'node:path';
import { ControlPlane } from '../../control-plane/index.js';
import { installSignalHandlers } from '../../daemon/signals.js';
import { RunnerError } from '../../util/errors.js';
import { createLogger } from '../../util/logger.js';

/** `sandbox-runner control-plane --listen 127.0.0.1:PORT --data-dir DIR`: the reference control plane, in the foreground. */
export function registerControlPlaneCommand(program: Command): void {
  program
    .command('control-plane')
    .description('run the reference control plane (pairing, runner connections, HTTP API)')
    .option('--listen <host:port>', 'address of the HTTP API and the runners\' WebSocket', '127.0.0.1:7070')
    .requiredOption('--data-dir <dir>', 'state directory (admin token, runners, calls, traces)')
    .option('--log-level <level>', 'log level', 'info')
    .action(async (opts: { listen: string; dataDir: string; logLevel: string }) => {
      const m = /^(.*):(\d+)$/.exec(opts.listen);
      if (!m) throw new RunnerError('usage', `--listen ${opts.listen}: write it as host:port, e.g. 127.0.0.1:7070`);
      const host = m[1]!.replace(/^\[|\]$/g, '');
      const logger = createLogger({ level: opts.logLevel, name: 'control-plane' });
      const cp = ControlPlane.create({ listen: { host, port: Number(m[2]) }, dataDir: path.resolve(opts.dataDir), logger });
      await cp.start();
      logger.info({ url: cp.url, adminTokenFile: cp.adminTokenPath }, 'control plane listening');
      let stop!: () => void;
      const stopped = new Promise<void>((r) => (stop = r));
      const remove = installSignalHandlers({
        logger,
        shutdown: async () => {
          await cp.stop();
          stop();
        },
        force: () => stop(),
      });
      try {
        await stopped;
      } finally {
        remove();
      }
    });
}
