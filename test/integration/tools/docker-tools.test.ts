import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bashTool } from '../../../src/tools/bash/index.js';
import { editorTool } from '../../../src/tools/editor/index.js';
import { execTool } from '../../../src/tools/exec/index.js';
import { callTool, dockerSandbox, makeToolContext, MemorySessionState, outcomeText, type TestBwrap } from '../../helpers/tool-context.js';

// The same tools on the docker driver: nothing in them is bwrap-specific.
describe('tools in a real docker sandbox', () => {
  let box: TestBwrap;
  const session = new MemorySessionState();
  beforeAll(async () => {
    box = await dockerSandbox();
  });
  afterAll(async () => {
    await session.dispose();
    await box?.dispose();
  });
  const bash = (command: string | undefined, opts: { timeoutMs?: number; restart?: boolean } = {}) =>
    callTool(
      bashTool,
      { ...(command === undefined ? {} : { command }), ...(opts.restart ? { restart: true } : {}) },
      makeToolContext({ sandbox: box.sandbox, session, ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}) }),
    );

  it('bash keeps state, runs here-docs, comments and background jobs', async () => {
    await bash('cd /tmp && export V=1 # comment');
    expect((await bash('pwd; echo $V')).content).toBe('/tmp\n1');
    expect((await bash("cat <<EOF\nx $V\nEOF")).content).toBe('x 1');
    expect(await bash('sleep 30 &')).toEqual({ status: 'completed', isError: false, content: '' });
  });

  it('bash times out and must be restarted', async () => {
    expect((await bash('sleep 30', { timeoutMs: 500 })).status).toBe('timed_out');
    expect((await bash('echo x')).status).toBe('failed');
    expect((await bash('echo "[$V]"', { restart: true })).content).toBe('[]');
  });

  it('exec reports exit codes', async () => {
    const out = await callTool(execTool, { argv: ['sh', '-c', 'echo e >&2; exit 4'] }, makeToolContext({ sandbox: box.sandbox }));
    expect(out.isError).toBe(true);
    expect(Array.isArray(out.content) && out.content[0]?.text).toBe('exit code 4\n--- stdout ---\n--- stderr ---\ne\n');
  });

  it('the editor and the container see the same workspace, and the container user may change editor files', async () => {
    await callTool(editorTool, { command: 'create', path: 'notes/a.txt', file_text: 'one\n' }, makeToolContext({ sandbox: box.sandbox }));
    expect((await bash('echo two >> /workspace/notes/a.txt && cat /workspace/notes/a.txt')).content).toBe('one\ntwo');
    const viewed = await callTool(editorTool, { command: 'view', path: '/workspace/notes/a.txt' }, makeToolContext({ sandbox: box.sandbox }));
    expect(outcomeText(viewed)).toBe("Here's the result of running `cat -n` on /workspace/notes/a.txt:\n     1\tone\n     2\ttwo\n");
  });
});
