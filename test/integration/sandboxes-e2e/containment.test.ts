import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KEYRING_PROBE } from '../sandbox/helpers.js';
import { E2E, text } from './harness.js';

/** One line per check, read from inside: fds, core-file limit (soft hard), keyring calls. */
const PROBE = [
  'ls /proc/self/fd | sort -n | paste -sd " "',
  "awk '/^Max core file size/ {print $5, $6}' /proc/self/limits",
  `python3 - <<'EOF'\n${KEYRING_PROBE}\nEOF`,
].join('\n');

// The containment checks of bwrap-containment.test.ts, through the real
// control plane and a real runner process as it runs in production (root,
// cgroups, spare sandboxes served by the spawner): a fresh call taken by a
// spare, and a session's shell.
describe('what a sandbox of the real runner holds', () => {
  let e2e: E2E;
  beforeAll(async () => {
    e2e = await E2E.start({ SANDBOX_RUNNER_SANDBOX__SPARE: 'true' });
  });
  afterAll(() => e2e?.stop());

  it('no fd but its stdio, no core file (its credentials would be in it), no keyring call: fresh and in a session', async () => {
    const expected = ['0 1 2 3', '0 0', 'add_key -1 EPERM', 'request_key -1 EPERM', 'keyctl -1 EPERM'];
    const fresh = await e2e.call('bash', { command: PROBE });
    expect(fresh.status, JSON.stringify(fresh)).toBe('completed');
    expect(text(fresh.content).trim().split('\n')).toEqual(expected);

    const session = await e2e.openSession();
    const inSession = await e2e.call('bash', { command: PROBE }, { sessionId: session });
    expect(inSession.status, JSON.stringify(inSession)).toBe('completed');
    expect(text(inSession.content).trim().split('\n')).toEqual(expected);
    expect(await e2e.closeSession(session)).toBe(204);
  });
});
