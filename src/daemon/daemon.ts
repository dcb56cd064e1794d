import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import path from 'node:path';
import { AuditLog } from '../audit/index.js';
import { CallJournal } from '../connection/call-journal.js';
import { RunnerConnection } from '../connection/runner-connection.js';
import { checkStateDir, disableCoreDumps, openCredentialSet, Redactor, Vault } from '../credentials/index.js';
import { Executor } from '../executor/executor.js';
import type { AuditSink } from '../executor/executor-options.js';
import { websocketUrl } from '../identity/control-plane-url.js';
import { b64, fromB64, generateKeys, isPaired, loadIdentity, saveIdentity, type Identity } from '../identity/identity.js';
import { ManagedAgentsConnector, resolveManagedAgentsConfig } from '../managed-agents/index.js';
import { createMetrics, HealthServer, type RunnerMetrics } from '../metrics/index.js';
import { PolicyEngine } from '../policy/index.js';
import { EgressProxy } from '../sandbox/egress/egress-proxy.js';
import { IsolatePool } from '../sandbox/isolate/isolate-pool.js';
import { NonceStore, RequestVerifier } from '../signing/index.js';
import { agentToolset } from '../tools/agent-toolset/index.js';
import { createTracing, type Tracing } from '../tracing/index.js';
import { describeError, isRunnerError, RunnerError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { VERSION } from '../util/package-info.js';
import { ControlPlaneHandler } from './control-plane-handler.js';
import type { DaemonOptions, DaemonState } from './daemon-options.js';
import { createDrivers } from './drivers.js';
import type { DriverRegistry } from '../sandbox/driver-registry.js';
import { DaemonWorkerHost } from './daemon-worker-host.js';
import { executorMetrics } from './runner-metrics.js';
import { builtinTools } from './tools.js';

/** Files in the state dir that hold secrets: refused when readable by others. */
const SECRET_FILES = ['identity.json', 'secret-keys.json', 'vault.key', 'nonces.jsonl', 'calls.jsonl'];

interface Parts {
  identity: Identity;
  journal: CallJournal;
  isolates: IsolatePool;
  executor: Executor;
  audit: AuditLog;
  metrics: RunnerMetrics;
  tracing: Tracing;
  policy: PolicyEngine;
  redactor: Redactor;
  nonces: NonceStore;
  egress: EgressProxy;
  /** The drivers, when the daemon made them (and so closes them at stop). */
  drivers?: DriverRegistry;
  connection?: RunnerConnection;
  handler?: ControlPlaneHandler;
  managedAgents?: ManagedAgentsConnector;
  health?: HealthServer;
}

/**
 * The runner daemon: owns the identity, the call journal, the audit log, the
 * sandboxes and the connectors, from `create()` through `run()` to `shutdown()`.
 */
export class Daemon {
  state: DaemonState = 'starting';
  private firstError: unknown;
  private stopped!: () => void;
  private readonly stoppedPromise = new Promise<void>((r) => (this.stopped = r));
  private shuttingDown: Promise<void> | undefined;

  private constructor(
    readonly options: DaemonOptions,
    private readonly parts: Parts,
    private readonly logger: Logger,
  ) {}

  get identity(): Identity {
    return this.parts.identity;
  }
  get executor(): Executor {
    return this.parts.executor;
  }
  get connection(): RunnerConnection | undefined {
    return this.parts.connection;
  }
  get managedAgents(): ManagedAgentsConnector | undefined {
    return this.parts.managedAgents;
  }
  /** Where /healthz, /readyz and /metrics listen, once running. */
  healthUrl: string | undefined;

  /** Loads identity and state and builds every part; throws a RunnerError that says what to fix. */
  static async create(options: DaemonOptions): Promise<Daemon> {
    const { config, logger } = options;
    const identity =
      config.controlPlane.enabled || (await isPaired(config.stateDir)) ? await loadIdentity(config.stateDir) : await createLocalIdentity(config.stateDir, logger);
    await checkStateDir(config.stateDir, { secretFiles: SECRET_FILES });
    await disableCoreDumps({ logger });
    const redactor = options.redactor ?? new Redactor();
    const policy = new PolicyEngine(config.policy);
    const metrics = createMetrics();
    const audit = await AuditLog.open({
      dir: path.join(config.stateDir, 'audit'),
      signingKey: identity.keys.signingSecretKey,
      publicKey: identity.keys.signingPublicKey,
      checkpointEvery: config.audit.checkpointEvery,
      maxFileBytes: config.audit.maxFileBytes,
      logger: logger.child({ component: 'audit' }),
      onCheckpoint: (cp) => {
        metrics.auditCheckpointsTotal.inc();
        void parts.connection?.send({ type: 'audit.checkpoint', ...cp });
      },
    });
    metrics.auditHealthy.set(1);
    audit.on('failed', (err) => {
      metrics.auditHealthy.set(0);
      logger.fatal({ err: err.message }, 'the audit log cannot be written: the runner takes no calls until it can (fail closed)');
    });
    const tracing = createTracing({
      serviceName: 'sandbox-runner',
      resource: { 'sandbox_runner.id': identity.runnerId },
      onSpans: (spans) => void parts.connection?.send({ type: 'span', spans }),
      ...(config.tracing.otlpUrl ? { otlpUrl: config.tracing.otlpUrl } : {}),
      redact: (s) => redactor.redact(s),
      logger: logger.child({ component: 'tracing' }),
    });
    const journal = await CallJournal.open(config.stateDir, {
      retentionMs: config.calls.resultRetentionMs,
      onDepth: (depth) => metrics.outboxDepth.set(depth),
    });
    const nonces = await NonceStore.open({ path: path.join(config.stateDir, 'nonces.jsonl') });
    const isolates = new IsolatePool({
      size: config.sandbox.isolate.hosts,
      memoryMb: config.sandbox.isolate.memoryMb,
      timeoutMs: config.sandbox.isolate.timeoutMs,
      logger: logger.child({ component: 'isolate' }),
    });
    const egress = new EgressProxy({ logger: logger.child({ component: 'egress' }), exemptCidrs: exemptCidrs(policy), allowMetadata: policy.policy.network.allowMetadata });
    const owner = identity.runnerId.toLowerCase().replace(/[^a-z0-9-]/g, '-');
    // Drivers the daemon makes are closed at its stop; drivers handed in belong to the caller.
    const ownDrivers = options.drivers ? undefined : await createDrivers(config, logger.child({ component: 'sandbox' }), owner, egress);
    const drivers = options.drivers ?? ownDrivers!;
    const auditSink: AuditSink = {
      append: (event) => {
        try {
          return audit.append(event);
        } catch (err) {
          // The 'failed' event has said so already; the call itself is refused by `accepting`.
          return undefined;
        }
      },
    };
    const executor = new Executor({
      tools: builtinTools(),
      sourceTools: { 'managed-agents': agentToolset() },
      isolates,
      drivers,
      defaultDriver: config.sandbox.defaultDriver,
      defaultImage: config.sandbox.defaultImage,
      spareSandbox: config.sandbox.spare,
      limits: config.sandbox.limits,
      defaultTimeoutMs: config.calls.defaultTimeoutMs,
      maxTimeoutMs: config.calls.maxTimeoutMs,
      maxConcurrent: config.calls.maxConcurrent,
      sessionIdleTimeoutMs: config.sessions.idleTimeoutMs,
      maxSessions: config.sessions.max,
      logger,
      redaction: redactor,
      audit: auditSink,
      metrics: executorMetrics(metrics),
      policy,
    });
    const parts: Parts = { identity, journal, isolates, executor, audit, metrics, tracing, policy, redactor, nonces, egress, ...(ownDrivers ? { drivers: ownDrivers } : {}) };
    await failOrphans(journal, logger);
    const vault = new Vault({ stateDir: config.stateDir, env: process.env });
    const accepting = () =>
      audit.healthy ? ({ ok: true } as const) : ({ ok: false, reason: `the audit log cannot be written (${audit.error?.message ?? 'failed'})` } as const);

    let connectedOnce = false;
    if (config.controlPlane.enabled) {
      const handler = new ControlPlaneHandler({
        connection: () => parts.connection!,
        journal,
        executor,
        checkpointDir: path.join(config.stateDir, 'checkpoints'),
        logger,
        audit: auditSink,
        tracing,
        accepting,
        onRefused: (reason) => metrics.refusalsTotal.inc({ reason }),
        verifier: new RequestVerifier({
          publicKey: fromB64(identity.controlPlaneSigningKey),
          runnerId: identity.runnerId,
          windowMs: config.security.signatureWindowMs,
          nonceStore: nonces,
        }),
        openCredentials: (credentials, binding) =>
          openCredentialSet(credentials, {
            boxPublicKey: identity.keys.boxPublicKey,
            boxSecretKey: identity.keys.boxSecretKey,
            expect: 'callId' in binding ? { callId: binding.callId } : { sessionId: binding.sessionId },
            vault,
            redactor,
          }),
      });
      parts.handler = handler;
      parts.connection = new RunnerConnection({
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
        onConnected: async (known) => {
          metrics.connected.set({ connector: 'control-plane' }, 1);
          // The first handshake is a connect; every later one a reconnect.
          if (connectedOnce) metrics.reconnectsTotal.inc({ connector: 'control-plane' });
          connectedOnce = true;
          await handler.onConnected(known);
          metrics.outboxDepth.set(journal.depth);
        },
        onDisconnected: () => metrics.connected.set({ connector: 'control-plane' }, 0),
        logger: logger.child({ component: 'connection' }),
      });
    }

    const managed = config.managedAgents ?? (process.env.ANTHROPIC_ENVIRONMENT_ID ? {} : undefined);
    if (managed) {
      const resolved = await resolveManagedAgentsConfig(managed as never, process.env, config.source.file ? path.dirname(config.source.file) : process.cwd());
      parts.managedAgents = new ManagedAgentsConnector({
        config: resolved,
        host: new DaemonWorkerHost({ executor, accepting, audit: auditSink, tracing }),
        stateDir: config.stateDir,
        // Bound into the sandbox, so outside the 0700 state dir. The name is one the drivers take for an
        // orphaned sandbox: copies a crashed runner left behind are removed at the next start.
        memoryRoot: path.join(config.sandbox.workDir, 'managed-agents-memory'),
        logger: logger.child({ component: 'managed-agents' }),
      });
    }

    if (config.health.enabled) {
      parts.health = new HealthServer({
        host: config.health.host,
        port: config.health.port,
        metrics,
        logger: logger.child({ component: 'health' }),
        readiness: () => readiness(parts, config.controlPlane.enabled),
        status: () => daemonStatus(parts, config.controlPlane.enabled),
      });
    }
    return new Daemon(options, parts, logger);
  }

  /** Starts serving; resolves when the daemon has stopped. */
  async run(): Promise<void> {
    const p = this.parts;
    this.state = 'running';
    p.audit.append({ type: 'runner.start', version: VERSION, runnerId: p.identity.runnerId });
    await p.isolates.warm().catch((err: unknown) => this.logger.warn({ err: describeError(err) }, 'isolate host did not start; javascript calls will retry'));
    if (p.health) {
      const addr = await p.health.start();
      this.healthUrl = addr.url;
    }
    p.connection?.start();
    p.managedAgents?.start().catch((err: unknown) => {
      this.logger.error({ err: describeError(err) }, 'the Managed Agents connector stopped');
      if (!p.connection) {
        this.firstError ??= isRunnerError(err, 'credential_invalid') ? new RunnerError('config_invalid', describeError(err)) : err;
        void this.shutdown('the Managed Agents connector stopped');
      }
    });
    this.logger.info(
      { runnerId: p.identity.runnerId, controlPlane: p.connection ? p.identity.controlPlaneUrl : 'disabled', managedAgents: Boolean(p.managedAgents), tools: p.executor.toolNames() },
      'sandbox-runner started',
    );
    await this.stoppedPromise;
    if (this.firstError) throw this.firstError;
  }

  /** Reloads the local policy from a fresh config (SIGHUP); connections and calls carry on. */
  async reload(): Promise<void> {
    if (!this.options.reloadConfig) return;
    const config = await this.options.reloadConfig();
    this.parts.policy.reload(config.policy);
    this.parts.audit.append({ type: 'policy.reload' });
    this.logger.info('policy reloaded');
  }

  /**
   * Drains: no new calls, in-flight calls get `drainMs` to finish and are
   * cancelled after it, results are flushed, then everything is closed in
   * order. Idempotent; the first error wins.
   */
  shutdown(reason = 'shutdown requested', drainMs = this.options.config.calls.drainTimeoutMs): Promise<void> {
    this.shuttingDown ??= this.doShutdown(reason, drainMs);
    return this.shuttingDown;
  }

  private async doShutdown(reason: string, drainMs: number): Promise<void> {
    const p = this.parts;
    this.state = 'draining';
    this.logger.info({ reason, inFlight: p.executor.inFlight, drainMs }, 'draining');
    p.executor.startDraining();
    const managedStopped = p.managedAgents?.shutdown();
    await p.executor.idle(AbortSignal.timeout(drainMs));
    if (p.executor.inFlight > 0) {
      this.logger.warn({ inFlight: p.executor.inFlight }, 'drain deadline passed; cancelling the calls still running');
      p.executor.cancelAll('the runner is stopping and the drain deadline passed');
      await p.executor.idle(AbortSignal.timeout(5000));
    }
    const steps: Array<[string, () => Promise<unknown>]> = [
      ['managed-agents', async () => managedStopped],
      // Results of the calls that just ended are journaled and sent before the connection closes.
      ['results', async () => p.handler?.settle(5000)],
      ['tracing', () => p.tracing.shutdown()],
      ['audit', async () => {
        p.audit.append({ type: 'runner.stop', reason });
        await p.audit.close();
      }],
      ['connection', async () => p.connection?.stop()],
      ['sessions', () => p.executor.shutdown()],
      ['drivers', async () => p.drivers?.close()],
      ['isolates', () => p.isolates.close()],
      ['egress', async () => (p.egress as { close?: () => Promise<void> }).close?.()],
      ['health', async () => p.health?.stop()],
      ['journal', () => p.journal.close()],
      ['nonces', () => p.nonces.close()],
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

/**
 * A runner that serves Managed Agents only is never paired, yet its audit log
 * needs signing keys that outlive a restart: it makes them once and stores
 * them like a paired identity. The pinned control-plane key is all zeros, a
 * key no signature verifies against, so this identity trusts no control plane.
 */
async function createLocalIdentity(stateDir: string, logger: Logger): Promise<Identity> {
  const keys = await generateKeys();
  const identity: Identity = {
    runnerId: `local-${hostname().toLowerCase().replace(/[^a-z0-9-]/g, '-').slice(0, 40)}-${randomBytes(4).toString('hex')}`,
    name: hostname(),
    labels: { identity: 'local' },
    controlPlaneUrl: 'http://127.0.0.1/',
    controlPlaneSigningKey: b64(new Uint8Array(32)),
    signingPublicKey: b64(keys.signingPublicKey),
    boxPublicKey: b64(keys.boxPublicKey),
    pairedAt: new Date().toISOString(),
    keys,
  };
  await saveIdentity(stateDir, identity);
  logger.info({ runnerId: identity.runnerId, stateDir }, 'no control plane and not paired: made a local identity for signing the audit log');
  return loadIdentity(stateDir);
}

/** What `GET /status` answers (read by `sandbox-runner status`); ids and counts only, never a credential. */
export interface DaemonStatus {
  runnerId: string;
  version: string;
  callsInFlight: number;
  controlPlane: { enabled: boolean; connected: boolean };
  managedAgents: ReturnType<ManagedAgentsConnector['status']> | null;
}

function daemonStatus(p: Parts, controlPlane: boolean): DaemonStatus {
  return {
    runnerId: p.identity.runnerId,
    version: VERSION,
    callsInFlight: p.executor.inFlight,
    controlPlane: { enabled: controlPlane, connected: Boolean(p.connection?.connected) },
    managedAgents: p.managedAgents?.status() ?? null,
  };
}

/**
 * Address ranges the egress proxy lets through although they are blocked by
 * default, because local policy allows them (metadata addresses go by
 * allowMetadata alone, whatever range holds them). Read at start (a SIGHUP reload of
 * the policy does not change the running proxy).
 */
function exemptCidrs(policy: PolicyEngine): string[] {
  const n = policy.policy.network;
  return [
    ...(n.allowLoopback ? ['127.0.0.0/8', '::1/128'] : []),
    ...(n.allowPrivate ? ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', 'fc00::/7'] : []),
  ];
}

/** Ready = connected to every connector it serves and able to take calls. */
function readiness(p: Parts, controlPlane: boolean): { ready: boolean; reasons: string[] } {
  const reasons: string[] = [];
  if (controlPlane && !p.connection?.connected) reasons.push('not connected to the control plane');
  if (!p.audit.healthy) reasons.push('the audit log cannot be written; calls are refused');
  const ma = p.managedAgents?.status();
  if (ma && (ma.state === 'failed' || ma.state === 'stopped')) reasons.push(`the Managed Agents connector is ${ma.state}`);
  return { ready: reasons.length === 0, reasons };
}

/**
 * Calls that were running when the runner last stopped cannot be resumed:
 * each is answered with a failure, so the control plane is not left waiting.
 */
async function failOrphans(journal: CallJournal, logger: Logger): Promise<void> {
  for (const callId of journal.orphans) {
    journal.complete({
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
  if (journal.orphans.length) await journal.sync();
}
