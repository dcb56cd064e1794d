import type { Command } from 'commander';
import sodium from 'libsodium-wrappers';
import { Vault } from '../../credentials/vault.js';
import { RunnerError } from '../../util/errors.js';
import { out } from '../cli-context.js';
import { defaultStateDir } from './common.js';

/** What the command reads and writes; tests pass their own. */
export interface VaultCommandIo {
  stdin?: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
  stdout?: (line: string) => void;
  stderr?: (text: string) => void;
  env?: Record<string, string | undefined>;
}

/**
 * `sandbox-runner vault set NAME | list [--json] | rm NAME`: the local vault.
 * A value is read from stdin only (never an argument: arguments show up in
 * `ps` and shell history); on a terminal it is read without echo.
 */
export function registerVaultCommand(program: Command, io: VaultCommandIo = {}): void {
  const env = io.env ?? process.env;
  const print = io.stdout ?? out;
  const vaultCmd = program.command('vault').description('manage local vault secrets (values never leave this host)');
  const open = (stateDir: string): Vault => new Vault({ stateDir, env });
  const stateDirOption = ['--state-dir <dir>', 'the runner state directory', env.SANDBOX_RUNNER_STATE_DIR ?? defaultStateDir()] as const;

  vaultCmd
    .command('set')
    .description('store a secret read from stdin (one trailing newline is dropped)')
    .argument('<name>', 'entry name: letters, digits, _ . -')
    .option(...stateDirOption)
    .option('--description <text>', 'a note shown by vault list')
    .option('--keep-newline', 'keep a trailing newline of the input')
    .action(async (name: string, opts: { stateDir: string; description?: string; keepNewline?: boolean }) => {
      const stdin = io.stdin ?? process.stdin;
      const raw = stdin.isTTY ? await readHidden(stdin, io.stderr ?? ((s) => process.stderr.write(s)), name) : await readAll(stdin);
      await sodium.ready;
      const value = opts.keepNewline ? raw : stripNewline(raw);
      try {
        if (value.length === 0) throw new RunnerError('usage', 'no value on stdin; pipe the secret in, e.g. sandbox-runner vault set NAME < file');
        await open(opts.stateDir).set(name, value, opts.description ? { description: opts.description } : {});
      } finally {
        sodium.memzero(raw);
      }
      print(`stored vault entry ${name}`);
    });

  vaultCmd
    .command('list')
    .description('list entry names and metadata (never values)')
    .option(...stateDirOption)
    .option('--json', 'print JSON')
    .action(async (opts: { stateDir: string; json?: boolean }) => {
      const entries = await open(opts.stateDir).list();
      if (opts.json) {
        print(JSON.stringify(entries));
        return;
      }
      if (entries.length === 0) print('the vault is empty');
      for (const e of entries) print(`${e.name}\tupdated ${e.updatedAt}${e.meta.description ? `\t${e.meta.description}` : ''}`);
    });

  vaultCmd
    .command('rm')
    .description('remove an entry')
    .argument('<name>', 'entry name')
    .option(...stateDirOption)
    .action(async (name: string, opts: { stateDir: string }) => {
      await open(opts.stateDir).remove(name);
      print(`removed vault entry ${name}`);
    });
}

async function readAll(stdin: NodeJS.ReadableStream): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const chunk of stdin) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  const all = new Uint8Array(Buffer.concat(chunks));
  for (const c of chunks) c.fill(0);
  return all;
}

/** One line from a terminal without echo (raw mode); Ctrl-C cancels. */
function readHidden(
  stdin: NodeJS.ReadableStream & { setRawMode?: (raw: boolean) => unknown },
  stderr: (text: string) => void,
  name: string,
): Promise<Uint8Array> {
  stderr(`value for ${name} (not echoed): `);
  stdin.setRawMode?.(true);
  const bytes: number[] = [];
  return new Promise<Uint8Array>((resolve, reject) => {
    const done = (err?: Error): void => {
      stdin.off('data', onData);
      stdin.setRawMode?.(false);
      stdin.pause();
      stderr('\n');
      const value = new Uint8Array(bytes);
      bytes.fill(0);
      if (err) {
        value.fill(0);
        reject(err);
      } else resolve(value);
    };
    const onData = (chunk: Buffer): void => {
      for (const byte of chunk) {
        if (byte === 0x0d || byte === 0x0a) return done();
        if (byte === 0x03) return done(new RunnerError('cancelled', 'cancelled; nothing was stored'));
        if (byte === 0x7f || byte === 0x08) bytes.pop();
        else bytes.push(byte);
      }
      chunk.fill(0);
    };
    stdin.on('data', onData);
    stdin.resume();
  });
}

function stripNewline(raw: Uint8Array): Uint8Array {
  let end = raw.length;
  if (end > 0 && raw[end - 1] === 0x0a) end--;
  if (end > 0 && raw[end - 1] === 0x0d && end < raw.length) end--;
  return raw.subarray(0, end);
}
