export * from './policy-schema.js';
export * from './policy-engine.js';
export * from './network-rules.js';
