import type { ManagedAgentsConfig } from './config.js';
import { resolveManagedAgentsConfig } from './config.js';
import { apiStatus, createWorkerClient } from './api-client.js';
import { describeError, isRunnerError } from '../util/errors.js';
import type { ManagedAgentsConnector, ManagedAgentsStatus } from './connector.js';

/** One line of `sandbox-runner doctor`. */
export interface DoctorCheck {
  name: string;
  ok: boolean;
  message: string;
}

/**
 * `sandbox-runner doctor` checks for the connector: the key file (present,
 * 0600, one line) and that the work queue answers with this key (queue stats,
 * which the environment key may read). Never prints the key.
 */
export async function checkManagedAgents(
  config: ManagedAgentsConfig,
  options: { env?: NodeJS.ProcessEnv; configDir?: string; signal?: AbortSignal } = {},
): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  let resolved;
  try {
    resolved = await resolveManagedAgentsConfig(config, options.env ?? process.env, options.configDir);
    checks.push({ name: 'managed-agents key', ok: true, message: `environment ${resolved.environmentId}: key read, permissions ok` });
  } catch (err) {
    checks.push({ name: 'managed-agents key', ok: false, message: isRunnerError(err) ? err.message : describeError(err) });
    return checks;
  }
  const client = createWorkerClient({ baseUrl: resolved.baseUrl, credential: resolved.environmentKey, helper: 'environments-work-poller', timeoutMs: 15_000 });
  try {
    const stats = await client.beta.environments.work.stats(resolved.environmentId, {}, options.signal ? { signal: options.signal } : {});
    checks.push({ name: 'managed-agents queue', ok: true, message: `${resolved.baseUrl} answers: ${stats.depth} queued, ${stats.pending} pending, ${stats.workers_polling ?? 0} workers polling` });
  } catch (err) {
    const status = apiStatus(err);
    const message =
      status === 401 || status === 403
        ? `the work queue refused the environment key (${status}); check the key, the environment id and the base URL`
        : status === 404
          ? `environment ${resolved.environmentId} was not found at ${resolved.baseUrl}; check the environment id`
          : `the work queue at ${resolved.baseUrl} did not answer: ${describeError(err)}`;
    checks.push({ name: 'managed-agents queue', ok: false, message });
  }
  return checks;
}

/** `sandbox-runner status`: the leased sessions of a running connector. */
export function managedAgentsStatus(connector: ManagedAgentsConnector): ManagedAgentsStatus {
  return connector.status();
}
