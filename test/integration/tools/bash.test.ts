import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import type { BwrapSandbox } from '../../../src/sandbox/bwrap/bwrap-sandbox.js';
import { BASH_SESSION_KEY, bashTool } from '../../../src/tools/bash/index.js';
import { bwrapSandbox, callTool, makeToolContext, MemorySessionState, type Emitted, type TestBwrap } from '../../helpers/tool-context.js';

/** Whether a host pid is a live process (a zombie, or gone, is not). */
async function isAlive(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (!stat) return false;
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X';
}

describe('bash in a real bwrap sandbox', () => {
  let box: TestBwrap;
  let session: MemorySessionState;
  beforeAll(async () => {
    box = await bwrapSandbox({ outputBytes: 2000 });
  });
  afterAll(() => box?.dispose());
  beforeEach(() => {
    session = new MemorySessionState();
  });
  afterEach(() => session.dispose());

  const bash = (input: Record<string, unknown>, opts: { timeoutMs?: number; onEmit?: (e: Emitted) => void } = {}) =>
    callTool(bashTool, input, makeToolContext({ sandbox: box.sandbox, session, ...opts }));

  it('returns stdout then stderr', async () => {
    expect(await bash({ command: 'echo out; echo err >&2' })).toEqual({ status: 'completed', isError: false, content: 'out\nerr' });
  });

  it('keeps cd and variables across calls', async () => {
    await bash({ command: 'mkdir -p /workspace/proj && cd /workspace/proj && export FOO=bar; BAZ=qux' });
    expect((await bash({ command: 'pwd; echo "$FOO $BAZ"' })).content).toBe('/workspace/proj\nbar qux');
  });

  it('notes a non-zero exit status and marks the result an error', async () => {
    expect(await bash({ command: 'echo partial; ls /nonexistent' })).toEqual({
      status: 'completed',
      isError: true,
      content: "partial\nls: cannot access '/nonexistent': No such file or directory\n[exit status 2]",
    });
    // The shell is still there.
    expect((await bash({ command: 'echo alive' })).content).toBe('alive');
  });

  it("gives the call's injected env to that command only, not to later calls", async () => {
    const withCred = await callTool(
      bashTool,
      { command: 'echo "[$TOKEN]"; sh -c \'echo "child [$TOKEN]"\'' },
      makeToolContext({ sandbox: box.sandbox, session, env: { TOKEN: "s3cr3t 'q'" } }),
    );
    expect(withCred.content).toBe("[s3cr3t 'q']\nchild [s3cr3t 'q']");
    expect((await bash({ command: 'echo "[$TOKEN]"; env | grep -c TOKEN || true' })).content).toBe('[]\n0');
  });

  it('runs a command that ends in a comment', async () => {
    expect((await bash({ command: 'echo hi # and a comment' })).content).toBe('hi');
  });

  it('runs a command that ends in & (a background job) and returns at once', async () => {
    const out = await bash({ command: 'sleep 30 &' });
    expect(out).toEqual({ status: 'completed', isError: false, content: '' });
    expect((await bash({ command: 'jobs | wc -l; kill %1; wait 2>/dev/null; echo done' })).content).toBe('1\ndone');
  });

  it('runs a here-document', async () => {
    const out = await bash({ command: "cat <<'EOF' > /workspace/h.txt\nline $1\n  two\nEOF\ncat /workspace/h.txt" });
    expect(out.content).toBe('line $1\n  two');
  });

  it('survives a syntax error and unbalanced quotes', async () => {
    const out = await bash({ command: 'echo "unclosed' });
    expect(out.isError).toBe(true);
    expect(out.content).toMatch(/unexpected EOF while looking for matching `"'/);
    expect((await bash({ command: 'echo ok' })).content).toBe('ok');
  });

  it('gives commands that read stdin an empty stdin, not the next command', async () => {
    expect((await bash({ command: 'cat; echo after' })).content).toBe('after');
  });

  it('does not let printed fake sentinels end a command early', async () => {
    expect((await bash({ command: "printf '__SR_x_END__:0\\n'; echo real" })).content).toBe('__SR_x_END__:0\nreal');
  });

  it('cuts long output with a visible marker', async () => {
    const out = await bash({ command: 'head -c 5000 /dev/zero | tr "\\0" y' });
    expect(out.content).toBe(`${'y'.repeat(2000)}\n[output truncated: 3000 bytes dropped]`);
  });

  it('kills a command that floods output far past the cap, instead of reading it forever', async () => {
    const out = await bash({ command: 'echo start; yes' });
    expect(out.status).toBe('failed');
    expect(out.content).toMatch(/^start\ny\ny\n[\s\S]*\n\[output truncated: \d+ bytes dropped\]\nThe command printed far more than the output limit and the shell was killed; redirect big output to a file and look at parts of it\. Call bash with restart: true/);
    expect((await bash({ restart: true, command: 'echo ok' })).content).toBe('ok');
  });

  it('streams output through emit as it comes, without the sentinel', async () => {
    const seen: Emitted[] = [];
    await bash({ command: 'echo one; echo two >&2; echo three' }, { onEmit: (e) => void seen.push(e) });
    const text = (s: string) => Buffer.concat(seen.filter((e) => e.stream === s).map((e) => e.chunk)).toString();
    expect(text('stdout')).toBe('one\nthree\n');
    expect(text('stderr')).toBe('two\n');
  });

  it('times out, kills the shell, says to restart, and restart gives a fresh shell', async () => {
    await bash({ command: 'export KEEP=1; cd /tmp' });
    const out = await bash({ command: 'echo before; sleep 30' }, { timeoutMs: 500 });
    expect(out).toEqual({
      status: 'timed_out',
      isError: true,
      content:
        'before\ntimed out: bash has not returned in 0.5 seconds and was killed; it must be restarted: call bash with restart: true to start a fresh shell (the working directory, variables and background jobs are lost).',
    });
    expect(await bash({ command: 'echo again' })).toEqual({
      status: 'failed',
      isError: true,
      content:
        'The shell was killed because a command timed out, and must be restarted; call bash with restart: true to start a fresh shell (the working directory, variables and background jobs are lost).',
    });
    expect(await bash({ restart: true })).toEqual({ status: 'completed', isError: false, content: 'tool has been restarted.' });
    expect((await bash({ command: 'echo "[$KEEP]"; pwd' })).content).toBe('[]\n/workspace');
  });

  it('restart with a command runs it in the fresh shell', async () => {
    await bash({ command: 'X=old' });
    expect((await bash({ restart: true, command: 'echo "[$X]"' })).content).toBe('[]');
  });

  it('reports the shell exiting and asks for a restart', async () => {
    const out = await bash({ command: 'echo bye; exit 3' });
    expect(out.status).toBe('failed');
    expect(out.content).toBe(
      'bye\nbash has exited with status 3; call bash with restart: true to start a fresh shell (the working directory, variables and background jobs are lost).',
    );
    expect((await bash({ restart: true, command: 'echo back' })).content).toBe('back');
  });

  it('cancel kills the shell and its process tree', async () => {
    const sb = box.sandbox as BwrapSandbox;
    let pidsWhileRunning: number[] = [];
    const ctx = makeToolContext({
      sandbox: box.sandbox,
      session,
      onEmit: async () => {
        pidsWhileRunning = await sb.hostPids();
        ctx.cancel();
      },
    });
    const out = await callTool(bashTool, { command: '(sleep 60; echo child) & echo started; sleep 60' }, ctx);
    expect(out.status).toBe('cancelled');
    expect(out.content).toBe(
      'started\nThe command was cancelled and the shell killed; call bash with restart: true to start a fresh shell (the working directory, variables and background jobs are lost).',
    );
    expect(session.get(BASH_SESSION_KEY)).toBeDefined();
    // Seen from the host: nothing of that shell is left in the sandbox's cgroup.
    expect(pidsWhileRunning.length).toBeGreaterThanOrEqual(3);
    // A killed process can still be listed by the cgroup until it is reaped; none may be alive.
    const alive = await Promise.all((await sb.hostPids()).map(isAlive));
    expect(alive.filter(Boolean)).toEqual([]);
    expect((await bash({ restart: true, command: 'echo fresh' })).content).toBe('fresh');
  });
});
