import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Option, type Command } from 'commander';
import { z } from 'zod';
import type { AuditCheckpoint, AuditEntry } from '../../audit/audit-entry.js';
import { listAuditFiles } from '../../audit/audit-files.js';
import { followAudit, readAudit, tailAudit } from '../../audit/read-audit.js';
import { verifyAudit, type VerifyResult } from '../../audit/verify-audit.js';
import { RunnerError } from '../../util/errors.js';
import { CliExit, EXIT_FAILURE, out } from '../cli-context.js';
import { defaultStateDir } from './common.js';

/** What the command reads and writes; tests pass their own. */
export interface AuditCommandIo {
  stdout?: (line: string) => void;
  env?: Record<string, string | undefined>;
  /** Ends `audit tail -f`; by default it runs until the process is interrupted. */
  signal?: AbortSignal;
}

interface CommonOptions {
  stateDir: string;
  json?: boolean;
}

/**
 * `sandbox-runner audit verify | tail | show | export`: review the runner's
 * audit log in `<stateDir>/audit`. Exit codes: 0 ok, 1 failure (verification
 * failed, nothing found), 2 usage.
 */
export function registerAuditCommand(program: Command, io: AuditCommandIo = {}): void {
  const env = io.env ?? process.env;
  const print = io.stdout ?? out;
  const auditCmd = program.command('audit').description('review and verify the tamper-evident audit log');
  const stateDirOption = (): Option => new Option('--state-dir <dir>', 'the runner state directory').default(env.SANDBOX_RUNNER_STATE_DIR ?? defaultStateDir());
  const jsonOption = (): Option => new Option('--json', 'print JSON (one object per line for entries)');
  const auditDir = (stateDir: string): string => join(stateDir, 'audit');

  auditCmd
    .command('verify')
    .description('check the hash chain and signed checkpoints; exit 1 and print the first bad entry')
    .addOption(stateDirOption())
    .option('--public-key <base64>', "the runner's Ed25519 public key (default: signingPublicKey in <state-dir>/identity.json)")
    .option('--checkpoints <file>', 'checkpoints kept by the control plane (JSON array or JSON lines) to check the log against')
    .addOption(jsonOption())
    .action(async (opts: CommonOptions & { publicKey?: string; checkpoints?: string }) => {
      const publicKey = await loadPublicKey(opts.stateDir, opts.publicKey);
      const checkpoints = opts.checkpoints ? await loadCheckpoints(opts.checkpoints) : undefined;
      const result = await verifyAudit(auditDir(opts.stateDir), publicKey, checkpoints ? { checkpoints } : {});
      if (opts.json) print(JSON.stringify(result));
      else for (const line of describeVerify(result)) print(line);
      if (!result.ok) throw new CliExit(EXIT_FAILURE);
    });

  auditCmd
    .command('tail')
    .description('print the newest entries; -f keeps printing new ones')
    .addOption(stateDirOption())
    .option('-n, --lines <count>', 'how many entries', parseCount, 20)
    .option('-f, --follow', 'wait for new entries and print them as they are written')
    .addOption(jsonOption())
    .action(async (opts: CommonOptions & { lines: number; follow?: boolean }) => {
      const dir = await requireAuditDir(auditDir(opts.stateDir));
      const recent = await tailAudit(dir, opts.lines);
      for (const entry of recent) print(render(entry, opts.json));
      if (!opts.follow) return;
      const signal = io.signal ?? new AbortController().signal;
      const afterSeq = recent.at(-1)?.seq ?? (await tailAudit(dir, 1))[0]?.seq ?? 0;
      for await (const entry of followAudit(dir, signal, { afterSeq })) print(render(entry, opts.json));
    });

  auditCmd
    .command('show')
    .description('print every entry of one tool call')
    .argument('<call-id>', 'the tool call id (tool_use id)')
    .addOption(stateDirOption())
    .addOption(jsonOption())
    .action(async (callId: string, opts: CommonOptions) => {
      const dir = await requireAuditDir(auditDir(opts.stateDir));
      let found = 0;
      for await (const entry of readAudit(dir, { callId })) {
        found += 1;
        print(render(entry, opts.json));
      }
      if (found === 0) throw new RunnerError('io', `no audit entries for call ${callId}; check the id, or whether the call ran on another runner`);
    });

  auditCmd
    .command('export')
    .description('print the entries of a time range, oldest first')
    .addOption(stateDirOption())
    .option('--since <time>', 'from this time on (ISO 8601, e.g. 2024-05-01T00:00:00Z; a date alone means its midnight UTC)', parseTime)
    .option('--until <time>', 'up to, not including, this time', parseTime)
    .addOption(jsonOption())
    .action(async (opts: CommonOptions & { since?: Date; until?: Date }) => {
      const dir = await requireAuditDir(auditDir(opts.stateDir));
      if (opts.since && opts.until && opts.since >= opts.until) throw new RunnerError('usage', '--since must be earlier than --until');
      for await (const entry of readAudit(dir, { since: opts.since, until: opts.until })) print(render(entry, opts.json));
    });
}

/** The verify result for a person: one summary line, or where and what the first bad entry is. */
export function describeVerify(result: VerifyResult): string[] {
  if (result.ok) {
    const unsigned = result.unsignedEntries;
    return [
      `audit log verified: ${result.entries} entries in ${result.files} file(s), ${result.checkpoints} signed checkpoint(s)`,
      result.lastCheckpointSeq === 0
        ? 'no entry is covered by a signed checkpoint yet'
        : `last signed entry: ${result.lastCheckpointSeq}${unsigned > 0 ? ` (${unsigned} newer entr${unsigned === 1 ? 'y is' : 'ies are'} not yet signed)` : ''}`,
    ];
  }
  const lines = ['audit log FAILED verification', `  file:   ${result.file}`, `  line:   ${result.line || '(whole file)'}`, `  entry:  ${result.seq}`, `  reason: ${result.reason}`];
  if (result.entry !== undefined) lines.push(`  content: ${JSON.stringify(result.entry)}`);
  return lines;
}

/**
 * One entry as a line: the stored JSON with --json, else time, sequence,
 * type, ids and fields. Field values that are not plain words are printed as
 * JSON strings, so a value from a request cannot fake a line or move the
 * terminal's cursor.
 */
export function render(entry: AuditEntry, json?: boolean): string {
  if (json) return JSON.stringify(entry);
  const parts = [entry.time, `#${entry.seq}`, entry.type.padEnd(15)];
  if (entry.callId !== undefined) parts.push(`call=${word(entry.callId)}`);
  if (entry.sessionId !== undefined) parts.push(`session=${word(entry.sessionId)}`);
  if (entry.type === 'checkpoint') {
    parts.push(`signs #${String(entry.fields['seq'])} ${String(entry.fields['hash']).slice(0, 16)}…${entry.fields['final'] ? ' (final)' : ''}`);
  } else {
    for (const [key, value] of Object.entries(entry.fields)) parts.push(`${word(key)}=${word(value)}`);
  }
  return parts.join('  ');
}

function word(value: unknown): string {
  if (typeof value === 'string') return /^[\w.:/@+-]+$/.test(value) ? value : JSON.stringify(value);
  return JSON.stringify(value) ?? 'null';
}

async function requireAuditDir(dir: string): Promise<string> {
  let files: unknown[];
  try {
    files = listAuditFiles(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EACCES') throw new RunnerError('io', `cannot read the audit log in ${dir}; run as the runner's user or root`);
    files = [];
  }
  if (files.length === 0) {
    throw new RunnerError('state_missing', `no audit log in ${dir}; pass --state-dir with the runner's state directory (or set SANDBOX_RUNNER_STATE_DIR)`);
  }
  return dir;
}

async function loadPublicKey(stateDir: string, given: string | undefined): Promise<Uint8Array> {
  let text = given;
  if (text === undefined) {
    const path = join(stateDir, 'identity.json');
    let raw: string;
    try {
      raw = await readFile(path, 'utf8');
    } catch {
      throw new RunnerError('state_missing', `cannot read ${path}; pass --state-dir with the runner's state directory, or the key with --public-key BASE64`);
    }
    const parsed = z.object({ signingPublicKey: z.string() }).safeParse(safeJson(raw));
    if (!parsed.success) throw new RunnerError('state_missing', `${path} has no signingPublicKey; pass the key with --public-key BASE64`);
    text = parsed.data.signingPublicKey;
  }
  const key = Buffer.from(text, 'base64');
  if (key.length !== 32) throw new RunnerError('usage', 'the public key must be 32 bytes in base64 (the signingPublicKey of identity.json)');
  return new Uint8Array(key);
}

const CheckpointSchema = z.object({ seq: z.number().int().positive(), hash: z.string().regex(/^[0-9a-f]{64}$/), signature: z.string().min(1), at: z.string() });

async function loadCheckpoints(path: string): Promise<AuditCheckpoint[]> {
  let raw: string;
  try {
    raw = await readFile(path, 'utf8');
  } catch {
    throw new RunnerError('usage', `cannot read the checkpoints file ${path}; check the path`);
  }
  const trimmed = raw.trim();
  const items: unknown[] = trimmed.startsWith('[') ? (safeJson(trimmed) as unknown[]) : trimmed.split('\n').filter(Boolean).map(safeJson);
  const parsed = z.array(CheckpointSchema.passthrough()).safeParse(items);
  if (!parsed.success) throw new RunnerError('usage', `${path} is not a list of checkpoints ({seq, hash, signature, at}); export them from the control plane as JSON`);
  return parsed.data.map(({ seq, hash, signature, at }) => ({ seq, hash, signature, at }));
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function parseCount(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new RunnerError('usage', `-n takes a whole number of entries, not "${value}"`);
  return n;
}

function parseTime(value: string): Date {
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw new RunnerError('usage', `"${value}" is not a time; use ISO 8601 such as 2024-05-01T00:00:00Z`);
  return new Date(ms);
}
