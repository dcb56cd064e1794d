/**
 * Environment names a tool call may not set: Anthropic credentials (which the
 * runner injects itself, scoped to one call, issue 4) and the runner's own
 * plumbing (the egress proxy settings that are the sandbox's only way out).
 */
const REFUSED_PREFIXES = ['ANTHROPIC_', 'SANDBOX_RUNNER_'];
const REFUSED_NAMES = new Set(['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'NO_PROXY', 'FTP_PROXY']);

/** The keys of `env` a call may not set, in input order; empty when all are allowed. */
export function refusedEnvKeys(env: Record<string, string> | undefined): string[] {
  if (!env) return [];
  return Object.keys(env).filter((key) => {
    const upper = key.toUpperCase();
    return REFUSED_PREFIXES.some((p) => upper.startsWith(p)) || REFUSED_NAMES.has(upper);
  });
}
