import { watch } from 'node:fs';
import { AuditEntrySchema, type AuditEntry } from './audit-entry.js';
import { RunnerError } from '../util/errors.js';
import { listAuditFiles, readLines, type AuditFile } from './audit-files.js';

/** Filters of readAudit. Times are inclusive for `since`, exclusive for `until`. */
export interface ReadAuditOptions {
  since?: Date | string;
  until?: Date | string;
  callId?: string;
  sessionId?: string;
  type?: string;
  signal?: AbortSignal;
}

/**
 * The entries of the log in `dir`, oldest first, that pass the filters. Lines
 * that cannot be read are skipped: reading is not verifying (verifyAudit).
 */
export async function* readAudit(dir: string, options: ReadAuditOptions = {}): AsyncGenerator<AuditEntry> {
  const since = toMs(options.since, -Infinity);
  const until = toMs(options.until, Infinity);
  for (const file of listAuditFiles(dir)) {
    for await (const entry of fileEntries(file, options.signal)) {
      const t = Date.parse(entry.time);
      if (t < since || t >= until) continue;
      if (options.callId !== undefined && entry.callId !== options.callId) continue;
      if (options.sessionId !== undefined && entry.sessionId !== options.sessionId) continue;
      if (options.type !== undefined && entry.type !== options.type) continue;
      yield entry;
    }
  }
}

/** The newest `count` entries, oldest first; reads only the newest files it needs. */
export async function tailAudit(dir: string, count: number, signal?: AbortSignal): Promise<AuditEntry[]> {
  if (count <= 0) return [];
  const files = listAuditFiles(dir);
  let result: AuditEntry[] = [];
  for (let i = files.length - 1; i >= 0 && result.length < count; i -= 1) {
    const inFile: AuditEntry[] = [];
    for await (const entry of fileEntries(files[i]!, signal)) {
      inFile.push(entry);
      if (inFile.length > count) inFile.shift();
    }
    result = [...inFile, ...result].slice(-count);
  }
  return result;
}

/**
 * Follows the log like `tail -f`: yields each entry with a sequence number
 * above `afterSeq` (default: the newest entry now) as it is written, across
 * rotations, until `signal` aborts; then it returns.
 */
export async function* followAudit(dir: string, signal: AbortSignal, options: { afterSeq?: number } = {}): AsyncGenerator<AuditEntry> {
  let afterSeq = options.afterSeq ?? (await tailAudit(dir, 1, signal))[0]?.seq ?? 0;
  let dirty = true;
  let wake: (() => void) | undefined;
  const watcher = watch(dir, { persistent: true });
  watcher.on('change', () => {
    dirty = true;
    wake?.();
  });
  watcher.on('error', () => undefined);
  const onAbort = (): void => wake?.();
  signal.addEventListener('abort', onAbort);
  try {
    let current: AuditFile | undefined;
    let offset = 0;
    let sawNewer = false;
    while (!signal.aborted) {
      if (!dirty) {
        // inotify can coalesce or miss events on some file systems: a slow poll backs it up.
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 1000);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = undefined;
        continue;
      }
      dirty = false;
      const files = listAuditFiles(dir);
      current ??= await fileHolding(files, afterSeq + 1);
      if (!current) continue;
      const newer = files.find((f) => f.index > current!.index);
      try {
        for await (const line of readLines(current.path, { start: offset })) {
          if (!line.complete) break;
          offset = line.end;
          const entry = parseEntry(line.text);
          if (entry && entry.seq > afterSeq) {
            afterSeq = entry.seq;
            yield entry;
          }
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      // The writer never touches a file again once a newer one exists, but it may
      // have written to it after our last read: move on only after one more pass.
      if (newer && sawNewer) {
        current = newer;
        offset = 0;
        sawNewer = false;
        dirty = true;
      } else if (newer) {
        sawNewer = true;
        dirty = true;
      }
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    watcher.close();
  }
}

/** The newest file whose first entry is at or before `seq`: where entry `seq` is, or will be. */
async function fileHolding(files: AuditFile[], seq: number): Promise<AuditFile | undefined> {
  for (let i = files.length - 1; i >= 0; i -= 1) {
    for await (const entry of fileEntries(files[i]!)) {
      if (entry.seq <= seq) return files[i];
      break;
    }
  }
  return files[0];
}

async function* fileEntries(file: AuditFile, signal?: AbortSignal): AsyncGenerator<AuditEntry> {
  for await (const line of readLines(file.path, { signal })) {
    if (!line.complete) continue;
    const entry = parseEntry(line.text);
    if (entry) yield entry;
  }
}

function parseEntry(text: string): AuditEntry | undefined {
  try {
    const parsed = AuditEntrySchema.safeParse(JSON.parse(text));
    return parsed.success ? (parsed.data as AuditEntry) : undefined;
  } catch {
    return undefined;
  }
}

function toMs(value: Date | string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const ms = value instanceof Date ? value.getTime() : Date.parse(value);
  if (Number.isNaN(ms)) throw new RunnerError('usage', `"${String(value)}" is not a date; use ISO 8601 such as 2024-05-01T00:00:00Z`);
  return ms;
}
