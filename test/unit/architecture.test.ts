import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

// The dependency rules of STYLE.md, checked on the source text.
const SRC = path.resolve(import.meta.dirname, '..', '..', 'src');

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

const all = files(SRC).map((file) => ({ file: path.relative(SRC, file), text: readFileSync(file, 'utf8') }));

function imports(text: string): { spec: string; typeOnly: boolean }[] {
  return [...text.matchAll(/^import\s+(type\s+)?[^;]*?from\s+'([^']+)'/gms)].map((m) => ({ spec: m[2]!, typeOnly: Boolean(m[1]) }));
}

/** The isolate host and the sandbox spawner are programs of their own (child processes), not part of the daemon. */
const SEPARATE_PROGRAMS = new Set(['sandbox/isolate/isolate-host.ts', 'sandbox/bwrap/spawner-helper.ts']);

describe('architecture', () => {
  it('protocol/ imports only zod and itself (SDK types erase at compile time)', () => {
    const bad = all
      .filter((f) => f.file.startsWith('protocol/'))
      .flatMap((f) => imports(f.text).filter((i) => !(i.spec === 'zod' || i.spec.startsWith('./') || (i.typeOnly && i.spec.startsWith('@anthropic-ai/sdk')))).map((i) => `${f.file}: ${i.spec}`));
    expect(bad).toEqual([]);
  });

  it('control-plane/ imports no runner internals', () => {
    // Shared by both ends: the protocol, small utilities, request signing and credential sealing.
    const allowed = [/^\.\//, /^\.\.\/protocol\//, /^\.\.\/util\//, /^\.\.\/signing\//, /^\.\.\/credentials\/(sealed-credential|redactor)\.js$/, /^[^.]/];
    const bad = all
      .filter((f) => f.file.startsWith('control-plane/'))
      .flatMap((f) => imports(f.text).filter((i) => !allowed.some((re) => re.test(i.spec))).map((i) => `${f.file}: ${i.spec}`));
    expect(bad).toEqual([]);
  });

  it('only cli/ ends the process', () => {
    const bad = all.filter((f) => !f.file.startsWith('cli/') && !SEPARATE_PROGRAMS.has(f.file) && /\bprocess\.exit\(/.test(f.text)).map((f) => f.file);
    expect(bad).toEqual([]);
  });

  it("only the daemon's signal module listens to process events", () => {
    const bad = all.filter((f) => f.file !== 'daemon/signals.ts' && !SEPARATE_PROGRAMS.has(f.file) && /\bprocess\.(on|once)\(/.test(f.text)).map((f) => f.file);
    expect(bad).toEqual([]);
  });

  it('sandboxed code imports nothing from the host', () => {
    const host = all.find((f) => f.file === 'sandbox/isolate/isolate-host.ts')!;
    const bad = imports(host.text).filter((i) => !(i.spec === 'isolated-vm' || i.spec === './isolate-messages.js'));
    expect(bad).toEqual([]);
  });
});
