import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execTool } from '../../../src/tools/exec/index.js';
import type { ToolOutcome } from '../../../src/tools/tool.js';
import { bwrapSandbox, callTool, makeToolContext, type TestBwrap } from '../../helpers/tool-context.js';

const blocks = (o: ToolOutcome): [string, Record<string, unknown>] => {
  if (!Array.isArray(o.content)) throw new Error('exec returns text blocks');
  return [o.content[0]?.text ?? '', JSON.parse(o.content[1]?.text ?? '{}') as Record<string, unknown>];
};

describe('exec in a real bwrap sandbox', () => {
  let box: TestBwrap;
  beforeAll(async () => {
    box = await bwrapSandbox({ outputBytes: 1000 });
  });
  afterAll(() => box?.dispose());

  const exec = (input: Record<string, unknown>, timeoutMs = 30_000) =>
    callTool(execTool, input, makeToolContext({ sandbox: box.sandbox, timeoutMs }));

  it('runs argv without a shell and reports exit 0, stdout and stderr', async () => {
    const out = await exec({ argv: ['/bin/sh', '-c', 'echo out; echo err >&2'] });
    expect(out.status).toBe('completed');
    expect(out.isError).toBe(false);
    const [text, json] = blocks(out);
    expect(text).toBe('exit code 0\n--- stdout ---\nout\n--- stderr ---\nerr\n');
    expect(json).toMatchObject({ exitCode: 0, signal: null, ended: 'exited', stdoutTruncated: false, stderrTruncated: false });
    // No shell: metacharacters are plain arguments.
    const [echo] = blocks(await exec({ argv: ['echo', '$HOME;', '`id`', '|', 'x'] }));
    expect(echo).toBe('exit code 0\n--- stdout ---\n$HOME; `id` | x\n--- stderr ---\n');
  });

  it('passes stdin, env and cwd (relative to /workspace)', async () => {
    await exec({ argv: ['mkdir', '-p', 'sub'] });
    const [text] = blocks(await exec({ argv: ['/bin/sh', '-c', 'cat; echo "$GREETING"; pwd'], stdin: 'from stdin\n', env: { GREETING: 'hi' }, cwd: 'sub' }));
    expect(text).toBe('exit code 0\n--- stdout ---\nfrom stdin\nhi\n/workspace/sub\n--- stderr ---\n');
  });

  it('cwd resolves inside the sandbox: .., absolute paths and workspace symlinks never reach the host', async () => {
    // A folder only the host has: the runner must not chdir there for the call, nor show it.
    const { mkdtemp, rm, writeFile } = await import('node:fs/promises');
    const hostDir = await mkdtemp('/tmp/sr-host-only-');
    try {
      await writeFile(`${hostDir}/host-canary`, 'host');
      await exec({ argv: ['ln', '-sfn', hostDir, 'to-host'] });
      for (const cwd of [hostDir, 'to-host', `../..${hostDir}`]) {
        const out = await exec({ argv: ['/bin/sh', '-c', 'pwd; ls'], cwd });
        expect(out.isError).toBe(true);
        expect(JSON.stringify(out.content)).not.toContain('host-canary');
      }
      // `..` climbs the sandbox's own tree, never the host's: the sandbox's root is the image.
      const [up] = blocks(await exec({ argv: ['/bin/sh', '-c', 'pwd; ls'], cwd: '../../..' }));
      expect(up).toMatch(/^exit code 0\n--- stdout ---\n\/\n/);
      expect(up).toContain('workspace');
    } finally {
      await exec({ argv: ['rm', '-f', 'to-host'] });
      await rm(hostDir, { recursive: true, force: true });
    }
  });

  it('reports a non-zero exit code as an error result', async () => {
    const out = await exec({ argv: ['/bin/sh', '-c', 'echo nope >&2; exit 3'] });
    expect(out).toMatchObject({ status: 'completed', isError: true });
    const [text, json] = blocks(out);
    expect(text).toBe('exit code 3\n--- stdout ---\n--- stderr ---\nnope\n');
    expect(json.exitCode).toBe(3);
  });

  it('reports a signal', async () => {
    const out = await exec({ argv: ['/bin/sh', '-c', 'kill -TERM $$'] });
    const [text, json] = blocks(out);
    expect(out.isError).toBe(true);
    // bwrap, as the sandbox's init, reports the signal death as 128+15.
    expect(text.split('\n')[0]).toBe('exit code 143 (128+15: killed by SIGTERM)');
    expect(json).toMatchObject({ exitCode: 143 });
  });

  it('cuts output at the limit with a visible marker and says so', async () => {
    const out = await exec({ argv: ['/bin/sh', '-c', 'head -c 5000 /dev/zero | tr "\\0" x'] });
    const [text, json] = blocks(out);
    expect(json.stdoutTruncated).toBe(true);
    expect(text).toContain('--- stdout (truncated) ---\n' + 'x'.repeat(1000));
    expect(text).toContain('[output truncated: 4000 bytes dropped]');
  });

  it('ends timed_out at its deadline', async () => {
    const out = await exec({ argv: ['sleep', '30'], timeoutMs: 300 });
    expect(out).toMatchObject({ status: 'timed_out', isError: true });
    expect(blocks(out)[0].split('\n')[0]).toMatch(/^killed at the time limit/);
  });

  it('ends cancelled when the call is cancelled', async () => {
    const ctx = makeToolContext({
      sandbox: box.sandbox,
      onEmit: () => ctx.cancel(),
    });
    const out = await callTool(execTool, { argv: ['/bin/sh', '-c', 'echo started; sleep 30'] }, ctx);
    expect(out).toMatchObject({ status: 'cancelled', isError: true });
  });

  it('streams output through emit as it comes', async () => {
    const ctx = makeToolContext({ sandbox: box.sandbox });
    await callTool(execTool, { argv: ['/bin/sh', '-c', 'echo one; echo two >&2'] }, ctx);
    expect(Buffer.concat(ctx.emitted.filter((e) => e.stream === 'stdout').map((e) => e.chunk)).toString()).toBe('one\n');
    expect(Buffer.concat(ctx.emitted.filter((e) => e.stream === 'stderr').map((e) => e.chunk)).toString()).toBe('two\n');
  });

  it('refuses env names that belong to the runner', async () => {
    const out = await exec({ argv: ['env'], env: { ANTHROPIC_API_KEY: 'x', HTTPS_PROXY: 'http://evil', OK: '1' } });
    expect(out).toEqual({
      status: 'failed',
      isError: true,
      content:
        'env may not set ANTHROPIC_API_KEY, HTTPS_PROXY: these names belong to the runner (credentials and egress settings are injected by it); remove them and retry.',
    });
  });
});
