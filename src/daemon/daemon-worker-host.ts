import { randomBytes } from 'node:crypto';
import type { Executor } from '../executor/executor.js';
import type { AuditSink } from '../executor/executor-options.js';
import { AGENT_TOOLSET_NAMES } from '../tools/agent-toolset/index.js';
import type { HostSession, HostSessionSpec, HostToolCall, HostToolResult, WorkerHost } from '../managed-agents/index.js';
import type { Tracing } from '../tracing/index.js';

export interface DaemonWorkerHostOptions {
  executor: Executor;
  audit?: AuditSink;
  tracing?: Tracing;
  accepting: () => { ok: true } | { ok: false; reason: string };
}

/**
 * The Managed Agents connector's way into the daemon: its sessions are the
 * executor's sessions and its tool calls go through the same dispatcher as our
 * own control plane's (policy, audit, spans, metrics, redaction), tagged with
 * source `managed-agents`.
 */
export class DaemonWorkerHost implements WorkerHost {
  constructor(private readonly options: DaemonWorkerHostOptions) {}

  toolNames(): readonly string[] {
    return AGENT_TOOLSET_NAMES;
  }

  async openSession(spec: HostSessionSpec): Promise<HostSession> {
    const ex = this.options.executor;
    // Executor session ids are ours; the Managed Agents id is kept for the audit log.
    const id = `ma-${spec.sessionKey.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 80)}-${randomBytes(3).toString('hex')}`;
    const session = ex.openSession(id, { driver: spec.driver, mounts: spec.mounts, labels: { source: 'managed-agents' } });
    this.options.audit?.append({ type: 'session.open', sessionId: id, source: 'managed-agents', managedAgentsSession: spec.sessionKey });
    try {
      const sandbox = await session.sandbox(spec.signal);
      return {
        sessionKey: id,
        workspaceDir: sandbox.workspaceDir,
        dispose: async () => {
          this.options.audit?.append({ type: 'session.close', sessionId: id, source: 'managed-agents' });
          await ex.closeSession(id);
        },
      };
    } catch (err) {
      await ex.closeSession(id).catch(() => undefined);
      throw err;
    }
  }

  async dispatch(call: HostToolCall): Promise<HostToolResult> {
    const accepting = this.options.accepting();
    if (!accepting.ok) return { status: 'failed', isError: true, content: `the runner takes no calls now: ${accepting.reason}` };
    const span = this.options.tracing?.startCallSpan('tool.call', undefined, { 'tool.name': call.toolUse.name, 'call.id': call.toolUse.id, 'call.source': 'managed-agents' });
    this.options.audit?.append({ type: 'call.received', callId: call.toolUse.id, tool: call.toolUse.name, sessionId: call.session.sessionKey, source: 'managed-agents' });
    const r = await this.options.executor.dispatch({
      callId: call.toolUse.id,
      source: 'managed-agents',
      name: call.toolUse.name,
      input: call.toolUse.input,
      sessionId: call.session.sessionKey,
      timeoutMs: call.timeoutMs,
      signal: call.signal,
      ...(span ? { span } : {}),
    });
    span?.setAttributes({ 'call.status': r.status }).end(r.isError ? 'error' : 'ok');
    this.options.audit?.append({ type: 'call.result', callId: call.toolUse.id, tool: call.toolUse.name, status: r.status, source: 'managed-agents', durationMs: Math.round(r.durationMs) });
    return { status: r.status, isError: r.isError, content: r.content };
  }
}
