import type { FileHandle } from 'node:fs/promises';
import { RunnerError } from '../../util/errors.js';
import { ioError, readAtMost, type WorkspaceFs } from '../workspace-path.js';
import {
  catOutput,
  countOccurrences,
  joinLines,
  occurrenceLines,
  pyList,
  SNIPPET_LINES,
  splitLines,
} from './file-text.js';
import { listDirectory } from './list-directory.js';

/**
 * The four commands of `str_replace_based_edit_tool`, each over a workspace
 * seen from the host. Each returns the result text or throws RunnerError
 * `invalid_input` whose message is what the model reads.
 */

export interface EditorLimits {
  /** Largest file the editor reads or writes, in bytes. */
  maxFileBytes: number;
  /** Characters shown by `view` when the call gives no max_characters. */
  defaultMaxCharacters: number;
}

function invalid(message: string): RunnerError {
  return new RunnerError('invalid_input', message);
}

/** Reads a whole text file from an opened handle, refusing binaries and oversize files. */
async function readText(ws: WorkspaceFs, handle: FileHandle, rel: string, size: number, limits: EditorLimits): Promise<string> {
  const shown = ws.display(rel);
  if (size > limits.maxFileBytes) {
    throw invalid(
      `The file ${shown} is ${size} bytes, more than the editor's limit of ${limits.maxFileBytes}; use bash (head, sed -n, grep -n) to work on it.`,
    );
  }
  const { data: buf, more } = await readAtMost(handle, limits.maxFileBytes).catch((err: unknown) => {
    throw ioError(err, shown);
  });
  if (more) {
    throw invalid(`The file ${shown} is more than the editor's limit of ${limits.maxFileBytes} bytes; use bash (head, sed -n, grep -n) to work on it.`);
  }
  if (buf.includes(0)) {
    throw invalid(`The file ${shown} looks binary (it contains NUL bytes); the editor handles text only, use bash (xxd, file) instead.`);
  }
  return buf.toString('utf8');
}

async function writeBack(handle: FileHandle, text: string, shown: string): Promise<void> {
  const data = Buffer.from(text, 'utf8');
  try {
    await handle.truncate(0);
    await handle.write(data, 0, data.length, 0);
  } catch (err) {
    throw ioError(err, shown);
  }
}

export async function view(
  ws: WorkspaceFs,
  path: string,
  viewRange: [number, number] | undefined,
  maxCharacters: number | undefined,
  limits: EditorLimits,
): Promise<string> {
  const entry = await ws.openExisting(ws.relative(path));
  const shown = ws.display(entry.rel);
  try {
    if (entry.kind === 'directory') {
      if (viewRange) throw invalid('The `view_range` parameter is not allowed when `path` points to a directory.');
      const listing = await listDirectory(ws, entry.handle, shown);
      return `Here's the files and directories up to 2 levels deep in ${shown}, excluding hidden items:\n${listing.join('\n')}\n`;
    }
    if (entry.kind !== 'file') throw invalid(`The path ${shown} is not a regular file or directory; the editor cannot show it.`);
    const { lines } = splitLines(await readText(ws, entry.handle, entry.rel, entry.size, limits));
    let first = 1;
    let shownLines = lines;
    if (viewRange) {
      const [start, end] = viewRange;
      const n = lines.length;
      const range = pyList(viewRange);
      if (start < 1 || start > n) {
        throw invalid(
          `Invalid \`view_range\`: ${range}. Its first element \`${start}\` should be within the range of lines of the file: ${pyList([1, n])}`,
        );
      }
      if (end > n) {
        throw invalid(
          `Invalid \`view_range\`: ${range}. Its second element \`${end}\` should be smaller than the number of lines in the file: \`${n}\``,
        );
      }
      if (end !== -1 && end < start) {
        throw invalid(`Invalid \`view_range\`: ${range}. Its second element \`${end}\` should be larger or equal than its first \`${start}\``);
      }
      first = start;
      shownLines = lines.slice(start - 1, end === -1 ? undefined : end);
    }
    const budget = maxCharacters ?? limits.defaultMaxCharacters;
    const text = shownLines.join('\n');
    if (text.length <= budget) return catOutput(shownLines, shown, first);
    return catOutput(text.slice(0, budget).split('\n'), shown, first, true);
  } finally {
    await entry.handle.close();
  }
}

export async function create(ws: WorkspaceFs, path: string, fileText: string, limits: EditorLimits): Promise<string> {
  const rel = ws.relative(path);
  const data = Buffer.from(fileText, 'utf8');
  if (data.length > limits.maxFileBytes) {
    throw invalid(`file_text is ${data.length} bytes, more than the editor's limit of ${limits.maxFileBytes}; write it in parts or with bash.`);
  }
  if (rel === '') throw invalid(`The path ${ws.display(rel)} is a directory and only the \`view\` command can be used on directories.`);
  const parent = await ws.parent(rel, { create: true });
  const shown = ws.display(parent.rel);
  try {
    const made = await ws.createFile(parent.dir, parent.name, data);
    if (made === 'exists') {
      throw invalid(
        `File already exists at: ${shown}. Cannot overwrite files using command \`create\`; change it with \`str_replace\`, or remove it with bash first.`,
      );
    }
  } finally {
    await parent.dir.close();
  }
  return `File created successfully at: ${shown}`;
}

export async function strReplace(
  ws: WorkspaceFs,
  path: string,
  oldStr: string,
  newStr: string,
  limits: EditorLimits,
): Promise<string> {
  const entry = await ws.openExisting(ws.relative(path), { write: true });
  const shown = ws.display(entry.rel);
  try {
    if (entry.kind !== 'file') throw invalid(`The path ${shown} is not a regular file; str_replace edits files only.`);
    if (oldStr === '') throw invalid('old_str is empty; give the exact text to replace, or use `insert` to add new text.');
    const text = await readText(ws, entry.handle, entry.rel, entry.size, limits);
    const count = countOccurrences(text, oldStr);
    if (count === 0) {
      throw invalid(
        `No replacement was performed, old_str \`${oldStr}\` did not appear verbatim in ${shown}. ` +
          'Check whitespace and indentation, or view the file and copy the text exactly.',
      );
    }
    if (count > 1) {
      throw invalid(
        `No replacement was performed. Multiple occurrences of old_str \`${oldStr}\` in lines ${pyList(occurrenceLines(text, oldStr))}. ` +
          'Please ensure it is unique: include more surrounding lines in old_str.',
      );
    }
    const at = text.indexOf(oldStr);
    const updated = text.slice(0, at) + newStr + text.slice(at + oldStr.length);
    if (Buffer.byteLength(updated) > limits.maxFileBytes) {
      throw invalid(`The edit would make ${shown} larger than the editor's limit of ${limits.maxFileBytes} bytes; use bash instead.`);
    }
    await writeBack(entry.handle, updated, shown);
    const replacementLine = countNewlines(text.slice(0, at));
    const start = Math.max(0, replacementLine - SNIPPET_LINES);
    const end = replacementLine + SNIPPET_LINES + countNewlines(newStr);
    const snippet = splitLines(updated).lines.slice(start, end + 1);
    return (
      `The file ${shown} has been edited. ` +
      catOutput(snippet, `a snippet of ${shown}`, start + 1) +
      'Review the changes and make sure they are as expected. Edit the file again if necessary.'
    );
  } finally {
    await entry.handle.close();
  }
}

export async function insert(
  ws: WorkspaceFs,
  path: string,
  insertLine: number,
  newText: string,
  limits: EditorLimits,
): Promise<string> {
  const entry = await ws.openExisting(ws.relative(path), { write: true });
  const shown = ws.display(entry.rel);
  try {
    if (entry.kind !== 'file') throw invalid(`The path ${shown} is not a regular file; insert edits files only.`);
    const text = await readText(ws, entry.handle, entry.rel, entry.size, limits);
    const file = splitLines(text);
    const n = file.lines.length;
    if (insertLine < 0 || insertLine > n) {
      throw invalid(
        `Invalid \`insert_line\` parameter: ${insertLine}. It should be within the range of lines of the file: ${pyList([0, n])}`,
      );
    }
    // Text ending in a newline adds whole lines; it must not leave an empty line behind.
    const added = splitLines(newText.endsWith('\n') ? newText : `${newText}\n`).lines;
    const lines = [...file.lines.slice(0, insertLine), ...added, ...file.lines.slice(insertLine)];
    const finalNewline = file.finalNewline || n === 0 || (insertLine === n && newText.endsWith('\n'));
    const updated = joinLines({ lines, finalNewline });
    if (Buffer.byteLength(updated) > limits.maxFileBytes) {
      throw invalid(`The insert would make ${shown} larger than the editor's limit of ${limits.maxFileBytes} bytes; use bash instead.`);
    }
    await writeBack(entry.handle, updated, shown);
    const snippet = [
      ...file.lines.slice(Math.max(0, insertLine - SNIPPET_LINES), insertLine),
      ...added,
      ...file.lines.slice(insertLine, insertLine + SNIPPET_LINES),
    ];
    return (
      `The file ${shown} has been edited. ` +
      catOutput(snippet, 'a snippet of the edited file', Math.max(1, insertLine - SNIPPET_LINES + 1)) +
      'Review the changes and make sure they are as expected (correct indentation, no duplicate lines, etc). Edit the file again if necessary.'
    );
  } finally {
    await entry.handle.close();
  }
}

function countNewlines(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) === 10) n++;
  return n;
}
