import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { RunnerError } from '../util/errors.js';

/**
 * Config of the Managed Agents connector: the `managedAgents` key of the
 * runner's config file. The lead merges this schema into the main one.
 */
export const ManagedAgentsConfigSchema = z
  .object({
    environmentId: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,128}$/)
      .optional()
      .describe('id of the self_hosted environment (env_...); ANTHROPIC_ENVIRONMENT_ID overrides it'),
    environmentKeyFile: z
      .string()
      .min(1)
      .optional()
      .describe(
        'file holding the environment key (sk-ant-oat01-...), mode 0600; ANTHROPIC_ENVIRONMENT_KEY overrides it',
      ),
    baseUrl: z
      .string()
      .url()
      .optional()
      .describe('API base URL, default https://api.anthropic.com; ANTHROPIC_BASE_URL overrides it'),
    maxSessions: z
      .number()
      .int()
      .min(1)
      .max(256)
      .default(4)
      .describe('sessions served at once, each in its own sandbox (default 4)'),
    driver: z
      .enum(['bwrap', 'docker'])
      .default('bwrap')
      .describe('sandbox driver for the sessions (default bwrap)'),
    maxIdleMs: z
      .number()
      .int()
      .min(0)
      .default(60_000)
      .describe('how long a session stays attached after an end_turn idle with no new event, in ms (default 60000)'),
    memorySyncIntervalMs: z
      .number()
      .int()
      .min(5_000)
      .default(15_000)
      .describe('period of the two-way memory store sync, in ms (default 15000, minimum 5000)'),
  })
  .strict()
  .describe('serve a Claude Managed Agents self_hosted environment as its environment worker');

export type ManagedAgentsConfig = z.input<typeof ManagedAgentsConfigSchema>;

/** The connector's settings after env overrides, with the key read into memory. */
export interface ResolvedManagedAgentsConfig {
  environmentId: string;
  /** The environment key. Never log it. */
  environmentKey: string;
  baseUrl: string;
  maxSessions: number;
  driver: 'bwrap' | 'docker';
  maxIdleMs: number;
  memorySyncIntervalMs: number;
}

export const DEFAULT_BASE_URL = 'https://api.anthropic.com';

/**
 * Applies `ANTHROPIC_ENVIRONMENT_ID`, `ANTHROPIC_ENVIRONMENT_KEY` and
 * `ANTHROPIC_BASE_URL` over the file values (env wins), reads the key file
 * and checks it is not readable by group or others.
 *
 * @throws RunnerError `config_invalid` / `config_missing` naming the key and the fix.
 */
export async function resolveManagedAgentsConfig(
  input: ManagedAgentsConfig,
  env: NodeJS.ProcessEnv = process.env,
  configDir = process.cwd(),
): Promise<ResolvedManagedAgentsConfig> {
  const parsed = ManagedAgentsConfigSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = ['managedAgents', ...(issue?.path ?? [])].join('.');
    throw new RunnerError('config_invalid', `${where}: ${issue?.message ?? 'invalid'}; fix it in the config file`);
  }
  const cfg = parsed.data;
  const environmentId = nonEmpty(env.ANTHROPIC_ENVIRONMENT_ID) ?? cfg.environmentId;
  if (!environmentId) {
    throw new RunnerError(
      'config_missing',
      'managedAgents.environmentId is not set; put the environment id (env_...) in the config or ANTHROPIC_ENVIRONMENT_ID',
    );
  }
  const baseUrl = (nonEmpty(env.ANTHROPIC_BASE_URL) ?? cfg.baseUrl ?? DEFAULT_BASE_URL).replace(/\/+$/, '');
  let environmentKey = nonEmpty(env.ANTHROPIC_ENVIRONMENT_KEY);
  if (!environmentKey) {
    if (!cfg.environmentKeyFile) {
      throw new RunnerError(
        'config_missing',
        'managedAgents.environmentKeyFile is not set; point it at a 0600 file holding the environment key, or set ANTHROPIC_ENVIRONMENT_KEY',
      );
    }
    environmentKey = await readKeyFile(path.resolve(configDir, cfg.environmentKeyFile));
  }
  return {
    environmentId,
    environmentKey,
    baseUrl,
    maxSessions: cfg.maxSessions,
    driver: cfg.driver,
    maxIdleMs: cfg.maxIdleMs,
    memorySyncIntervalMs: cfg.memorySyncIntervalMs,
  };
}

/**
 * Reads the environment key file: one line, owner-only permissions.
 * @throws RunnerError `config_missing` when absent, `state_insecure` when group/world readable,
 *   `config_invalid` when empty.
 */
export async function readKeyFile(file: string): Promise<string> {
  let info;
  try {
    info = await stat(file);
  } catch (err) {
    throw new RunnerError(
      'config_missing',
      `environment key file ${file} cannot be read; create it with the environment key and chmod 600 it`,
      { cause: err },
    );
  }
  if ((info.mode & 0o077) !== 0) {
    throw new RunnerError(
      'state_insecure',
      `environment key file ${file} is readable by group or others; run chmod 600 on it`,
    );
  }
  const key = (await readFile(file, 'utf8')).trim();
  if (!key || /\s/.test(key)) {
    throw new RunnerError(
      'config_invalid',
      `environment key file ${file} must hold the environment key alone on one line; rewrite it`,
    );
  }
  return key;
}

function nonEmpty(v: string | undefined): string | undefined {
  return v !== undefined && v.trim() !== '' ? v.trim() : undefined;
}
