import type { AuditLog } from '../audit/audit-log.js';
import type { RunnerMetrics } from './metrics.js';

/**
 * Mirrors an audit log's state in the metrics: `audit_healthy` drops to 0 when
 * the log fails (the daemon then refuses calls) and each signed checkpoint is
 * counted. Returns a function that detaches the listeners.
 */
export function bindAuditMetrics(metrics: RunnerMetrics, audit: AuditLog): () => void {
  const onFailed = (): void => {
    metrics.auditHealthy.set(0);
  };
  const onCheckpoint = (): void => {
    metrics.auditCheckpointsTotal.inc();
  };
  metrics.auditHealthy.set(audit.healthy ? 1 : 0);
  audit.on('failed', onFailed);
  audit.on('checkpoint', onCheckpoint);
  return () => {
    audit.off('failed', onFailed);
    audit.off('checkpoint', onCheckpoint);
  };
}
