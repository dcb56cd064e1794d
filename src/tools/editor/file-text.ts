/**
 * Text shapes of the editor's results, as in Anthropic's reference
 * implementation of `text_editor_20250728` (anthropic-quickstarts,
 * computer_use_demo/tools/edit.py): line numbers right-aligned in six columns
 * and a tab, under a "result of running `cat -n`" header. Models are trained on
 * these exact texts, so they are kept verbatim where possible.
 */

/** Lines shown around an edit in the confirmation snippet. */
export const SNIPPET_LINES = 4;

/** Appended where `view` cut a file at max_characters. */
export const TRUNCATED_NOTE =
  '<response clipped><NOTE>To save on context only part of this file has been shown to you. ' +
  'View the rest with view_range, or search the file with `grep -n` to find the line numbers you are looking for.</NOTE>';

/** A file's text as lines, the way `cat -n` counts them (a final newline ends the last line, it does not start one). */
export interface SplitText {
  lines: string[];
  finalNewline: boolean;
}

export function splitLines(text: string): SplitText {
  if (text === '') return { lines: [], finalNewline: false };
  const finalNewline = text.endsWith('\n');
  const lines = (finalNewline ? text.slice(0, -1) : text).split('\n');
  return { lines, finalNewline };
}

export function joinLines(split: SplitText): string {
  if (split.lines.length === 0) return '';
  return split.lines.join('\n') + (split.finalNewline ? '\n' : '');
}

/** `     1\tfirst line` for each line, numbered from `firstLine`. */
export function numberLines(lines: readonly string[], firstLine: number): string {
  return lines.map((line, i) => `${String(i + firstLine).padStart(6)}\t${line}`).join('\n');
}

/** The full `view`-style output for some lines of `descriptor`. */
export function catOutput(lines: readonly string[], descriptor: string, firstLine = 1, truncated = false): string {
  const body = numberLines(lines, firstLine);
  return (
    `Here's the result of running \`cat -n\` on ${descriptor}:\n` +
    body +
    (body === '' ? '' : '\n') +
    (truncated ? `${TRUNCATED_NOTE}\n` : '')
  );
}

/** Python-style list, as the reference implementation prints line lists: `[3, 7]`. */
export function pyList(values: readonly number[]): string {
  return `[${values.join(', ')}]`;
}

/** 1-based line numbers where each occurrence of `needle` in `text` starts. */
export function occurrenceLines(text: string, needle: string): number[] {
  const lines: number[] = [];
  let line = 1;
  let scanned = 0;
  for (let at = text.indexOf(needle); at >= 0; at = text.indexOf(needle, at + needle.length)) {
    for (let i = scanned; i < at; i++) if (text.charCodeAt(i) === 10) line++;
    scanned = at;
    lines.push(line);
  }
  return lines;
}

/** Counts non-overlapping occurrences (what a single replacement would see). */
export function countOccurrences(text: string, needle: string): number {
  let n = 0;
  for (let at = text.indexOf(needle); at >= 0; at = text.indexOf(needle, at + needle.length)) n++;
  return n;
}
