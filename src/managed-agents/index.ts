/** The Managed Agents connector: the runner as the environment worker of a self_hosted environment. */
export { ManagedAgentsConfigSchema, resolveManagedAgentsConfig, readKeyFile, type ManagedAgentsConfig, type ResolvedManagedAgentsConfig } from './config.js';
export { ManagedAgentsConnector, type ManagedAgentsConnectorOptions, type ManagedAgentsStatus } from './connector.js';
export { checkManagedAgents, managedAgentsStatus, type DoctorCheck } from './doctor.js';
export { stripAnthropicEnv, type WorkerHost, type HostSession, type HostSessionSpec, type HostToolCall, type HostToolResult, type HostMount } from './worker-host.js';
export type { LeasedSessionStatus } from './session-runner.js';
export type { ServedCall } from './session-event-loop.js';
