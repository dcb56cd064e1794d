import type { CompiledConfig } from '../config/load-config.js';
import type { DriverSource } from '../executor/executor-options.js';
import { BwrapDriver } from '../sandbox/bwrap/bwrap-driver.js';
import type { SandboxDriver } from '../sandbox/driver.js';
import { RunnerError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';

/** Builds and probes the process drivers named in the config. */
export async function createDrivers(config: CompiledConfig, logger: Logger): Promise<DriverSource> {
  const bwrap = new BwrapDriver({
    imagesDir: config.sandbox.imagesDir,
    workRoot: config.sandbox.workDir,
    bwrapPath: config.sandbox.bwrap.binary,
    logger: logger.child({ driver: 'bwrap' }),
  });
  const drivers = new Map<string, SandboxDriver>([['bwrap', bwrap]]);
  const status = new Map<string, { available: boolean; message?: string; fix?: string }>();
  for (const [name, d] of drivers) {
    const s = await d.probe();
    status.set(name, s);
    if (!s.available) logger.warn({ driver: name, fix: s.fix }, `${name} driver unavailable: ${s.message}`);
  }
  return {
    get(name) {
      const d = drivers.get(name);
      const s = status.get(name);
      if (!d || !s?.available) {
        throw new RunnerError('driver_unavailable', `the ${name} driver is not available here: ${s?.message ?? 'not configured'}${s?.fix ? `; fix: ${s.fix}` : ''}`);
      }
      return d;
    },
    available: () => [...status].filter(([, s]) => s.available).map(([n]) => n as 'bwrap' | 'docker'),
  };
}
