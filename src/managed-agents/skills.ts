import type Anthropic from '@anthropic-ai/sdk';
import path from 'node:path';
import { chmod, readdir } from 'node:fs/promises';
import { noopLogger, type Logger } from '../util/logger.js';
import { describeError } from '../util/errors.js';
import { apiStatus } from './api-client.js';
import { extractSafely, readArchive } from './skill-archive.js';

/** A skill as the session's agent lists it. */
export interface SkillRef {
  type: 'anthropic' | 'custom';
  skill_id: string;
  version: string;
}

const SKILLS_BETA = 'skills-2025-10-02';

/**
 * Downloads the agent's skills into `<workspace>/skills/<name>/`. One skill
 * failing (or a refused archive) is logged and the others carry on, as the
 * SDK workers do. Returns the names installed.
 */
export async function installSkills(options: {
  client: Anthropic;
  skills: SkillRef[];
  workspaceDir: string;
  logger?: Logger;
  signal: AbortSignal;
}): Promise<string[]> {
  const log = options.logger ?? noopLogger;
  const installed: string[] = [];
  const root = path.join(options.workspaceDir, 'skills');
  for (const skill of options.skills) {
    try {
      const version = await resolveVersion(options.client, skill, options.signal);
      const info = await options.client.beta.skills.versions.retrieve(version, { skill_id: skill.skill_id, betas: [SKILLS_BETA] }, { signal: options.signal });
      const name = safeName(path.basename(info.name ?? '') || skill.skill_id);
      const res = await options.client.beta.skills.versions.download(version, { skill_id: skill.skill_id, betas: [SKILLS_BETA] }, { signal: options.signal });
      const archive = Buffer.from(await res.arrayBuffer());
      const members = await readArchive(archive);
      const dest = path.join(root, name);
      const existing = await readdir(dest).catch(() => undefined);
      if (existing) throw new Error(`skill folder skills/${name} exists already`);
      const { files, skipped } = await extractSafely(members, dest);
      if (skipped.length > 0) log.warn({ skill: skill.skill_id, skipped: skipped.slice(0, 10) }, 'left links and special files of a skill archive out');
      log.info({ skill: skill.skill_id, version, name, files }, 'skill installed');
      installed.push(name);
    } catch (err) {
      log.warn({ skill: skill.skill_id, status: apiStatus(err), err: describeError(err) }, 'failed to download skill; the session carries on without it');
    }
  }
  await chmod(root, 0o755).catch(() => undefined);
  return installed;
}

/** Aliases like `latest` are rejected by the version endpoints: take the largest numeric version. */
async function resolveVersion(client: Anthropic, skill: SkillRef, signal: AbortSignal): Promise<string> {
  if (/^\d+$/.test(skill.version)) return skill.version;
  let best: string | undefined;
  for await (const v of client.beta.skills.versions.list(skill.skill_id, { betas: [SKILLS_BETA] }, { signal })) {
    const ver = String((v as unknown as { version: unknown }).version);
    if (/^\d+$/.test(ver) && (best === undefined || BigInt(ver) > BigInt(best))) best = ver;
  }
  if (!best) throw new Error(`skill ${skill.skill_id} has no numeric version`);
  return best;
}

function safeName(name: string): string {
  const s = name.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[.-]+/, '');
  return s.slice(0, 100) || 'skill';
}
