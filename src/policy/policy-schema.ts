import { z } from 'zod';
import { DriverNameSchema } from '../protocol/messages.js';

const toolPattern = z.string().min(1).max(128);
const vaultName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/, 'use 1-64 letters, digits, _ . or -, starting with a letter or _');
const positiveInt = z.number().int().positive();

/**
 * The `policy:` section of the runner config: what the customer allows the
 * control plane to ask of this runner. Every default is the safe end for
 * network and vault (nothing) and generous but finite for the rest.
 */
export const PolicySchema = z
  .object({
    tools: z
      .object({
        allow: z.array(toolPattern).default(['*']).describe('tools the control plane may call, by name; "*" allows every tool'),
        deny: z.array(toolPattern).default([]).describe('tools refused even when allowed (wins over allow)'),
      })
      .strict()
      .prefault({})
      .describe('which tools may run'),
    drivers: z
      .object({
        allow: z.array(DriverNameSchema).default(['isolate', 'bwrap', 'docker']).describe('sandbox drivers a call or session may use'),
      })
      .strict()
      .prefault({})
      .describe('which sandbox drivers may be used'),
    images: z
      .object({
        allow: z
          .array(z.string().min(1).max(64))
          .default(['*'])
          .describe('sandbox images a call or session may use; "*" for any, "name*" for a prefix'),
      })
      .strict()
      .prefault({})
      .describe('which sandbox images may be used'),
    limits: z
      .object({
        wallTimeMs: positiveInt.default(3_600_000).describe('longest wall time of one call or session operation, ms'),
        memoryBytes: positiveInt.default(4 * 1024 ** 3).describe('most memory of one sandbox, bytes'),
        maxProcesses: positiveInt.default(1024).describe('most processes (pids) in one sandbox'),
        outputBytes: positiveInt.default(64 * 1024 ** 2).describe('most output bytes of one call'),
        workspaceBytes: positiveInt.default(10 * 1024 ** 3).describe('largest workspace of one sandbox, bytes'),
        cpus: z.number().positive().optional().describe('most CPUs of one sandbox; unset for no ceiling'),
        onExceed: z
          .enum(['cap', 'deny'])
          .default('cap')
          .describe('a request above a ceiling is lowered to it (cap) or refused (deny)'),
      })
      .strict()
      .prefault({})
      .describe('ceilings on what a call may request'),
    network: z
      .object({
        allow: z
          .array(z.string().min(1).max(253))
          .default([])
          .describe('the widest network allowlist: hosts ("api.github.com"), subdomains ("*.github.com"), "*" for any public host, IP addresses or CIDR ranges'),
        allowPrivate: z.boolean().default(false).describe('whether private ranges (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7) may be allowed'),
        allowLoopback: z.boolean().default(false).describe('whether loopback (localhost, 127/8, ::1) may be allowed'),
        allowMetadata: z
          .boolean()
          .default(false)
          .describe('whether cloud metadata endpoints and link-local (169.254/16, fd00:ec2::254, metadata.google.internal) may be allowed'),
      })
      .strict()
      .prefault({})
      .describe('the widest network access a sandbox may be given; none by default'),
    vault: z
      .record(
        vaultName,
        z
          .object({
            tools: z.array(toolPattern).min(1).describe('tools whose calls may use this entry; "*" for every tool and for sessions'),
            sessionLabels: z
              .array(z.string().min(1).max(128))
              .optional()
              .describe('when set, only calls and sessions carrying one of these labels may use it'),
          })
          .strict(),
      )
      .default({})
      .describe('local vault entries the control plane may name, and who may use each; none by default'),
    maxConcurrentCalls: positiveInt.default(8).describe('most tool calls running at once on this runner'),
  })
  .strict()
  .describe('local policy: the customer caps what the control plane may ask');

/** The policy as parsed (defaults filled in). */
export type Policy = z.infer<typeof PolicySchema>;
/** The policy as written in the config file. */
export type PolicyInput = z.input<typeof PolicySchema>;
