import type { CallStatus } from '../protocol/index.js';

/**
 * What the Managed Agents connector needs from the daemon: sandboxes for
 * sessions and the shared dispatcher. The daemon implements it once with its
 * drivers, policy, audit log, tracer, metrics and redactor, so a tool call
 * from Managed Agents goes through exactly the same path as one from our own
 * control plane. The connector never touches a driver or a tool directly.
 */
export interface WorkerHost {
  /**
   * Opens the sandbox that serves one leased session: workspace seen inside
   * at `/workspace`, each memory store bind-mounted at its `path`
   * (`/mnt/memory/<store>`), read-only where `readOnly`. The environment the
   * host gives the sandbox must hold no `ANTHROPIC_*` variable (see
   * `stripAnthropicEnv`). Aborting `signal` cancels the start.
   */
  openSession(spec: HostSessionSpec): Promise<HostSession>;

  /**
   * Runs one tool call through the shared dispatcher (schema check, policy,
   * audit, spans, metrics, redaction). Never throws for a tool failure: bad
   * input, an unknown tool, a policy refusal or a cancelled call come back as
   * `isError: true` with text that names the cause. Aborting `signal` cancels
   * the call (the bash shell is killed) and resolves with status `cancelled`.
   */
  dispatch(call: HostToolCall): Promise<HostToolResult>;

  /** Tool names the host serves for this source (the six of agent_toolset_20260401). */
  toolNames(): readonly string[];
}

/** A host directory bind-mounted into a session sandbox. */
export interface HostMount {
  /** Directory on the host, created by the connector. */
  hostPath: string;
  /** Absolute path inside the sandbox, e.g. `/mnt/memory/notes`. */
  path: string;
  readOnly: boolean;
}

export interface HostSessionSpec {
  /** Stable key of the session (the Managed Agents session id); safe for ids after sanitising. */
  sessionKey: string;
  /** Driver from config (`bwrap` default). */
  driver: 'bwrap' | 'docker';
  mounts: HostMount[];
  signal: AbortSignal;
}

/** A live session sandbox; disposing it kills everything inside and removes the workspace. */
export interface HostSession {
  readonly sessionKey: string;
  /** Host path of the workspace (`/workspace` inside); the connector writes skills there. */
  readonly workspaceDir: string;
  /** Idempotent. Keeps the first error. */
  dispose(): Promise<void>;
}

export interface HostToolCall {
  source: 'managed-agents';
  session: HostSession;
  toolUse: { id: string; name: string; input: unknown };
  /** Deadline of the call in ms (the SDKs' per-tool timeout is 120 s). */
  timeoutMs: number;
  signal: AbortSignal;
}

export interface HostToolResult {
  /** Text, or text blocks; an empty text is replaced by `(no output)` before posting. */
  content: string | Array<{ type: 'text'; text: string }>;
  isError: boolean;
  status: CallStatus;
}

/** Returns a copy of `env` without any `ANTHROPIC_*` variable (keys, tokens, base URL). */
export function stripAnthropicEnv(env: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined || /^ANTHROPIC_/i.test(k)) continue;
    out[k] = v;
  }
  return out;
}
