import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Command } from 'commander';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { registerVaultCommand } from '../../../src/cli/commands/vault.js';
import { Vault } from '../../../src/credentials/vault.js';
import { isRunnerError } from '../../../src/util/errors.js';

let root: string;
let stateDir: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'vault-cli-'));
  stateDir = join(root, 'state');
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

async function run(args: string[], input = ''): Promise<string[]> {
  const lines: string[] = [];
  const program = new Command('sandbox-runner').exitOverride();
  registerVaultCommand(program, { stdin: Readable.from([Buffer.from(input)]), stdout: (l) => lines.push(l), env: {} });
  for (const cmd of program.commands) cmd.exitOverride();
  await program.parseAsync(['node', 'sandbox-runner', 'vault', ...args, '--state-dir', stateDir]);
  return lines;
}

describe('sandbox-runner vault', () => {
  it('sets from stdin, lists names only, removes', async () => {
    expect(await run(['set', 'API_TOKEN', '--description', 'ci token'], 'tok-0123456789\n')).toEqual(['stored vault entry API_TOKEN']);
    expect(Buffer.from(await new Vault({ stateDir }).open('API_TOKEN')).toString()).toBe('tok-0123456789');

    const text = await run(['list']);
    expect(text[0]).toMatch(/^API_TOKEN\tupdated .*\tci token$/);
    const json = JSON.parse((await run(['list', '--json']))[0]!);
    expect(json).toEqual([expect.objectContaining({ name: 'API_TOKEN', meta: { description: 'ci token' } })]);
    expect(JSON.stringify(json)).not.toContain('tok-0123456789');

    expect(await run(['rm', 'API_TOKEN'])).toEqual(['removed vault entry API_TOKEN']);
    expect(await run(['list'])).toEqual(['the vault is empty']);
  });

  it('keeps the newline when asked, and refuses empty or short input', async () => {
    await run(['set', 'PEM', '--keep-newline'], 'line-one\nline-two\n');
    expect(Buffer.from(await new Vault({ stateDir }).open('PEM')).toString()).toBe('line-one\nline-two\n');
    const empty = await run(['set', 'EMPTY'], '\n').catch((e: unknown) => e);
    expect(isRunnerError(empty, 'usage')).toBe(true);
    const short = await run(['set', 'SHORT'], 'abc\n').catch((e: unknown) => e);
    expect(isRunnerError(short, 'credential_invalid')).toBe(true);
  });

  it('takes no value as an argument', async () => {
    const err = await run(['set', 'X', 'the-secret-value'], 'ignored').catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe('commander.excessArguments');
  });
});
