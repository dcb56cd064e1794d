import type { LimitsRequest } from '../protocol/messages.js';
import { describeIssues } from '../protocol/errors.js';
import { RunnerError } from '../util/errors.js';
import { allowlistCovers, classifyDestination } from './network-rules.js';
import { type Policy, PolicySchema } from './policy-schema.js';

/** What a call or session asks for, as the dispatcher knows it after schema validation. */
export interface PolicyRequest {
  /** The tool name; absent for `session.open` (then only vault entries granted to "*" pass). */
  tool?: string;
  driver?: string;
  image?: string;
  limits?: LimitsRequest;
  /** Requested network allowlist (hosts, wildcards, addresses, ranges). */
  network?: { allow: string[] };
  /** Names of the local vault entries the request refers to. */
  vaultRefs?: string[];
  /** Labels of the session (or call) the request belongs to. */
  labels?: string[];
  /** Calls running now, not counting this one. */
  inFlight?: number;
}

/** The limits a run gets: the request capped by the ceilings, ceilings where it asked for nothing. */
export interface EffectiveLimits {
  wallTimeMs: number;
  memoryBytes: number;
  maxProcesses: number;
  outputBytes: number;
  workspaceBytes: number;
  cpus?: number;
}

export type PolicyDecision =
  | { ok: true; limits: EffectiveLimits }
  | { ok: false; code: 'policy_denied'; rule: string; message: string };

const LIMIT_KEYS = ['wallTimeMs', 'memoryBytes', 'maxProcesses', 'outputBytes', 'workspaceBytes'] as const;

/**
 * Local policy, checked for every request before anything runs. `check` never
 * throws: a refusal names the rule as its key path in the config
 * (`tools.allow`, `network.allowPrivate`, `vault.DB_PASSWORD.tools`, ...).
 * `reload` validates the new policy fully before swapping it in one assignment,
 * so a check sees either the old policy or the new one, never a mix, and a bad
 * file leaves the old one in force.
 */
export class PolicyEngine {
  private current: Policy;

  /** @throws RunnerError `config_invalid` naming the key. */
  constructor(policy: unknown = {}) {
    this.current = parsePolicy(policy);
  }

  /** The policy in force. */
  get policy(): Policy {
    return this.current;
  }

  /**
   * Validates and swaps in a new policy (the daemon calls this on SIGHUP).
   * @throws RunnerError `config_invalid` naming the key; the old policy stays.
   */
  reload(policy: unknown): void {
    this.current = parsePolicy(policy);
  }

  /** Checks one request against the policy in force. */
  check(request: PolicyRequest): PolicyDecision {
    const p = this.current;
    const tool = request.tool;
    if (tool !== undefined) {
      if (p.tools.deny.includes(tool)) return deny('tools.deny', `tool ${tool} is denied by local policy (policy.tools.deny)`);
      if (!matchesAny(p.tools.allow, tool)) {
        return deny('tools.allow', `tool ${tool} is not allowed by local policy; the operator may add it to policy.tools.allow`);
      }
    }
    if (request.driver !== undefined && !(p.drivers.allow as string[]).includes(request.driver)) {
      return deny('drivers.allow', `driver ${request.driver} is not allowed by local policy; allowed: ${p.drivers.allow.join(', ') || 'none'}`);
    }
    if (request.image !== undefined && !matchesAny(p.images.allow, request.image)) {
      return deny('images.allow', `image ${request.image} is not allowed by local policy; the operator may add it to policy.images.allow`);
    }

    const limits: EffectiveLimits = {
      wallTimeMs: p.limits.wallTimeMs,
      memoryBytes: p.limits.memoryBytes,
      maxProcesses: p.limits.maxProcesses,
      outputBytes: p.limits.outputBytes,
      workspaceBytes: p.limits.workspaceBytes,
    };
    const asked = request.limits ?? {};
    for (const key of LIMIT_KEYS) {
      const value = asked[key];
      if (value === undefined) continue;
      if (value > p.limits[key] && p.limits.onExceed === 'deny') {
        return deny(`limits.${key}`, `the request asks for ${key} ${value}, above the local ceiling of ${p.limits[key]}; ask for less`);
      }
      limits[key] = Math.min(value, p.limits[key]);
    }
    if (p.limits.cpus !== undefined || asked.cpus !== undefined) {
      const ceiling = p.limits.cpus ?? Number.POSITIVE_INFINITY;
      if ((asked.cpus ?? 0) > ceiling && p.limits.onExceed === 'deny') {
        return deny('limits.cpus', `the request asks for ${asked.cpus} cpus, above the local ceiling of ${ceiling}; ask for less`);
      }
      limits.cpus = Math.min(asked.cpus ?? ceiling, ceiling);
    }

    for (const entry of request.network?.allow ?? []) {
      const refusal = this.checkNetwork(entry);
      if (refusal) return refusal;
    }

    for (const name of request.vaultRefs ?? []) {
      const grant = p.vault[name];
      if (!grant) {
        return deny(`vault.${name}`, `vault entry ${name} is not granted by local policy; the operator may add policy.vault.${name}.tools`);
      }
      const toolOk = grant.tools.includes('*') || (tool !== undefined && matchesAny(grant.tools, tool));
      if (!toolOk) {
        return deny(`vault.${name}.tools`, `vault entry ${name} may not be used by ${tool === undefined ? 'a session' : `tool ${tool}`}; allowed: ${grant.tools.join(', ')}`);
      }
      if (grant.sessionLabels && !grant.sessionLabels.some((l) => request.labels?.includes(l))) {
        return deny(`vault.${name}.sessionLabels`, `vault entry ${name} needs a session labelled ${grant.sessionLabels.join(' or ')}`);
      }
    }

    if ((request.inFlight ?? 0) >= p.maxConcurrentCalls) {
      return deny('maxConcurrentCalls', `this runner already runs ${request.inFlight} calls, the local maximum (policy.maxConcurrentCalls); retry later`);
    }
    return { ok: true, limits };
  }

  private checkNetwork(entry: string): PolicyDecision | undefined {
    const p = this.current.network;
    const kind = classifyDestination(entry);
    const flag = { private: 'allowPrivate', loopback: 'allowLoopback', metadata: 'allowMetadata' } as const;
    if (kind !== 'public' && !p[flag[kind]]) {
      return deny(`network.${flag[kind]}`, `network access to ${entry} (${kind}) is not allowed by local policy (policy.network.${flag[kind]} is false)`);
    }
    // Special destinations need an explicit entry: "*" means any public host.
    const covered = p.allow.some((rule) => (kind === 'public' || rule !== '*') && allowlistCovers(rule, entry));
    if (!covered) {
      return deny('network.allow', `network access to ${entry} is outside the local allowlist (policy.network.allow)`);
    }
    return undefined;
  }
}

function matchesAny(patterns: readonly string[], value: string): boolean {
  return patterns.some((p) => p === '*' || p === value || (p.endsWith('*') && value.startsWith(p.slice(0, -1))));
}

function deny(rule: string, message: string): PolicyDecision {
  return { ok: false, code: 'policy_denied', rule, message };
}

function parsePolicy(input: unknown): Policy {
  const parsed = PolicySchema.safeParse(input ?? {});
  if (!parsed.success) {
    throw new RunnerError('config_invalid', `the local policy is invalid: ${describeIssues(parsed.error, 'policy')}; fix the policy section of the config`);
  }
  return parsed.data;
}
