import { RunnerError } from '../util/errors.js';
import { noopLogger, type Logger } from '../util/logger.js';
import type { DriverStatus, SandboxDriver } from './driver.js';
import { BwrapDriver, type BwrapDriverOptions } from './bwrap/bwrap-driver.js';
import { DockerDriver, type DockerDriverOptions } from './docker/docker-driver.js';

export type ProcessDriverName = SandboxDriver['name'];

export interface DriverRegistryOptions {
  /** Options of the bwrap driver, or false to leave it out. */
  bwrap?: Omit<BwrapDriverOptions, 'logger'> | false;
  /** Options of the docker driver, or false to leave it out. */
  docker?: Omit<DockerDriverOptions, 'logger'> | false;
  /** Drivers made by the caller, used as they are (take precedence over the above by name). */
  drivers?: SandboxDriver[];
  /** Remove the sandboxes a previous runner left behind, at start(). Default true. */
  cleanupOrphans?: boolean;
  logger?: Logger;
}

/** What start() found for one driver. */
export interface DriverReport extends DriverStatus {
  name: ProcessDriverName;
  /** Orphaned sandboxes removed at start. */
  orphansRemoved?: number;
}

/**
 * The process drivers of this runner. start() probes each one and says which
 * work, with the fix for those that do not; get() hands out a working driver
 * or refuses with that fix, while the others keep working.
 */
export class DriverRegistry {
  private readonly drivers = new Map<ProcessDriverName, SandboxDriver>();
  private readonly reports = new Map<ProcessDriverName, DriverReport>();
  private readonly logger: Logger;

  constructor(private readonly options: DriverRegistryOptions) {
    this.logger = options.logger ?? noopLogger;
    if (options.bwrap) this.drivers.set('bwrap', new BwrapDriver({ ...options.bwrap, logger: this.logger.child({ driver: 'bwrap' }) }));
    if (options.docker) this.drivers.set('docker', new DockerDriver({ ...options.docker, logger: this.logger.child({ driver: 'docker' }) }));
    for (const d of options.drivers ?? []) this.drivers.set(d.name, d);
  }

  /**
   * Probes every driver (in parallel) and removes orphans of the usable ones.
   * Never throws for a driver that does not work: that is in its report.
   */
  async start(signal?: AbortSignal): Promise<DriverReport[]> {
    await Promise.all(
      [...this.drivers].map(async ([name, driver]) => {
        signal?.throwIfAborted();
        let report: DriverReport;
        try {
          report = { name, ...(await driver.probe()) };
        } catch (err) {
          report = { name, available: false, message: `probing the ${name} driver failed: ${(err as Error).message}` };
        }
        if (report.available && this.options.cleanupOrphans !== false) {
          const cleaner = driver as Partial<{ cleanupOrphans: () => Promise<string[]> }>;
          if (typeof cleaner.cleanupOrphans === 'function') {
            const removed = await cleaner.cleanupOrphans().catch((err: unknown) => {
              this.logger.warn({ err, driver: name }, 'removing orphaned sandboxes failed');
              return [];
            });
            report.orphansRemoved = removed.length;
          }
        }
        this.reports.set(name, report);
        if (report.available) this.logger.info({ driver: name, detail: report.message }, `sandbox driver ${name} is ready`);
        else this.logger.warn({ driver: name, fix: report.fix }, `sandbox driver ${name} is unavailable: ${report.message}${report.fix ? `; fix: ${report.fix}` : ''}`);
        for (const warning of report.warnings ?? []) this.logger.warn({ driver: name }, `sandbox driver ${name}: ${warning}`);
      }),
    );
    return this.list();
  }

  /** Every configured driver's report, after start(). */
  list(): DriverReport[] {
    return [...this.reports.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Names of the drivers that work. */
  available(): ProcessDriverName[] {
    return this.list().filter((r) => r.available).map((r) => r.name);
  }

  /**
   * The driver `name`, when it works.
   * @throws RunnerError `driver_unavailable` naming the fix when it is not
   *   installed or not configured; `internal` before start().
   */
  get(name: string): SandboxDriver {
    const driver = this.drivers.get(name as ProcessDriverName);
    if (!driver) {
      const configured = [...this.drivers.keys()].join(', ') || 'none';
      throw new RunnerError('driver_unavailable', `sandbox driver ${JSON.stringify(name)} is not configured on this runner; use one of: ${configured}`);
    }
    const report = this.reports.get(driver.name);
    if (!report) throw new RunnerError('internal', 'the driver registry was not started; call start() before get()');
    if (!report.available) {
      throw new RunnerError('driver_unavailable', `sandbox driver ${name} is unavailable: ${report.message ?? 'probe failed'}${report.fix ? `; run: ${report.fix}` : ''}`);
    }
    return driver;
  }

  /**
   * At a clean stop, once every sandbox is disposed: each driver releases what
   * it holds on the host (bwrap: its helper process and its cgroup folders).
   * A driver that fails to is logged; the others still close.
   */
  async close(): Promise<void> {
    await Promise.all(
      [...this.drivers].map(async ([name, driver]) => {
        if (!this.reports.get(name)?.available || !driver.close) return;
        await driver.close().catch((err: unknown) => this.logger.warn({ err, driver: name }, `closing the ${name} driver failed`));
      }),
    );
  }
}
