export * from './audit-entry.js';
export { listAuditFiles } from './audit-files.js';
export { AuditLog, type AuditLogEvents } from './audit-log.js';
export type { AuditEvent, AuditLogOptions } from './audit-log-options.js';
export { canonicalJson } from './canonical-json.js';
export { followAudit, readAudit, tailAudit, type ReadAuditOptions } from './read-audit.js';
export { verifyAudit, type VerifyFailure, type VerifyOk, type VerifyOptions, type VerifyResult } from './verify-audit.js';
