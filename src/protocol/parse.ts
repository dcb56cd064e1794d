import { z } from 'zod';
import { describeIssues, type WireErrorCode } from './errors.js';
import { ControlMessageSchema, PROTOCOL_VERSION, RunnerMessageSchema, type ControlMessage, type RunnerMessage } from './messages.js';

export type Parsed<T> = { ok: true; message: T } | { ok: false; code: WireErrorCode; message: string; ref?: string };

function parseWith<T>(schema: z.ZodType<T>, text: string): Parsed<T> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { ok: false, code: 'bad_frame', message: 'frame is not valid JSON; send one JSON object per text frame' };
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return { ok: false, code: 'bad_frame', message: 'frame is not a JSON object; send {"v":1,"type":...}' };
  }
  const obj = raw as Record<string, unknown>;
  const ref = typeof obj.id === 'string' ? obj.id : undefined;
  if (obj.v !== PROTOCOL_VERSION) {
    return {
      ok: false,
      code: 'unsupported_version',
      message: `v: expected ${PROTOCOL_VERSION}, got ${JSON.stringify(obj.v) ?? 'nothing'}; upgrade the older end`,
      ...(ref ? { ref } : {}),
    };
  }
  const result = schema.safeParse(raw);
  if (!result.success) {
    return { ok: false, code: 'bad_message', message: describeIssues(result.error), ...(ref ? { ref } : {}) };
  }
  return { ok: true, message: result.data };
}

/** Parses a text frame from the control plane (the runner's boundary). */
export function parseControlMessage(text: string): Parsed<ControlMessage> {
  return parseWith(ControlMessageSchema, text);
}

/** Parses a text frame from a runner (the control plane's boundary). */
export function parseRunnerMessage(text: string): Parsed<RunnerMessage> {
  return parseWith(RunnerMessageSchema, text);
}
