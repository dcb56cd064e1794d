import type { ExecutorMetrics } from '../executor/executor-options.js';
import type { RunnerMetrics } from '../metrics/index.js';

/** The executor's counters, kept in the Prometheus registry. */
export function executorMetrics(m: RunnerMetrics): ExecutorMetrics {
  return {
    callStarted: (_tool, source) => m.callsInFlight.inc({ source }),
    callEnded: (tool, source, status, durationMs) => {
      m.callsInFlight.dec({ source });
      m.callDurationSeconds.observe({ tool, source }, durationMs / 1000);
      m.callsTotal.inc({ tool, status, source });
    },
    refused: (reason) => m.refusalsTotal.inc({ reason }),
    bytesStreamed: (n) => m.streamedBytesTotal.inc({ stream: 'output' }, n),
    sandboxes: (driver, delta) => m.sandboxesLive.inc({ driver }, delta),
    sessions: (open) => m.sessionsLive.set(open),
  };
}
