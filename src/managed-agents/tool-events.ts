import { z } from 'zod';

/** The built-in tool call the worker may answer. Validated once, where the event comes off the stream. */
export const ToolUseEventSchema = z.object({
  type: z.enum(['agent.tool_use', 'agent.custom_tool_use']),
  id: z.string().min(1),
  name: z.string().min(1).max(256),
  input: z.record(z.string(), z.unknown()),
  evaluated_permission: z.string().optional().nullable(),
  session_thread_id: z.string().optional().nullable(),
});
export type ToolUseEvent = z.infer<typeof ToolUseEventSchema>;

/** What a malformed tool call event still lets us do: answer it, if it has an id. */
export type ParsedToolUse =
  | { ok: true; event: ToolUseEvent }
  | { ok: false; id: string | undefined; type: string; message: string };

/** Parses a tool call event; on failure names the first bad field ("input: expected object"). */
export function parseToolUse(raw: unknown): ParsedToolUse {
  const r = ToolUseEventSchema.safeParse(raw);
  if (r.success) return { ok: true, event: r.data };
  const obj = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
  const issue = r.error.issues[0];
  const field = issue?.path.join('.') || 'event';
  return {
    ok: false,
    id: typeof obj.id === 'string' && obj.id !== '' ? obj.id : undefined,
    type: typeof obj.type === 'string' ? obj.type : 'agent.tool_use',
    message: `malformed ${String(obj.type ?? 'tool call')} event: ${field}: ${issue?.message ?? 'invalid'}`,
  };
}

/** Content block accepted in a `user.tool_result`. */
export type ResultText = { type: 'text'; text: string };

/** Never post empty text: the API refuses it (400 `minimum string length is 1`) and the session deadlocks. */
export function toSessionContent(content: string | Array<{ type: 'text'; text: string }>): ResultText[] {
  if (typeof content === 'string') return [{ type: 'text', text: content || '(no output)' }];
  const out = content.map((b) => ({ type: 'text' as const, text: b.text || '(no output)' }));
  return out.length > 0 ? out : [{ type: 'text', text: '(no output)' }];
}

/** The result event answering a call: `user.tool_result` for a built-in, `user.custom_tool_result` for a custom one. */
export function resultEvent(type: string, id: string, isError: boolean, content: ResultText[]):
  | { type: 'user.tool_result'; tool_use_id: string; is_error: boolean; content: ResultText[] }
  | { type: 'user.custom_tool_result'; custom_tool_use_id: string; is_error: boolean; content: ResultText[] } {
  return type === 'agent.custom_tool_use'
    ? { type: 'user.custom_tool_result', custom_tool_use_id: id, is_error: isError, content }
    : { type: 'user.tool_result', tool_use_id: id, is_error: isError, content };
}

/** Tools of agent_toolset_20260401 that Anthropic's servers run in both environment types. */
export const SERVER_SIDE_TOOLS: ReadonlySet<string> = new Set(['web_search', 'web_fetch']);
