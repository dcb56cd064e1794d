import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { FakeAnthropic } from '../../fakes/anthropic/fake-anthropic.js';
import { ManagedAgentsConnector, type ManagedAgentsConnectorOptions } from '../../../src/managed-agents/connector.js';
import type { ResolvedManagedAgentsConfig } from '../../../src/managed-agents/config.js';
import { BwrapWorkerHost } from './bwrap-worker-host.js';
import { createLogger } from '../../../src/util/logger.js';

/** A fake Anthropic, a bwrap host and a connector, torn down together. */
export interface Harness {
  fake: FakeAnthropic;
  host: BwrapWorkerHost;
  connector: ManagedAgentsConnector;
  run: Promise<void>;
  stateDir: string;
  close(): Promise<void>;
}

export async function startHarness(options: { config?: Partial<ResolvedManagedAgentsConfig>; connector?: Partial<ManagedAgentsConnectorOptions>; beforeStart?: (fake: FakeAnthropic) => void } = {}): Promise<Harness> {
  const fake = new FakeAnthropic();
  await fake.start();
  options.beforeStart?.(fake);
  const host = await BwrapWorkerHost.create();
  const stateDir = await mkdtemp(path.join(os.tmpdir(), 'sr-ma-state-'));
  const connector = new ManagedAgentsConnector({
    config: {
      environmentId: fake.environmentId,
      environmentKey: fake.environmentKey,
      baseUrl: fake.url,
      maxSessions: 4,
      driver: 'bwrap',
      maxIdleMs: 200,
      memorySyncIntervalMs: 5_000,
      ...options.config,
    },
    host,
    stateDir,
    poll: { emptySleepMs: [5, 20] },
    // MA_DEBUG=1 shows the connector's log on stderr.
    ...(process.env.MA_DEBUG ? { logger: createLogger({ level: 'debug', fd: 2, pretty: false }) } : {}),
    ...options.connector,
  });
  const run = connector.start();
  run.catch(() => undefined);
  return {
    fake,
    host,
    connector,
    run,
    stateDir,
    async close() {
      await connector.shutdown();
      await host.close();
      await fake.close();
      await rm(stateDir, { recursive: true, force: true });
    },
  };
}
