import type { CompiledConfig } from '../config/load-config.js';
import { DriverRegistry } from '../sandbox/driver-registry.js';
import type { Logger } from '../util/logger.js';
import type { EgressProxy } from '../sandbox/egress/egress-proxy.js';

/**
 * Builds the process drivers from the config and probes them: a driver that is
 * not installed is reported with its fix, and the others keep working.
 */
export async function createDrivers(config: CompiledConfig, logger: Logger, owner: string, egress?: EgressProxy): Promise<DriverRegistry> {
  const registry = new DriverRegistry({
    bwrap: {
      imagesDir: config.sandbox.imagesDir,
      workRoot: config.sandbox.workDir,
      bwrapPath: config.sandbox.bwrap.binary,
      // One cgroup parent per runner: at start a runner removes what is left
      // under its parent, which must never be another runner's live sandboxes.
      cgroupParent: `sandbox-runner-${owner}`,
      ...(egress ? { egress } : {}),
    },
    docker: {
      workRoot: config.sandbox.workDir,
      cli: config.sandbox.docker.binary,
      owner,
      ...(egress ? { egress } : {}),
      ...(config.sandbox.docker.runtime ? { runtime: config.sandbox.docker.runtime } : {}),
    },
    logger,
  });
  await registry.start();
  return registry;
}
