import { z } from 'zod';
import { ManagedAgentsConfigSchema } from '../managed-agents/config.js';
import { PolicySchema } from '../policy/policy-schema.js';

/**
 * The runner's configuration file (YAML), one zod schema. Every key has a
 * description; `config/sandbox-runner.example.yaml` shows each one. Unknown keys
 * are errors, so a typo never silently falls back to a default.
 */
const ms = (d: string) => z.number().int().positive().describe(d);
const bytes = (d: string) => z.number().int().positive().describe(d);

export const LimitsConfigSchema = z
  .object({
    wallTimeMs: ms('wall time of one run, ms').default(120_000),
    memoryBytes: bytes('memory of one sandbox, bytes').default(512 * 1024 * 1024),
    maxProcesses: z.number().int().positive().describe('processes and threads in one sandbox').default(256),
    outputBytes: bytes('bytes kept of each of stdout and stderr per run; the rest is cut with a marker').default(1024 * 1024),
    workspaceBytes: bytes('bytes one workspace may hold').default(1024 * 1024 * 1024),
    cpus: z.number().positive().describe('CPU cores one sandbox may use').default(1),
  })
  .strict();

export const ConfigSchema = z
  .object({
    stateDir: z
      .string()
      .min(1)
      .describe('identity, outbox, audit log and vault live here (0700)')
      .default('/var/lib/sandbox-runner'),
    logLevel: z
      .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
      .describe('pino log level')
      .default('info'),
    controlPlane: z
      .object({
        url: z.string().url().optional().describe('control plane URL; default: the one stored at pairing'),
        heartbeatMs: ms('ping interval; a missed pong ends the connection').default(15_000),
        connectTimeoutMs: ms('time allowed for the handshake').default(10_000),
        reconnectInitialMs: ms('first reconnect delay ceiling').default(500),
        reconnectMaxMs: ms('largest reconnect delay ceiling').default(30_000),
        enabled: z.boolean().describe('serve the WebSocket control plane (false: only Managed Agents)').default(true),
      })
      .strict()
      .prefault({}),
    health: z
      .object({
        enabled: z.boolean().describe('serve /healthz, /readyz and /metrics').default(true),
        host: z.string().describe('listen address; keep it on loopback').default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).describe('listen port; 0 picks one').default(9464),
      })
      .strict()
      .prefault({}),
    calls: z
      .object({
        maxConcurrent: z.number().int().positive().describe('tool calls run at once; more are refused as busy').default(8),
        defaultTimeoutMs: ms('deadline of a call that names none').default(120_000),
        maxTimeoutMs: ms('largest deadline a call may ask for').default(3_600_000),
        drainTimeoutMs: ms('on SIGTERM, time in-flight calls get before they are cancelled').default(30_000),
        resultRetentionMs: ms('how long finished results are kept to answer a repeated call id').default(7 * 24 * 3600_000),
      })
      .strict()
      .prefault({}),
    sandbox: z
      .object({
        defaultDriver: z.enum(['bwrap', 'docker']).describe('driver for bash, exec, editor and files').default('bwrap'),
        imagesDir: z.string().optional().describe('sandbox image definitions; built images go to <imagesDir>/out; default <package>/sandbox-images'),
        workDir: z.string().optional().describe('sandbox workspaces; default <stateDir>-work (outside the 0700 state dir)'),
        defaultImage: z.string().describe('image used when a call names none').default('base'),
        spare: z
          .boolean()
          .describe('keep never-used bwrap sandboxes (three), each with its first process pre-started, made ahead for the next calls without a session (default driver bwrap); removed at shutdown')
          .default(true),
        limits: LimitsConfigSchema.prefault({}),
        bwrap: z
          .object({ binary: z.string().describe('bubblewrap executable').default('bwrap') })
          .strict()
          .prefault({}),
        docker: z
          .object({
            binary: z.string().describe('docker or podman executable').default('docker'),
            runtime: z
              .string()
              .optional()
              .describe('OCI runtime registered with the engine, e.g. runsc for gVisor (give it --network=none in daemon.json runtimeArgs)'),
          })
          .strict()
          .prefault({}),
        isolate: z
          .object({
            memoryMb: z.number().int().min(8).max(8192).describe('memory of one isolate, MB').default(64),
            timeoutMs: ms('default time limit of the javascript tool').default(5_000),
            hosts: z.number().int().min(1).max(16).describe('isolate host processes').default(1),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    sessions: z
      .object({
        idleTimeoutMs: ms('a session unused this long is closed').default(15 * 60_000),
        max: z.number().int().positive().describe('open sessions at once').default(32),
      })
      .strict()
      .prefault({}),
    tracing: z
      .object({
        otlpUrl: z.string().url().optional().describe('also export spans to this OTLP/HTTP endpoint (…/v1/traces)'),
      })
      .strict()
      .prefault({}),
    audit: z
      .object({
        checkpointEvery: z.number().int().positive().describe('entries between signed checkpoints').default(100),
        maxFileBytes: bytes('rotate the audit file at this size').default(64 * 1024 * 1024),
      })
      .strict()
      .prefault({}),
    security: z
      .object({
        signatureWindowMs: ms('a signed request older or newer than this is refused').default(5 * 60_000),
      })
      .strict()
      .prefault({}),
    policy: PolicySchema.optional().describe('local policy: what the control plane may ask of this runner; see docs/security.md'),
    managedAgents: ManagedAgentsConfigSchema.optional().describe('serve a Claude Managed Agents self-hosted environment; see docs/managed-agents.md'),
  })
  .strict();

export type Config = z.infer<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;
