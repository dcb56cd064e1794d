export { createMetrics, trackCall, type CallSource, type MetricsOptions, type RunnerMetrics } from './metrics.js';
export { bindAuditMetrics } from './audit-metrics.js';
export { HealthServer, type HealthAddress, type HealthServerOptions, type Readiness } from './health-server.js';
