import type { Command } from 'commander';
import os from 'node:os';
import path from 'node:path';
import { AuditLog } from '../../audit/index.js';
import { pair } from '../../identity/pairing.js';
import { RunnerError } from '../../util/errors.js';
import { out } from '../cli-context.js';
import { defaultStateDir } from './common.js';

export function registerPairCommand(program: Command): void {
  program
    .command('pair')
    .description('pair this runner with a control plane using a one-time token')
    .requiredOption('--url <url>', 'control plane URL (https://…, or http://127.0.0.1:… on loopback)')
    .requiredOption('--token <token>', 'one-time pairing token from the control plane')
    .option('--state-dir <dir>', 'where the identity is stored', defaultStateDir())
    .option('--name <name>', 'runner name shown by the control plane', os.hostname())
    .option('--label <k=v...>', 'labels, repeatable', collectLabels, {})
    .option('--json', 'print the result as JSON')
    .action(async (opts: { url: string; token: string; stateDir: string; name: string; label: Record<string, string>; json?: boolean }) => {
      const identity = await pair({ url: opts.url, token: opts.token, stateDir: opts.stateDir, name: opts.name, labels: opts.label });
      // The audit log starts with the pairing, signed with the keys just made.
      const audit = await AuditLog.open({
        dir: path.join(opts.stateDir, 'audit'),
        signingKey: identity.keys.signingSecretKey,
        publicKey: identity.keys.signingPublicKey,
      });
      audit.append({ type: 'runner.paired', runnerId: identity.runnerId, controlPlaneUrl: identity.controlPlaneUrl, name: opts.name, labels: opts.label });
      await audit.close();
      if (opts.json) out(JSON.stringify({ runnerId: identity.runnerId, stateDir: opts.stateDir, controlPlaneUrl: identity.controlPlaneUrl }));
      else out(`paired as ${identity.runnerId} with ${identity.controlPlaneUrl}; identity stored in ${opts.stateDir}`);
    });
}

function collectLabels(value: string, prev: Record<string, string>): Record<string, string> {
  const i = value.indexOf('=');
  if (i <= 0) throw new RunnerError('usage', `--label ${value}: write labels as key=value`);
  return { ...prev, [value.slice(0, i)]: value.slice(i + 1) };
}
