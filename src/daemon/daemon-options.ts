import type { CompiledConfig } from '../config/load-config.js';
import type { Redactor } from '../credentials/index.js';
import type { DriverSource } from '../executor/executor-options.js';
import type { Logger } from '../util/logger.js';

export interface DaemonOptions {
  config: CompiledConfig;
  logger: Logger;
  /** The process's redactor; the logger masks through it too. Default: a new one. */
  redactor?: Redactor;
  /** Process drivers; default: bwrap and docker probed from the config. */
  drivers?: DriverSource;
  /** Reads the config again (SIGHUP); default: none, the policy stays. */
  reloadConfig?: () => Promise<CompiledConfig>;
}

/** Named states of the daemon's life. */
export type DaemonState = 'starting' | 'running' | 'draining' | 'stopped' | 'failed';
