import type { z } from 'zod';
import type { Logger } from '../util/logger.js';
import type { CallStatus, ToolResultContent } from '../protocol/index.js';
import type { OutputStream, Sandbox } from '../sandbox/driver.js';
import type { IsolatePool } from '../sandbox/isolate/isolate-pool.js';

/** What a tool hands back; the executor wraps it in a `tool_result`. */
export interface ToolOutcome {
  status: CallStatus;
  content: ToolResultContent;
  isError: boolean;
}

/**
 * Per-session state a tool keeps across calls (the bash tool's shell). Values
 * are disposed when the session closes.
 */
export interface SessionState {
  get<T extends { dispose(): Promise<void> }>(key: string): T | undefined;
  set<T extends { dispose(): Promise<void> }>(key: string, value: T): void;
  delete(key: string): void;
}

export interface ToolContext {
  callId: string;
  /** Aborted on cancel, deadline or shutdown; the reason is a RunnerError. */
  signal: AbortSignal;
  /** Deadline of this call in ms (already capped by limits and policy). */
  timeoutMs: number;
  logger: Logger;
  /** Streams output to the control plane; awaiting it applies backpressure. */
  emit(stream: OutputStream, chunk: Buffer): Promise<void>;
  /** The call's process sandbox (the session's, or a fresh one removed after the call). */
  sandbox(): Promise<Sandbox>;
  /** The isolate pool (javascript tool). */
  isolates: IsolatePool;
  /** State kept for the session; a fresh, throwaway one for a call without session. */
  session: SessionState;
  /** Extra environment for this call (injected credentials, issue 4). */
  env: Record<string, string>;
}

export interface ToolDefinition<I = unknown> {
  /** The name in `tool_use` blocks. */
  readonly name: string;
  /** zod schema of the input; a failure is answered with is_error naming the field. */
  readonly inputSchema: z.ZodType<I>;
  /** Which kind of sandbox the tool needs. */
  readonly sandbox: 'isolate' | 'process' | 'none';
  run(input: I, ctx: ToolContext): Promise<ToolOutcome>;
}

/** Helper for the common case: a text result. */
export function textOutcome(text: string, status: CallStatus = 'completed', isError = status !== 'completed'): ToolOutcome {
  return { status, content: text, isError };
}
