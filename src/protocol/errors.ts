/**
 * Wire error codes, sent in `error` messages and in the control plane's HTTP
 * errors. Each is stable: clients switch on the code, people read the message.
 */
export const WIRE_ERROR_CODES = {
  bad_frame: 'the frame is not valid JSON or not a known binary frame',
  bad_message: 'the message failed the protocol schema; the message names the field',
  unsupported_version: 'the message carries a protocol version this end does not speak',
  unauthenticated: 'the runner could not prove its identity',
  signature_invalid: 'the request signature, target runner, timestamp or nonce was refused',
  policy_denied: 'local policy refused the request; the message names the rule',
  unknown_tool: 'no tool of that name on this runner',
  invalid_input: 'the tool input failed its schema; the message names the field',
  unknown_session: 'no open session of that id',
  busy: 'the runner is at its limit of concurrent calls',
  draining: 'the runner is shutting down and takes no new calls',
  internal: 'the runner failed; details are in its log',
} as const;

export type WireErrorCode = keyof typeof WIRE_ERROR_CODES;

import type { z } from 'zod';

/**
 * Turns zod issues into one sentence naming each field, e.g.
 * `toolUse.input.code: expected string, received number`.
 */
export function describeIssues(error: z.ZodError, prefix = ''): string {
  return error.issues
    .slice(0, 5)
    .map((issue) => {
      const where = [prefix, ...issue.path.map(String)].filter(Boolean).join('.');
      return `${where || '(message)'}: ${issue.message}`;
    })
    .join('; ');
}
