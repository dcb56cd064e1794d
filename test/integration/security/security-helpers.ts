import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

/** The text and JSON blocks of an exec result, as the control-plane API returns it. */
export function execOutput(call: { content: unknown }): { stdout: string; stderr: string; exitCode: number | null } {
  if (!Array.isArray(call.content)) throw new Error(`exec returns text blocks, got ${JSON.stringify(call)}`);
  const text = String(call.content[0]?.text ?? '');
  const meta = JSON.parse(call.content[1]?.text ?? '{}') as { exitCode?: number | null };
  const m = /--- stdout[^\n]*---\n([\s\S]*?)--- stderr[^\n]*---\n([\s\S]*)$/.exec(text);
  if (!m) throw new Error(`unexpected exec output: ${text}`);
  return { stdout: m[1]!, stderr: m[2]!, exitCode: meta.exitCode ?? null };
}

/** Every audit entry the runner wrote, oldest first (the audit files are JSONL under <stateDir>/audit). */
export async function readAudit(stateDir: string): Promise<Array<Record<string, any>>> {
  const dir = path.join(stateDir, 'audit');
  const files = (await readdir(dir)).filter((f) => f.endsWith('.jsonl')).sort();
  const out: Array<Record<string, any>> = [];
  for (const f of files) {
    for (const line of (await readFile(path.join(dir, f), 'utf8')).split('\n')) {
      if (!line.trim()) continue;
      const entry = JSON.parse(line) as Record<string, any>;
      out.push({ ...entry.fields, ...entry });
    }
  }
  return out;
}
