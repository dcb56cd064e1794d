import type { CompiledConfig } from '../config/load-config.js';
import type { DriverSource } from '../executor/executor-options.js';
import type { Logger } from '../util/logger.js';

export interface DaemonOptions {
  config: CompiledConfig;
  logger: Logger;
  /** Process drivers; default: bwrap and docker probed from the config. */
  drivers?: DriverSource;
}

/** Named states of the daemon's life. */
export type DaemonState = 'starting' | 'running' | 'draining' | 'stopped' | 'failed';
