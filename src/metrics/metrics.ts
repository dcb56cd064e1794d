import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Where a call came from: our control plane or a Claude Managed Agents environment. */
export type CallSource = 'control-plane' | 'managed-agents';

/** The runner's metrics, all registered on one private Registry. */
export interface RunnerMetrics {
  registry: Registry;
  /** Finished calls. Labels: tool, status (completed|failed|cancelled|timed_out|refused), source. */
  callsTotal: Counter<'tool' | 'status' | 'source'>;
  /** Wall time of a call from receipt to result. Labels: tool, source. */
  callDurationSeconds: Histogram<'tool' | 'source'>;
  /** Calls accepted and not yet finished. Label: source. */
  callsInFlight: Gauge<'source'>;
  /** Sandboxes alive now. Label: driver (isolate|bwrap|docker). */
  sandboxesLive: Gauge<'driver'>;
  /** Sessions open now. */
  sessionsLive: Gauge;
  /** Connection re-establishments. Label: connector (websocket|managed-agents). */
  reconnectsTotal: Counter<'connector'>;
  /** 1 while a connector is connected. Label: connector. */
  connected: Gauge<'connector'>;
  /** Results waiting for the control plane's acknowledgement. */
  outboxDepth: Gauge;
  /** Output bytes sent for calls. Label: stream (stdout|stderr). */
  streamedBytesTotal: Counter<'stream'>;
  /** Requests refused before running. Label: reason (signature|schema|stale|policy|busy|audit|draining|...). */
  refusalsTotal: Counter<'reason'>;
  /** 1 while the audit log accepts entries; 0 means the runner refuses calls. */
  auditHealthy: Gauge;
  /** Signed audit checkpoints written. */
  auditCheckpointsTotal: Counter;
}

export interface MetricsOptions {
  /** Also collect the process metrics of prom-client (CPU, memory, event loop lag). Default true. */
  processMetrics?: boolean;
  /** Labels added to every series, e.g. `{ runner: 'r-123' }`. */
  defaultLabels?: Record<string, string>;
}

const PREFIX = 'sandbox_runner_';
const LINT_FAILING_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/**
 * Creates the runner's metrics on a Registry of its own (never prom-client's
 * global one), so that several daemons in one process, as in the tests, do not
 * share or double-register series.
 */
export function createMetrics(options: MetricsOptions = {}): RunnerMetrics {
  const registry = new Registry();
  if (options.defaultLabels) registry.setDefaultLabels(options.defaultLabels);
  if (options.processMetrics ?? true) {
    collectDefaultMetrics({ register: registry });
    // prom-client exposes these gauges with a counter's `_total` suffix, which
    // promtool's lint rejects; the page stays lint-clean without them.
    for (const name of LINT_FAILING_DEFAULTS) registry.removeSingleMetric(name);
  }
  const registers = [registry];
  const metrics: RunnerMetrics = {
    registry,
    callsTotal: new Counter({
      name: `${PREFIX}calls_total`,
      help: 'Tool calls finished, by tool, final status and source.',
      labelNames: ['tool', 'status', 'source'],
      registers,
    }),
    callDurationSeconds: new Histogram({
      name: `${PREFIX}call_duration_seconds`,
      help: 'Wall time of a tool call from receipt to result, in seconds.',
      labelNames: ['tool', 'source'],
      // Isolate calls take milliseconds, docker sessions minutes.
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
      registers,
    }),
    callsInFlight: new Gauge({ name: `${PREFIX}calls_in_flight`, help: 'Tool calls accepted and not yet finished.', labelNames: ['source'], registers }),
    sandboxesLive: new Gauge({ name: `${PREFIX}sandboxes_live`, help: 'Sandboxes alive now, by driver.', labelNames: ['driver'], registers }),
    sessionsLive: new Gauge({ name: `${PREFIX}sessions_live`, help: 'Sessions open now.', registers }),
    reconnectsTotal: new Counter({ name: `${PREFIX}reconnects_total`, help: 'Connections re-established after a loss, by connector.', labelNames: ['connector'], registers }),
    connected: new Gauge({ name: `${PREFIX}connected`, help: '1 while the connector is connected to its control plane.', labelNames: ['connector'], registers }),
    outboxDepth: new Gauge({ name: `${PREFIX}outbox_depth`, help: 'Results waiting for the control plane to acknowledge them.', registers }),
    streamedBytesTotal: new Counter({ name: `${PREFIX}streamed_bytes_total`, help: 'Output bytes streamed back for tool calls, by stream.', labelNames: ['stream'], registers }),
    refusalsTotal: new Counter({ name: `${PREFIX}refusals_total`, help: 'Requests refused before running, by reason.', labelNames: ['reason'], registers }),
    auditHealthy: new Gauge({ name: `${PREFIX}audit_healthy`, help: '1 while the audit log accepts entries; 0 means calls are refused.', registers }),
    auditCheckpointsTotal: new Counter({ name: `${PREFIX}audit_checkpoints_total`, help: 'Signed audit checkpoints written.', registers }),
  };
  // Start at a known value: an absent gauge reads as "no data", not as "unhealthy".
  metrics.auditHealthy.set(1);
  metrics.outboxDepth.set(0);
  metrics.sessionsLive.set(0);
  return metrics;
}

/**
 * Times a call and counts it when it finishes: the in-flight gauge, the
 * duration histogram and the calls counter move together.
 */
export function trackCall(metrics: RunnerMetrics, tool: string, source: CallSource): (status: string) => void {
  metrics.callsInFlight.inc({ source });
  const stop = metrics.callDurationSeconds.startTimer({ tool, source });
  let done = false;
  return (status) => {
    if (done) return;
    done = true;
    metrics.callsInFlight.dec({ source });
    stop();
    metrics.callsTotal.inc({ tool, status, source });
  };
}
