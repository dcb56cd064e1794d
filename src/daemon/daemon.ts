import path from 'node:path';
import { CallJournal } from '../connection/call-journal.js';
import { RunnerConnection } from '../connection/runner-connection.js';
import { Executor } from '../executor/executor.js';
import { websocketUrl } from '../identity/control-plane-url.js';
import { loadIdentity, type Identity } from '../identity/identity.js';
import { ensureStateDir } from '../identity/state-files.js';
import { IsolatePool } from '../sandbox/isolate/isolate-pool.js';
import { describeError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { VERSION } from '../util/package-info.js';
import { ControlPlaneHandler } from './control-plane-handler.js';
import type { DaemonOptions, DaemonState } from './daemon-options.js';
import { createDrivers } from './drivers.js';
import { builtinTools } from './tools.js';

/**
 * The runner daemon: owns the identity, the call journal, the sandboxes and
 * the connectors, from `create()` through `run()` to `shutdown()`.
 */
export class Daemon {
  state: DaemonState = 'starting';
  private firstError: unknown;
  private stopped!: () => void;
  private readonly stoppedPromise = new Promise<void>((r) => (this.stopped = r));
  private shuttingDown: Promise<void> | undefined;

  private constructor(
    readonly options: DaemonOptions,
    readonly identity: Identity,
    readonly journal: CallJournal,
    readonly isolates: IsolatePool,
    readonly executor: Executor,
    readonly connection: RunnerConnection | undefined,
    private readonly logger: Logger,
  ) {}

  /** Loads identity and state; throws a RunnerError that says what to fix. */
  static async create(options: DaemonOptions): Promise<Daemon> {
    const { config, logger } = options;
    await ensureStateDir(config.stateDir);
    const identity = await loadIdentity(config.stateDir);
    const journal = await CallJournal.open(config.stateDir, { retentionMs: config.calls.resultRetentionMs });
    const isolates = new IsolatePool({
      size: config.sandbox.isolate.hosts,
      memoryMb: config.sandbox.isolate.memoryMb,
      timeoutMs: config.sandbox.isolate.timeoutMs,
      logger: logger.child({ component: 'isolate' }),
    });
    const drivers = options.drivers ?? (await createDrivers(config, logger.child({ component: 'sandbox' }), identity.runnerId.toLowerCase().replace(/[^a-z0-9-]/g, '-')));
    const executor = new Executor({
      tools: builtinTools(),
      isolates,
      drivers,
      defaultDriver: config.sandbox.defaultDriver,
      defaultImage: config.sandbox.defaultImage,
      limits: config.sandbox.limits,
      defaultTimeoutMs: config.calls.defaultTimeoutMs,
      maxTimeoutMs: config.calls.maxTimeoutMs,
      maxConcurrent: config.calls.maxConcurrent,
      sessionIdleTimeoutMs: config.sessions.idleTimeoutMs,
      maxSessions: config.sessions.max,
      logger,
    });
    // Calls that were running when the runner last stopped cannot be resumed:
    // answer each with a failure, so the control plane is not left waiting.
    for (const callId of journal.orphans) {
      await journal.complete({
        v: 1,
        id: `result-${callId}`,
        type: 'tool.result',
        callId,
        status: 'failed',
        result: {
          type: 'tool_result',
          tool_use_id: callId,
          content: 'the runner restarted while this call ran; its outcome is unknown; run it again if it is safe to',
          is_error: true,
        },
        durationMs: 0,
      });
      logger.warn({ callId }, 'call was running when the runner stopped; reported as failed');
    }
    let connection: RunnerConnection | undefined;
    if (config.controlPlane.enabled) {
      const handler = new ControlPlaneHandler({
        connection: () => connection!,
        journal,
        executor,
        checkpointDir: path.join(config.stateDir, 'checkpoints'),
        logger,
      });
      connection = new RunnerConnection({
        url: websocketUrl(config.controlPlane.url ?? identity.controlPlaneUrl),
        runnerId: identity.runnerId,
        signingSecretKey: identity.keys.signingSecretKey,
        version: VERSION,
        capabilities: () => ({
          tools: executor.toolNames(),
          drivers: ['isolate', ...drivers.available()],
          maxConcurrentCalls: config.calls.maxConcurrent,
        }),
        heartbeatMs: config.controlPlane.heartbeatMs,
        connectTimeoutMs: config.controlPlane.connectTimeoutMs,
        reconnectInitialMs: config.controlPlane.reconnectInitialMs,
        reconnectMaxMs: config.controlPlane.reconnectMaxMs,
        onMessage: (m) => handler.onMessage(m),
        onConnected: (known) => handler.onConnected(known),
        logger: logger.child({ component: 'connection' }),
      });
    }
    const d = new Daemon(options, identity, journal, isolates, executor, connection, logger);
    return d;
  }

  /** Starts serving; resolves when the daemon has stopped. */
  async run(): Promise<void> {
    this.state = 'running';
    await this.isolates.warm().catch((err: unknown) => this.logger.warn({ err: describeError(err) }, 'isolate host did not start; javascript calls will retry'));
    this.connection?.start();
    this.logger.info(
      { runnerId: this.identity.runnerId, controlPlane: this.identity.controlPlaneUrl, tools: this.executor.toolNames() },
      'sandbox-runner started',
    );
    await this.stoppedPromise;
    if (this.firstError) throw this.firstError;
  }

  /**
   * Drains: no new calls, in-flight calls get `drainMs` to finish and are
   * cancelled after it, results are flushed, then everything is closed.
   * Idempotent; the first error wins.
   */
  shutdown(reason = 'shutdown requested', drainMs = this.options.config.calls.drainTimeoutMs): Promise<void> {
    this.shuttingDown ??= this.doShutdown(reason, drainMs);
    return this.shuttingDown;
  }

  private async doShutdown(reason: string, drainMs: number): Promise<void> {
    this.state = 'draining';
    this.logger.info({ reason, inFlight: this.executor.inFlight, drainMs }, 'draining');
    this.executor.startDraining();
    await this.executor.idle(AbortSignal.timeout(drainMs));
    if (this.executor.inFlight > 0) {
      this.logger.warn({ inFlight: this.executor.inFlight }, 'drain deadline passed; cancelling the calls still running');
      this.executor.cancelAll('the runner is stopping and the drain deadline passed');
      await this.executor.idle(AbortSignal.timeout(5000));
    }
    const steps: Array<[string, () => Promise<unknown>]> = [
      ['connection', async () => this.connection?.stop()],
      ['sessions', () => this.executor.shutdown()],
      ['isolates', () => this.isolates.close()],
      ['journal', () => this.journal.close()],
    ];
    for (const [name, step] of steps) {
      try {
        await step();
      } catch (err) {
        this.firstError ??= err;
        this.logger.error({ step: name, err: describeError(err) }, 'shutdown step failed');
      }
    }
    this.state = this.firstError ? 'failed' : 'stopped';
    this.logger.info({ state: this.state }, 'sandbox-runner stopped');
    this.stopped();
  }
}
