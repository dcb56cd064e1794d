import { readFile } from 'node:fs/promises';
import path from 'node:path';
import YAML from 'yaml';
import { z } from 'zod';
import { RunnerError } from '../util/errors.js';
import { PACKAGE_ROOT } from '../util/package-info.js';
import { ConfigSchema, type Config } from './config-schema.js';

/** The environment variable prefix: SANDBOX_RUNNER_CALLS__MAX_CONCURRENT=4 sets calls.maxConcurrent. */
export const ENV_PREFIX = 'SANDBOX_RUNNER_';
/** Variables with the prefix that are not config keys. */
const NOT_KEYS = new Set(['CONFIG', 'NO_REEXEC']);

export interface LoadConfigOptions {
  /** A config file named explicitly: failing to read it is fatal. */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Values from command-line flags, highest precedence. */
  overrides?: Record<string, unknown>;
}

/** The config after defaults, with absolute paths. */
export interface CompiledConfig extends Config {
  sandbox: Config['sandbox'] & { imagesDir: string; workDir: string };
  /** Where the values came from, for `config check`. */
  source: { file?: string };
}


/**
 * Loads the config: defaults < file < SANDBOX_RUNNER_* env < flags. Throws
 * RunnerError `config_invalid` listing each problem as `path: message` with
 * the fix, or `config_missing` when a named file does not exist.
 */
export async function loadConfig(options: LoadConfigOptions = {}): Promise<CompiledConfig> {
  const env = options.env ?? process.env;
  const file = options.file ?? env[`${ENV_PREFIX}CONFIG`];
  let fromFile: Record<string, unknown> = {};
  if (file) fromFile = await readConfigFile(file);
  const merged = deepMerge(deepMerge(fromFile, envOverrides(env)), options.overrides ?? {});
  const parsed = ConfigSchema.safeParse(merged);
  if (!parsed.success) {
    throw new RunnerError('config_invalid', formatConfigIssues(parsed.error, file));
  }
  return compileConfig(parsed.data, file);
}

async function readConfigFile(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new RunnerError(
      code === 'ENOENT' ? 'config_missing' : 'config_invalid',
      code === 'ENOENT'
        ? `config file ${file} does not exist; create it (see config/sandbox-runner.example.yaml) or drop --config`
        : `config file ${file} cannot be read (${code}); check its permissions`,
    );
  }
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch (err) {
    throw new RunnerError('config_invalid', `${file}: not valid YAML (${(err as Error).message.split('\n')[0]}); fix the syntax`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new RunnerError('config_invalid', `${file}: the top level must be a mapping of keys, like "stateDir: /var/lib/sandbox-runner"`);
  }
  return dropNulls(doc as Record<string, unknown>);
}

/** A key written with nothing after it (`tracing:` with every child commented out) means "not set". */
function dropNulls(obj: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    if (v === null) continue;
    out[k] = isPlain(v) ? dropNulls(v) : v;
  }
  return out;
}

/** SANDBOX_RUNNER_A_B__C_D=v → {aB: {cD: v}}; values parse as JSON when they can. */
export function envOverrides(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || raw === undefined) continue;
    const rest = name.slice(ENV_PREFIX.length);
    if (NOT_KEYS.has(rest)) continue;
    const keys = rest.split('__').map(camel);
    let node = out;
    for (const k of keys.slice(0, -1)) node = (node[k] ??= {}) as Record<string, unknown>;
    node[keys[keys.length - 1]!] = parseValue(raw);
  }
  return out;
}

function camel(s: string): string {
  return s.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function parseValue(raw: string): unknown {
  if (/^(true|false|null|-?\d+(\.\d+)?|\[.*\]|\{.*\})$/s.test(raw.trim())) {
    try {
      return JSON.parse(raw);
    } catch {
      return raw;
    }
  }
  return raw;
}

function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] = isPlain(prev) && isPlain(v) ? deepMerge(prev, v) : v;
  }
  return out;
}

function isPlain(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `calls.maxConcurrent: expected number, got string; set it to a whole number` per issue. */
export function formatConfigIssues(error: z.ZodError, file?: string): string {
  const lines = error.issues.map((issue) => {
    const at = issue.path.map(String).join('.') || '(top level)';
    const envName = `${ENV_PREFIX}${issue.path.map((p) => String(p).replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()).join('__')}`;
    let fix = '';
    if (issue.code === 'unrecognized_keys') {
      fix = `; remove ${issue.keys.map((k) => `"${k}"`).join(', ')} or check the spelling against config/sandbox-runner.example.yaml`;
    } else if (issue.code === 'invalid_type') {
      fix = `; set ${at} (or ${envName}) to ${/^[aeiou]/.test(String(issue.expected)) ? 'an' : 'a'} ${issue.expected}`;
    } else if (issue.code === 'invalid_value' && 'values' in issue) {
      fix = `; use one of ${(issue.values as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    }
    return `${at}: ${issue.message}${fix}`;
  });
  return `${file ? `${file}: ` : ''}invalid configuration:\n  ${lines.join('\n  ')}`;
}

function compileConfig(config: Config, file: string | undefined): CompiledConfig {
  const base = file ? path.dirname(path.resolve(file)) : process.cwd();
  const stateDir = path.resolve(base, config.stateDir);
  return {
    ...config,
    stateDir,
    sandbox: {
      ...config.sandbox,
      imagesDir: path.resolve(base, config.sandbox.imagesDir ?? path.join(PACKAGE_ROOT, 'sandbox-images')),
      // Not inside the state dir: that one is 0700, and sandboxes run as other uids.
      workDir: path.resolve(base, config.sandbox.workDir ?? `${stateDir}-work`),
    },
    source: file ? { file: path.resolve(file) } : {},
  };
}
