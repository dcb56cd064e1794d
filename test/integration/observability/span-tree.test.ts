import { chmod } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Spine } from '../../helpers/spine.js';
import { waitUntil } from '../../helpers/processes.js';

interface Span {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  source: 'control-plane' | 'runner';
  status: string;
  attributes: Record<string, unknown>;
}

// A real control plane and a real runner process: the trace of a call as the
// control plane serves it, with the runner's spans under the control plane's root.
describe('the span tree of a call', () => {
  let spine: Spine;
  let runnerId: string;

  beforeAll(async () => {
    spine = await Spine.start();
    // bwrap refuses a sandbox work root below a folder other users cannot enter (mkdtemp makes 0700).
    await chmod(spine.dir, 0o711);
    const paired = await spine.pair();
    runnerId = paired.runnerId;
    await spine.startRunner(runnerId, paired.stateDir);
  });
  afterAll(async () => {
    await spine?.stop();
  });

  /** Runs a call, then waits until its trace holds `expected` runner span names. */
  async function traceOf(body: Record<string, unknown>, expected: string[]): Promise<{ record: any; spans: Span[] }> {
    const r = await spine.api.call(runnerId, body);
    expect(r.status).toBe(200);
    expect(r.body.traceId).toMatch(/^[0-9a-f]{32}$/);
    // Spans travel after the result, batched: wait until the last one has arrived.
    const spans = await waitUntil(async () => {
      const t = await spine.api.request('GET', `/v1/traces/${r.body.traceId}`);
      if (t.status !== 200) return undefined;
      const list = t.body.spans as Span[];
      const names = list.filter((s) => s.source === 'runner').map((s) => s.name);
      if (expected.every((n) => names.includes(n))) return list;
      // Thrown, not returned: a timeout then says which spans had arrived.
      throw new Error(`runner spans so far: ${names.join(', ')}`);
    }, 20_000, `runner spans ${expected.join(', ')}`);
    return { record: r.body, spans };
  }

  /** Checks the tree: one control-plane root, every other span's parent is in the trace, tool.call under the root. */
  function checkTree(spans: Span[], traceId: string): { root: Span; call: Span; byId: Map<string, Span> } {
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    expect(spans.every((s) => s.traceId === traceId)).toBe(true);
    const roots = spans.filter((s) => !s.parentSpanId);
    expect(roots).toHaveLength(1);
    const root = roots[0]!;
    expect(root.source).toBe('control-plane');
    for (const s of spans) if (s !== root) expect(byId.has(s.parentSpanId!), `parent of ${s.name}`).toBe(true);
    const calls = spans.filter((s) => s.source === 'runner' && s.name === 'tool.call');
    expect(calls).toHaveLength(1);
    const call = calls[0]!;
    // The runner's root span hangs under a control-plane span (the one whose traceparent it received).
    expect(byId.get(call.parentSpanId!)!.source).toBe('control-plane');
    // Every other runner span descends from tool.call.
    for (const s of spans.filter((x) => x.source === 'runner' && x !== call)) {
      let p = byId.get(s.parentSpanId!);
      while (p && p !== call) p = p.parentSpanId ? byId.get(p.parentSpanId) : undefined;
      expect(p, `${s.name} descends from tool.call`).toBe(call);
    }
    return { root, call, byId };
  }

  it('javascript: tool.call → verify, policy, execute, stream under the control plane root', async () => {
    const { record, spans } = await traceOf({ name: 'javascript', input: { code: 'console.log("hi"); 6 * 7' } }, ['tool.call', 'verify', 'policy', 'execute', 'stream']);
    expect(record.content).toEqual([
      { type: 'text', text: 'hi\n' },
      { type: 'text', text: '42' },
    ]);
    const { call, byId } = checkTree(spans, record.traceId);
    expect(call.attributes).toMatchObject({ 'tool.name': 'javascript', 'call.id': record.id, 'call.status': 'completed' });
    const runnerSpans = spans.filter((s) => s.source === 'runner');
    for (const name of ['verify', 'policy', 'execute']) {
      const s = runnerSpans.find((x) => x.name === name)!;
      expect(byId.get(s.parentSpanId!)!.name, `${name} is a child of tool.call`).toBe('tool.call');
      expect(s.status).not.toBe('error');
    }
    expect(runnerSpans.some((s) => s.name === 'sandbox.create')).toBe(false);
  });

  it('bash: tool.call → verify, policy, sandbox.create, execute, stream', async () => {
    const { record, spans } = await traceOf({ name: 'bash', input: { command: 'echo from-bash' } }, ['tool.call', 'verify', 'policy', 'sandbox.create', 'execute', 'stream']);
    expect(record.content).toContain('from-bash');
    const { call } = checkTree(spans, record.traceId);
    expect(call.attributes).toMatchObject({ 'tool.name': 'bash', 'call.status': 'completed' });
    const create = spans.find((s) => s.name === 'sandbox.create')!;
    expect(create.source).toBe('runner');
    // Whether the call took the spare sandbox made ahead, or made its own.
    expect(typeof create.attributes['sandbox.spare']).toBe('boolean');
  });

  it('a failed call marks tool.call as an error', async () => {
    const { record, spans } = await traceOf({ name: 'javascript', input: { code: 'throw new Error("boom")' } }, ['tool.call', 'execute']);
    expect(record.isError).toBe(true);
    const call = spans.find((s) => s.name === 'tool.call')!;
    expect(call.status).toBe('error');
  });
});
