import type { Logger } from '../util/logger.js';
import type { DriverName, SandboxDriver, SandboxLimits } from '../sandbox/driver.js';
import type { IsolatePool } from '../sandbox/isolate/isolate-pool.js';
import type { ToolDefinition } from '../tools/tool.js';
import type { CallStatus } from '../protocol/index.js';
import type { PolicyEngine } from '../policy/index.js';

/** Masks secrets in everything that leaves the runner (issue 4 plugs the real one in). */
export interface Redaction {
  redact(text: string): string;
  /** A streaming redactor for one output stream: holds back a tail so a secret split across chunks is caught. */
  stream(): { push(chunk: Buffer): Buffer; end(): Buffer };
}

export const noRedaction: Redaction = {
  redact: (t) => t,
  stream: () => ({ push: (c) => c, end: () => Buffer.alloc(0) }),
};

/** Where the executor records what happened (the audit log, issue 5). */
export interface AuditSink {
  append(event: { type: string; [key: string]: unknown }): unknown;
}

/** The process drivers available on this host. */
export interface DriverSource {
  get(name: Exclude<DriverName, 'isolate'>): SandboxDriver;
  available(): Exclude<DriverName, 'isolate'>[];
}

/** Counters the executor updates (metrics, issue 5). */
export interface ExecutorMetrics {
  callStarted(tool: string, source: string): void;
  callEnded(tool: string, source: string, status: CallStatus, durationMs: number): void;
  refused(reason: string): void;
  bytesStreamed(n: number): void;
  sandboxes(driver: string, delta: 1 | -1): void;
  sessions(open: number): void;
}

export const noMetrics: ExecutorMetrics = {
  callStarted: () => undefined,
  callEnded: () => undefined,
  refused: () => undefined,
  bytesStreamed: () => undefined,
  sandboxes: () => undefined,
  sessions: () => undefined,
};

export interface ExecutorOptions {
  /** Tools served to our own control plane. */
  tools: ToolDefinition<any>[];
  /** Tools served to other sources instead (the agent toolset for Managed Agents). */
  sourceTools?: { 'managed-agents'?: ToolDefinition<any>[] };
  isolates: IsolatePool;
  drivers: DriverSource;
  defaultDriver: Exclude<DriverName, 'isolate'>;
  defaultImage: string;
  limits: SandboxLimits;
  defaultTimeoutMs: number;
  maxTimeoutMs: number;
  maxConcurrent: number;
  sessionIdleTimeoutMs: number;
  maxSessions: number;
  logger?: Logger;
  redaction?: Redaction;
  audit?: AuditSink;
  metrics?: ExecutorMetrics;
  /** Local policy: every call and session is checked against it. */
  policy?: PolicyEngine;
  /**
   * Keep one never-used fresh bwrap sandbox made ahead for the next call
   * without a session (see SpareSandbox). Default false; the daemon follows
   * `sandbox.spare` in the config.
   */
  spareSandbox?: boolean;
}
