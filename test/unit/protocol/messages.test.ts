import { describe, expect, it } from 'vitest';
import {
  decodeOutputFrame,
  encodeOutputFrame,
  parseControlMessage,
  parseRunnerMessage,
  TOOL_INPUT_SCHEMAS,
} from '../../../src/protocol/index.js';

const call = {
  v: 1,
  id: 'm1',
  type: 'tool.call',
  toolUse: { type: 'tool_use', id: 'toolu_1', name: 'javascript', input: { code: '1+1' } },
};

describe('protocol v1 schemas', () => {
  it('accepts a tool.call carrying a Messages API tool_use block', () => {
    const p = parseControlMessage(JSON.stringify(call));
    expect(p.ok).toBe(true);
    expect(p.ok && p.message.type === 'tool.call' && p.message.toolUse.name).toBe('javascript');
  });

  it('names the field of a schema violation', () => {
    const p = parseControlMessage(JSON.stringify({ ...call, toolUse: { ...call.toolUse, id: 42 } }));
    expect(p).toMatchObject({ ok: false, code: 'bad_message', ref: 'm1' });
    expect(!p.ok && p.message).toMatch(/^toolUse\.id: /);
  });

  it('refuses unknown keys (strict envelope)', () => {
    const p = parseControlMessage(JSON.stringify({ ...call, extra: true }));
    expect(p.ok).toBe(false);
    expect(!p.ok && p.message).toMatch(/extra/);
  });

  it("takes a tool.call's network allowlist as data, and refuses one that is not {allow: [domains]}", () => {
    // The allowlist is for the call's fresh sandbox; with a sessionId the runner refuses
    // the call (the session decides its network: test/integration/security/refusals.test.ts).
    const p = parseControlMessage(JSON.stringify({ ...call, network: { allow: ['example.com'] } }));
    expect(p).toMatchObject({ ok: true, message: { network: { allow: ['example.com'] } } });
    for (const network of [{ allow: 'example.com' }, { allow: [''] }, { allow: ['example.com'], ports: [22] }, { allow: Array(101).fill('a.example') }]) {
      const bad = parseControlMessage(JSON.stringify({ ...call, network }));
      expect(bad.ok).toBe(false);
      expect(!bad.ok && bad.message).toMatch(/^network/);
    }
  });

  it('refuses an unknown message type', () => {
    const p = parseControlMessage(JSON.stringify({ v: 1, id: 'x', type: 'tool.explode' }));
    expect(p).toMatchObject({ ok: false, code: 'bad_message' });
    expect(!p.ok && p.message).toMatch(/^type: /);
  });

  it('answers bad JSON and other versions with their own codes', () => {
    expect(parseControlMessage('{not json')).toMatchObject({ ok: false, code: 'bad_frame' });
    expect(parseControlMessage('[1,2]')).toMatchObject({ ok: false, code: 'bad_frame' });
    expect(parseControlMessage(JSON.stringify({ ...call, v: 2 }))).toMatchObject({ ok: false, code: 'unsupported_version' });
  });

  it('accepts a tool.result with tool_result content as text blocks', () => {
    const p = parseRunnerMessage(
      JSON.stringify({
        v: 1,
        id: 'r1',
        type: 'tool.result',
        callId: 'toolu_1',
        status: 'completed',
        durationMs: 2.5,
        result: { type: 'tool_result', tool_use_id: 'toolu_1', content: [{ type: 'text', text: '2' }], is_error: false },
      }),
    );
    expect(p.ok).toBe(true);
  });

  it('round-trips a binary output frame', () => {
    const data = Buffer.from([0, 1, 2, 255, 10]);
    const frame = encodeOutputFrame({ callId: 'toolu_abc', seq: 7, stream: 'stderr', data });
    expect(decodeOutputFrame(frame)).toEqual({ callId: 'toolu_abc', seq: 7, stream: 'stderr', data });
    expect(decodeOutputFrame(Buffer.from([1, 2, 3]))).toHaveProperty('error');
    const bad = Buffer.from(frame);
    bad[0] = 0;
    expect(decodeOutputFrame(bad)).toEqual({ error: 'binary frame has an unknown magic byte' });
  });

  it('checks tool inputs with the shared schemas', () => {
    expect(TOOL_INPUT_SCHEMAS.javascript!.safeParse({ code: 'x' }).success).toBe(true);
    expect(TOOL_INPUT_SCHEMAS.javascript!.safeParse({ code: 5 }).success).toBe(false);
    expect(TOOL_INPUT_SCHEMAS.bash!.safeParse({}).success).toBe(false);
    expect(TOOL_INPUT_SCHEMAS.str_replace_based_edit_tool!.safeParse({ command: 'insert', path: 'a', insert_line: 0, new_str: 'x' }).success).toBe(true);
  });
});
