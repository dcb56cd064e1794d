import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { editorTool } from '../../../src/tools/editor/index.js';
import { callTool, hostWorkspace, makeToolContext, outcomeText, type TestToolContext } from '../../helpers/tool-context.js';

let ws: Awaited<ReturnType<typeof hostWorkspace>>;
let ctx: TestToolContext;

beforeEach(async () => {
  ws = await hostWorkspace();
  ctx = makeToolContext({ sandbox: ws });
});
afterEach(async () => {
  await ws.cleanup();
});

const edit = (input: Record<string, unknown>) => callTool(editorTool, input, ctx);
const put = (rel: string, text: string) => writeFile(path.join(ws.workspaceDir, rel), text);

describe('view', () => {
  it('shows a file with cat -n line numbers, whatever form the path takes', async () => {
    await put('a.txt', 'one\ntwo\n\tthree\n');
    const expected = "Here's the result of running `cat -n` on /workspace/a.txt:\n     1\tone\n     2\ttwo\n     3\t\tthree\n";
    for (const p of ['/workspace/a.txt', 'a.txt', './a.txt', '/workspace/./sub/../a.txt']) {
      const out = await edit({ command: 'view', path: p });
      expect(out).toEqual({ status: 'completed', isError: false, content: expected });
    }
  });

  it('shows a range, -1 meaning the end', async () => {
    await put('a.txt', 'l1\nl2\nl3\nl4\n');
    expect(outcomeText(await edit({ command: 'view', path: 'a.txt', view_range: [2, 3] }))).toBe(
      "Here's the result of running `cat -n` on /workspace/a.txt:\n     2\tl2\n     3\tl3\n",
    );
    expect(outcomeText(await edit({ command: 'view', path: 'a.txt', view_range: [3, -1] }))).toBe(
      "Here's the result of running `cat -n` on /workspace/a.txt:\n     3\tl3\n     4\tl4\n",
    );
  });

  it('refuses ranges outside the file, saying the valid range', async () => {
    await put('a.txt', 'l1\nl2\n');
    const bad = await edit({ command: 'view', path: 'a.txt', view_range: [5, 6] });
    expect(bad).toEqual({
      status: 'failed',
      isError: true,
      content: 'Invalid `view_range`: [5, 6]. Its first element `5` should be within the range of lines of the file: [1, 2]',
    });
    expect(outcomeText(await edit({ command: 'view', path: 'a.txt', view_range: [1, 9] }))).toBe(
      'Invalid `view_range`: [1, 9]. Its second element `9` should be smaller than the number of lines in the file: `2`',
    );
    expect(outcomeText(await edit({ command: 'view', path: 'a.txt', view_range: [2, 1] }))).toBe(
      'Invalid `view_range`: [2, 1]. Its second element `1` should be larger or equal than its first `2`',
    );
  });

  it('cuts at max_characters with a note saying how to see the rest', async () => {
    await put('big.txt', 'abcdefghij\n'.repeat(10));
    const out = outcomeText(await edit({ command: 'view', path: 'big.txt', max_characters: 15 }));
    expect(out).toBe(
      "Here's the result of running `cat -n` on /workspace/big.txt:\n     1\tabcdefghij\n     2\tabcd\n" +
        '<response clipped><NOTE>To save on context only part of this file has been shown to you. ' +
        'View the rest with view_range, or search the file with `grep -n` to find the line numbers you are looking for.</NOTE>\n',
    );
  });

  it('lists a directory two levels deep without hidden entries', async () => {
    await mkdir(path.join(ws.workspaceDir, 'src/deep/deeper'), { recursive: true });
    await mkdir(path.join(ws.workspaceDir, '.git'));
    await put('src/main.ts', '');
    await put('src/.env', '');
    await put('src/deep/x.ts', '');
    await put('README.md', '');
    const out = await edit({ command: 'view', path: '/workspace' });
    expect(outcomeText(out)).toBe(
      "Here's the files and directories up to 2 levels deep in /workspace, excluding hidden items:\n" +
        '/workspace\n/workspace/README.md\n/workspace/src\n/workspace/src/deep\n/workspace/src/main.ts\n',
    );
    expect(outcomeText(await edit({ command: 'view', path: 'src', view_range: [1, 2] }))).toBe(
      'The `view_range` parameter is not allowed when `path` points to a directory.',
    );
  });

  it('says a missing path does not exist', async () => {
    expect(await edit({ command: 'view', path: 'nope.txt' })).toEqual({
      status: 'failed',
      isError: true,
      content: 'The path /workspace/nope.txt does not exist. Please provide a valid path.',
    });
  });

  it('does not hang on a FIFO planted in the workspace', async () => {
    execFileSync('mkfifo', [path.join(ws.workspaceDir, 'pipe')]);
    const out = await edit({ command: 'view', path: 'pipe' });
    expect(out.isError).toBe(true);
    expect(outcomeText(out)).toBe('The path /workspace/pipe is not a regular file or directory; the editor cannot show it.');
  });
});

describe('create', () => {
  it('creates a file and its missing directories, and refuses to overwrite', async () => {
    expect(await edit({ command: 'create', path: '/workspace/new/dir/f.py', file_text: 'print(1)\n' })).toEqual({
      status: 'completed',
      isError: false,
      content: 'File created successfully at: /workspace/new/dir/f.py',
    });
    expect(await readFile(path.join(ws.workspaceDir, 'new/dir/f.py'), 'utf8')).toBe('print(1)\n');
    const again = await edit({ command: 'create', path: 'new/dir/f.py', file_text: 'x' });
    expect(again.isError).toBe(true);
    expect(outcomeText(again)).toBe(
      'File already exists at: /workspace/new/dir/f.py. Cannot overwrite files using command `create`; change it with `str_replace`, or remove it with bash first.',
    );
  });
});

describe('str_replace', () => {
  it('replaces the one match and shows a numbered snippet', async () => {
    await put('f.py', 'a = 1\nb = 2\nc = 3\n');
    const out = await edit({ command: 'str_replace', path: 'f.py', old_str: 'b = 2', new_str: 'b = 20\nb2 = 21' });
    expect(out).toEqual({
      status: 'completed',
      isError: false,
      content:
        "The file /workspace/f.py has been edited. Here's the result of running `cat -n` on a snippet of /workspace/f.py:\n" +
        '     1\ta = 1\n     2\tb = 20\n     3\tb2 = 21\n     4\tc = 3\n' +
        'Review the changes and make sure they are as expected. Edit the file again if necessary.',
    });
    expect(await readFile(path.join(ws.workspaceDir, 'f.py'), 'utf8')).toBe('a = 1\nb = 20\nb2 = 21\nc = 3\n');
  });

  it('deletes the match when new_str is left out', async () => {
    await put('f.txt', 'keep\ndrop\nkeep2\n');
    await edit({ command: 'str_replace', path: 'f.txt', old_str: 'drop\n' });
    expect(await readFile(path.join(ws.workspaceDir, 'f.txt'), 'utf8')).toBe('keep\nkeep2\n');
  });

  it('says when old_str matches nothing', async () => {
    await put('f.txt', 'hello\n');
    expect(await edit({ command: 'str_replace', path: 'f.txt', old_str: 'bye', new_str: 'x' })).toEqual({
      status: 'failed',
      isError: true,
      content:
        'No replacement was performed, old_str `bye` did not appear verbatim in /workspace/f.txt. Check whitespace and indentation, or view the file and copy the text exactly.',
    });
  });

  it('says how many times and on which lines old_str matches', async () => {
    await put('f.txt', 'x = 1\ny = 2\nx = 1\nz\nx = 1\n');
    const out = await edit({ command: 'str_replace', path: 'f.txt', old_str: 'x = 1', new_str: 'x = 9' });
    expect(outcomeText(out)).toBe(
      'No replacement was performed. Multiple occurrences of old_str `x = 1` in lines [1, 3, 5]. Please ensure it is unique: include more surrounding lines in old_str.',
    );
    expect(await readFile(path.join(ws.workspaceDir, 'f.txt'), 'utf8')).toBe('x = 1\ny = 2\nx = 1\nz\nx = 1\n');
  });

  it('refuses a directory', async () => {
    await mkdir(path.join(ws.workspaceDir, 'd'));
    expect(outcomeText(await edit({ command: 'str_replace', path: 'd', old_str: 'a', new_str: 'b' }))).toBe(
      'The path /workspace/d is a directory and only the `view` command can be used on directories.',
    );
  });
});

describe('insert', () => {
  it('inserts at the top with insert_text, and after a line with new_str', async () => {
    await put('f.txt', 'a\nb\n');
    const top = await edit({ command: 'insert', path: 'f.txt', insert_line: 0, insert_text: 'header' });
    expect(top).toEqual({
      status: 'completed',
      isError: false,
      content:
        "The file /workspace/f.txt has been edited. Here's the result of running `cat -n` on a snippet of the edited file:\n" +
        '     1\theader\n     2\ta\n     3\tb\n' +
        'Review the changes and make sure they are as expected (correct indentation, no duplicate lines, etc). Edit the file again if necessary.',
    });
    await edit({ command: 'insert', path: 'f.txt', insert_line: 3, new_str: 'end1\nend2\n' });
    expect(await readFile(path.join(ws.workspaceDir, 'f.txt'), 'utf8')).toBe('header\na\nb\nend1\nend2\n');
  });

  it('refuses a line past the end, saying the valid range', async () => {
    await put('f.txt', 'a\nb\n');
    expect(outcomeText(await edit({ command: 'insert', path: 'f.txt', insert_line: 7, insert_text: 'x' }))).toBe(
      'Invalid `insert_line` parameter: 7. It should be within the range of lines of the file: [0, 2]',
    );
  });
});

describe('confinement', () => {
  let outside: string;
  beforeEach(async () => {
    outside = await mkdtemp(path.join(tmpdir(), 'sr-outside-'));
    await writeFile(path.join(outside, 'secret'), 'TOP SECRET\n');
  });
  afterEach(() => rm(outside, { recursive: true, force: true }));

  it('refuses .. and absolute paths elsewhere', async () => {
    expect(outcomeText(await edit({ command: 'view', path: '../etc/passwd' }))).toBe(
      'The path ../etc/passwd leaves the workspace through ..; give a path under /workspace.',
    );
    expect(outcomeText(await edit({ command: 'view', path: '/workspace/../etc/passwd' }))).toBe(
      'The path /workspace/../etc/passwd is outside the workspace; give a path under /workspace or relative to it.',
    );
    expect(outcomeText(await edit({ command: 'view', path: '/etc/passwd' }))).toBe(
      'The path /etc/passwd is outside the workspace; give a path under /workspace or relative to it.',
    );
  });

  it('does not read /etc/passwd through a symlink in the workspace', async () => {
    await symlink('/etc/passwd', path.join(ws.workspaceDir, 'pw'));
    const out = await edit({ command: 'view', path: 'pw' });
    expect(out).toEqual({
      status: 'failed',
      isError: true,
      content:
        'The path /workspace/pw is a symbolic link to /etc/passwd, outside the workspace; tools do not follow it. Give a path inside /workspace.',
    });
    expect(outcomeText(await edit({ command: 'str_replace', path: 'pw', old_str: 'root', new_str: 'x' }))).toContain(
      'symbolic link to /etc/passwd',
    );
  });

  it('does not go through a symlinked parent directory that points out', async () => {
    await symlink(outside, path.join(ws.workspaceDir, 'evil'));
    expect(outcomeText(await edit({ command: 'view', path: 'evil/secret' }))).toBe(
      `The path /workspace/evil is a symbolic link to ${outside}, outside the workspace; tools do not follow it. Give a path inside /workspace.`,
    );
    const made = await edit({ command: 'create', path: 'evil/planted', file_text: 'x' });
    expect(made.isError).toBe(true);
    await expect(stat(path.join(outside, 'planted'))).rejects.toThrow(/ENOENT/);
    await symlink('../../..', path.join(ws.workspaceDir, 'up'));
    expect(outcomeText(await edit({ command: 'view', path: 'up/etc/passwd' }))).toContain('outside the workspace');
  });

  it('follows symlinks that stay inside the workspace', async () => {
    await mkdir(path.join(ws.workspaceDir, 'real'));
    await put('real/f.txt', 'inside\n');
    await symlink('real', path.join(ws.workspaceDir, 'alias'));
    await symlink('/workspace/real/f.txt', path.join(ws.workspaceDir, 'abs-link'));
    expect(outcomeText(await edit({ command: 'view', path: 'alias/f.txt' }))).toBe(
      "Here's the result of running `cat -n` on /workspace/real/f.txt:\n     1\tinside\n",
    );
    expect(outcomeText(await edit({ command: 'view', path: 'abs-link' }))).toBe(
      "Here's the result of running `cat -n` on /workspace/real/f.txt:\n     1\tinside\n",
    );
  });
});
